"""Embed a large corpus through any embedder, with bounded concurrency, a progress bar and a resumable cache.

:class:`VectorCache` keeps vectors on disk under ``<cache>/<model key>/``, keyed by the sha256 of the text and the
settings that change a vector (the model key names model, revision and prompt kind). Vectors are appended as
segments (``seg-<n>.npy`` with its ``seg-<n>.keys``, written atomically every ``flush_rows`` rows or
``flush_s`` seconds), so an interrupted run keeps what it finished, and a rerun embeds nothing it has.

:func:`embed_texts` sends the missing texts in batches, at most ``concurrency`` requests in flight (threads: the
HTTP client is thread-safe and a notebook's event loop stays free), records each call's latency for p99, and
stops cleanly on an interrupt (finished batches are kept).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidSpecError, PlaybookError
from ..reporting import progress_bar

KEY_BYTES = 16
DOCUMENT, QUERY = "document", "query"


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)).strip("_")[:80] or "_"


def vector_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:KEY_BYTES]


class VectorCache:
    """Vectors of one model key on disk, appended in segments; ``lookup(keys)`` says where each one is."""

    def __init__(self, folder, model_key: str):
        self.folder = Path(folder) / _safe(model_key.split("|", 1)[0]) / \
            hashlib.sha256(model_key.encode()).hexdigest()[:16]
        self.model_key = model_key
        self._where: dict[bytes, tuple[int, int]] = {}
        self._segments: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for keys_file in sorted(self.folder.glob("seg-*.keys")):
            vectors_file = keys_file.with_suffix(".npy")
            try:
                vectors = np.load(vectors_file, mmap_mode="r", allow_pickle=False)
                keys = keys_file.read_bytes()
            except (OSError, ValueError):
                continue  # a damaged segment is ignored: its texts are embedded again
            if len(keys) != KEY_BYTES * len(vectors):
                continue
            self._add_segment(keys, vectors)

    def _add_segment(self, keys: bytes, vectors: np.ndarray) -> None:
        index = len(self._segments)
        self._segments.append(vectors)
        for row in range(len(vectors)):
            self._where[keys[row * KEY_BYTES:(row + 1) * KEY_BYTES]] = (index, row)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: bytes) -> bool:
        return key in self._where

    @property
    def dim(self) -> int | None:
        return int(self._segments[0].shape[1]) if self._segments else None

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Append one segment (atomically: vectors first, then the keys that make it visible)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(keys):
            return
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise PlaybookError(f"{self.folder} holds {self.dim}-dimensional vectors but the model now returns "
                                f"{vectors.shape[1]}: the model changed under the same name - pass another "
                                "revision or delete the folder", obj=str(self.folder))
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"seg-{time.time_ns():020d}-{os.getpid()}"
            tmp = self.folder / f".{name}.tmp.npy"
            np.save(tmp, vectors)
            os.replace(tmp, self.folder / f"{name}.npy")
            tmp_keys = self.folder / f".{name}.keys.tmp"
            tmp_keys.write_bytes(b"".join(keys))
            os.replace(tmp_keys, self.folder / f"{name}.keys")
            self._add_segment(b"".join(keys), vectors)

    def matrix(self, keys: Sequence[bytes]) -> np.ndarray:
        """The vectors of ``keys`` in order (every key must be cached)."""
        out = np.empty((len(keys), self.dim or 0), dtype=np.float32)
        for i, key in enumerate(keys):
            segment, row = self._where[key]
            out[i] = self._segments[segment][row]
        return out


@dataclass
class EmbedStats:
    """What one :func:`embed_texts` call did: texts asked, found in the cache, embedded now; per-call latencies."""

    texts: int = 0
    cached: int = 0
    embedded: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    batch_size: int = 0

    @property
    def per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else float("nan")

    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_s, 99) * 1000) if self.latencies_s else float("nan")


def _call(embedder, kind: str, texts: list[str]) -> tuple[np.ndarray, float]:
    began = time.perf_counter()
    out = embedder.embed_queries(texts) if kind == QUERY else embedder.embed_documents(texts)
    array = np.asarray(out, dtype=np.float32)
    if array.ndim != 2 or len(array) != len(texts):
        raise PlaybookError(f"{getattr(embedder, 'name', embedder)} returned shape {array.shape} for {len(texts)} "
                            "texts: an embedder returns one row per text", obj=embedder)
    return array, time.perf_counter() - began


class _Flusher:
    """Buffers finished batches and writes them to the cache every ``rows`` rows or ``seconds`` seconds."""

    def __init__(self, cache: VectorCache, rows: int, seconds: float):
        self.cache, self.rows, self.seconds = cache, rows, seconds
        self.keys: list[bytes] = []
        self.parts: list[np.ndarray] = []
        self.last = time.monotonic()

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.keys.extend(keys)
        self.parts.append(vectors)
        if len(self.keys) >= self.rows or time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.keys:
            self.cache.put(self.keys, np.concatenate(self.parts))
        self.keys, self.parts, self.last = [], [], time.monotonic()


def _check_sizes(batch_size: int, concurrency: int) -> None:
    for name, value in (("batch_size", batch_size), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidSpecError(f"{name}={value!r}: use a positive whole number (e.g. 64 texts per request, 4 "
                                   "requests at once)", field=name, value=value)


def _missing(texts: Sequence[str], keys: list[bytes], cache: VectorCache) -> list[tuple[bytes, str]]:
    todo: dict[bytes, str] = {}
    for key, text in zip(keys, texts):
        if key not in cache and key not in todo:
            todo[key] = text
    return list(todo.items())


def _run_batches(embedder, kind, todo, cache, stats, *, batch_size, concurrency, flusher, bar) -> None:
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    pending: dict[Future, list] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="embed") as pool:
        try:
            for batch in batches:
                while len(pending) >= concurrency:
                    _collect(pending, wait(pending, return_when=FIRST_COMPLETED).done, stats, flusher, bar)
                pending[pool.submit(_call, embedder, kind, [t for _, t in batch])] = batch
            while pending:
                _collect(pending, wait(pending, return_when=FIRST_COMPLETED).done, stats, flusher, bar)
        except BaseException:  # an interrupt or a failed batch: keep what finished, start nothing more
            for future in pending:
                future.cancel()
            done = [f for f in pending if f.done() and not f.cancelled() and f.exception() is None]
            _collect(pending, done, stats, flusher, bar)
            flusher.flush()
            raise
    flusher.flush()


def _collect(pending: dict, done, stats: EmbedStats, flusher: _Flusher, bar) -> None:
    for future in done:
        batch = pending.pop(future)
        vectors, seconds = future.result()
        stats.latencies_s.append(seconds)
        stats.embedded += len(batch)
        flusher.add([k for k, _ in batch], vectors)
        bar.update(len(batch))


def embed_texts(embedder, texts: Sequence[str], cache: VectorCache, *, kind: str = DOCUMENT, batch_size: int = 64,
                concurrency: int = 4, progress: bool = True, flush_rows: int = 4096, flush_s: float = 10.0,
                desc: str | None = None) -> tuple[np.ndarray, EmbedStats]:
    """Vectors of ``texts`` (documents or queries), embedding only what ``cache`` lacks; ``(matrix, stats)``."""
    _check_sizes(batch_size, concurrency)
    began = time.perf_counter()
    keys = [vector_key(t) for t in texts]
    todo = _missing(texts, keys, cache)
    stats = EmbedStats(texts=len(texts), cached=len(texts) - len(todo), batch_size=batch_size)
    if todo:
        label = desc or f"{getattr(embedder, 'name', 'embedder')}: {kind}s"
        with progress_bar(progress, len(todo), label, "text") as bar:
            _run_batches(embedder, kind, todo, cache, stats, batch_size=batch_size, concurrency=concurrency,
                         flusher=_Flusher(cache, flush_rows, flush_s), bar=bar)
    stats.seconds = time.perf_counter() - began
    return cache.matrix(keys), stats
