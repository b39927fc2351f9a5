"""Generated hub repositories for download tests (imported by the tests; conftest puts this folder on sys.path)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

REPO = "BAAI/bge-small-en-v1.5"      # a catalog model; its content here is generated
MS_REPO = "AI-ModelScope/bge-small-en-v1.5"
FAST = ("--backoff", "0.01", "--retries", "4")
SMALL_REPO = {"model.safetensors": 1_200_000, "pytorch_model.bin": 1_200_000, "config.json": 700,
              "tokenizer.json": 40_000, "1_Pooling/config.json": 190, "empty.txt": 0}


def make_repo(root: Path, sizes: dict[str, int], seed: int = 7) -> Path:
    """A folder of files with pseudo-random content of the given sizes."""
    rng = random.Random(seed)
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return root


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
