"""Fixtures for the corpus tests: a deterministic word-hashing embedder (fast, no model) and the test doubles."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).parents[1])]  # fake_embedding_server, fakes (importlib mode)


class HashingEmbedder:
    """Bag of hashed words, L2-normalised: texts that share words are close. Counts its calls."""

    name = "hashing-embedder"
    revision = "1"

    def __init__(self, dim: int = 64):
        self.dim, self.calls = dim, 0

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return vector / max(float(np.linalg.norm(vector)), 1e-6)

    def embed_documents(self, texts):
        self.calls += 1
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_queries(self, texts, task=None):
        return self.embed_documents(texts)


@pytest.fixture
def hashing():
    return HashingEmbedder()
