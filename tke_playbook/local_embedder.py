"""An in-process embedder for the offline model: sentence-transformers on CPU, no network.

It implements the embedder interface (``name``, ``embed_queries``, ``embed_documents``) with the catalog's
prompts, so it can stand in for the HTTP client in tests and in the offline comparison. The model loads on first
use; ``HF_HUB_OFFLINE=1`` is set so nothing is fetched from a hub.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .catalog import OFFLINE_MODEL, ModelInfo, get_model
from .embeddings_api import check_texts
from .errors import InvalidSpecError, PlaybookError


class LocalEmbedder:
    """Embed with a sentence-transformers folder (default: the packaged all-MiniLM-L6-v2) on CPU."""

    def __init__(self, model_dir: str | Path | None = None, *, model: str | ModelInfo = OFFLINE_MODEL,
                 batch_size: int = 32, device: str = "cpu", name: str | None = None):
        self.model: ModelInfo = get_model(model)
        if model_dir is None:
            from .target import offline_model_dir

            model_dir = offline_model_dir()
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise InvalidSpecError(f"{self.model_dir} is not a model folder (no config.json): pass the folder that "
                                   "holds the downloaded model", field="model_dir", value=str(self.model_dir))
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidSpecError(f"batch_size={batch_size!r}: use a positive integer such as 32",
                                   field="batch_size", value=batch_size)
        self.batch_size = batch_size
        self.device = device
        self.name = name or self.model.short_name
        self._encoder = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalEmbedder(name={self.name!r}, model_dir={str(self.model_dir)!r})"

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def memory_bytes(self) -> int:
        """Weights in memory on CPU (the checkpoint's own dtype)."""
        return self.model.weight_bytes

    def _load(self):
        with self._lock:
            if self._encoder is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer

                    self._encoder = SentenceTransformer(str(self.model_dir), device=self.device)
                except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear error
                    raise PlaybookError(f"Could not load the model in {self.model_dir}: {exc}. Check that the "
                                        "folder is a complete sentence-transformers model", obj=str(self.model_dir),
                                        cause=exc) from exc
            return self._encoder

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                      normalize_embeddings=self.model.normalize, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def embed_queries(self, texts: Iterable[str] | str, task: str | None = None) -> np.ndarray:
        """Queries with the catalog's query prompt (``task`` fills instruction-style prompts)."""
        return self._encode([self.model.format_query(t, task) for t in check_texts(texts)])

    def embed_documents(self, texts: Iterable[str] | str) -> np.ndarray:
        return self._encode([self.model.format_document(t) for t in check_texts(texts)])

