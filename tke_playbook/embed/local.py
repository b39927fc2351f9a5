"""An in-process embedder for the offline model: sentence-transformers on CPU, no network.

It implements the embedder interface (``name``, ``embed_queries``, ``embed_documents``) with the catalog's
prompts, so it can stand in for the HTTP client in tests and in the offline comparison. The model loads on first
use; ``HF_HUB_OFFLINE=1`` is set so nothing is fetched from a hub.

``pooling=`` and ``normalize=`` override what the model's sentence-transformers config does (pooling the token
embeddings here instead): a deliberately misconfigured embedder, as a server with the wrong pooler would be, for
proving that the parity check catches it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import InvalidSpecError, PlaybookError
from ..hostenv import offline_model_dir
from ..specs.catalog import OFFLINE_MODEL, ModelInfo, Pooling, get_model
from .api import check_texts

_LOADED: dict[tuple[str, str], object] = {}
_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _no_loading_bar():
    """transformers draws a "Loading weights" tqdm bar while a model loads: in a notebook a widget that the saved
    page keeps at "0% 0/103" (05 showed two). Off while loading (under the load lock), then as it was."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def load_sentence_transformer(model_dir: str | Path, device: str = "cpu"):
    """The sentence-transformers model in ``model_dir``, loaded once per process and folder, from its files alone
    (``local_files_only``: nothing is asked of a hub, and nothing is set in the environment - a later hub call in
    the same process still reaches its hub)."""
    key = (str(Path(model_dir).resolve()), device)
    with _LOAD_LOCK:
        if key not in _LOADED:
            try:
                from sentence_transformers import SentenceTransformer

                with _no_loading_bar():
                    model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear error
                raise PlaybookError(f"Could not load the model in {model_dir}: {exc}. Check that the folder is a "
                                    "complete sentence-transformers model", obj=str(model_dir), cause=exc) from exc
            model.eval()
            _LOADED[key] = model
        return _LOADED[key]


class LocalEmbedder:
    """Embed with a sentence-transformers folder (default: the packaged all-MiniLM-L6-v2) on CPU."""

    def __init__(self, model_dir: str | Path | None = None, *, model: str | ModelInfo = OFFLINE_MODEL,
                 batch_size: int = 32, device: str = "cpu", name: str | None = None,
                 pooling: Pooling | str | None = None, normalize: bool | None = None):
        self.model: ModelInfo = get_model(model)
        try:
            self.pooling = None if pooling is None else Pooling(pooling)
        except ValueError as exc:
            raise InvalidSpecError(f"pooling={pooling!r}: use one of {[p.value for p in Pooling]} or None (the "
                                   "model's own)", field="pooling", value=pooling) from exc
        self.normalize = normalize
        if model_dir is None:
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
        self.name = name or self.model.short_name + self._variant()
        self._encoder = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalEmbedder(name={self.name!r}, model_dir={str(self.model_dir)!r})"

    def _variant(self) -> str:
        parts = ([f"{self.pooling.value}-pooling"] if self.pooling else []) + \
            ([] if self.normalize is None else ["normalized" if self.normalize else "unnormalized"])
        return f" ({', '.join(parts)})" if parts else ""

    @property
    def overridden(self) -> bool:
        return self.pooling is not None or self.normalize is not None

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
                self._encoder = load_sentence_transformer(self.model_dir, self.device)
            return self._encoder

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.overridden:
            return self._encode_overridden(texts)
        vectors = self._load().encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                      normalize_embeddings=self.model.normalize, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def _encode_overridden(self, texts: list[str]) -> np.ndarray:
        tokens = self._load().encode(texts, batch_size=self.batch_size, output_value="token_embeddings",
                                     convert_to_numpy=False, show_progress_bar=False)
        vectors = np.stack([pool_tokens(t.float().cpu().numpy(), self.pooling or self.model.pooling)
                            for t in tokens]).astype(np.float32)
        if self.normalize if self.normalize is not None else self.model.normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def embed_queries(self, texts: Iterable[str] | str, task: str | None = None) -> np.ndarray:
        """Queries with the catalog's query prompt (``task`` fills instruction-style prompts)."""
        return self._encode([self.model.format_query(t, task) for t in check_texts(texts)])

    def embed_documents(self, texts: Iterable[str] | str) -> np.ndarray:
        return self._encode([self.model.format_document(t) for t in check_texts(texts)])



def pool_tokens(tokens: np.ndarray, pooling: Pooling) -> np.ndarray:
    """One text's token embeddings (tokens × dim, padding removed) pooled: first token, mean, or last token."""
    if pooling is Pooling.CLS:
        return tokens[0]
    if pooling is Pooling.LAST:
        return tokens[-1]
    return tokens.mean(axis=0)
