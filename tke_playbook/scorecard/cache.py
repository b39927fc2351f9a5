"""An on-disk embedding cache, so a rerun of the scorecard embeds nothing it embedded before.

Vectors are kept per (model, revision, dataset) in one ``.npz`` file under the cache folder (default
``<home>/embeddings``, :func:`default_cache_dir` of the state folder), keyed by the sha256 of the kind
(query/document), the query task and the text. The key holds the raw text: the embedder applies its catalog
prompt, and a prompt change means another model name or revision. :class:`CachedEmbedder` wraps any embedder and
shows a progress bar across what it has to embed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..embed.api import check_texts
from ..embed.base import Embedder
from ..errors import InvalidSpecError, PlaybookError
from ..hostenv import state_dir
from ..reporting import progress_bar

DEFAULT_BATCH = 32


CACHE_FOLDER = "embeddings"  # under the state folder


def default_cache_dir(home: str | os.PathLike | None = None) -> Path:
    """The cache folder when none is given: ``<home>/embeddings`` (``home``: the state folder, the caller's
    settings - ``pb.settings.home``; None: :func:`~tke_playbook.hostenv.state_dir`)."""
    return state_dir(home=home) / CACHE_FOLDER


SLUG_CHARS = 60  # readable part of a cache folder or file name; a hash of the whole name follows


def safe_slug(part) -> str:
    """A folder or file name for any model, revision or dataset name, however hostile (``..``, ``/``, NUL, 10 kB):
    letters, digits, ``.``, ``_`` and ``-`` only, never starting with a dot (so never ``.`` or ``..``), a readable
    part of at most ``SLUG_CHARS`` characters, then a hash of the whole name - two names that clean up alike
    (``a/b`` and ``a_b``) or share a long prefix never share a file."""
    text = str(part)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:SLUG_CHARS] or "_"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable}-{digest}"


def text_key(kind: str, text: str, task: str | None = None) -> str:
    return hashlib.sha256(f"{kind}\0{task or ''}\0{text}".encode("utf-8")).hexdigest()


def revision_of(embedder) -> str:
    """What distinguishes two builds of the same model: ``embedder.revision``, else the model folder's weights
    (name, size, mtime), else ``"served"`` - an endpoint is known by its served model name, whatever its URL (a
    port-forward changes port every time); set ``revision=`` on the client when you redeploy other weights under
    the same name."""
    revision = getattr(embedder, "revision", None)
    if revision:
        return str(revision)
    folder = getattr(embedder, "model_dir", None)
    if folder is not None:
        files = sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*.bin"))
        stamp = "|".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files)
        return "local-" + hashlib.sha256(stamp.encode()).hexdigest()[:12]
    return "served" if getattr(embedder, "base_url", None) else "unversioned"


class EmbeddingCache:
    """Vectors of one (model, revision, dataset) on disk: ``get(keys)`` / ``put(keys, vectors)``."""

    def __init__(self, folder: str | os.PathLike, model: str, revision: str, dataset: str):
        root = Path(folder)
        self.path = root / safe_slug(model) / safe_slug(revision) / f"{safe_slug(dataset)}.npz"
        if not self.path.resolve().is_relative_to(root.resolve()):  # cannot happen with safe slugs; never write outside
            raise InvalidSpecError(f"the cache file for {model!r} would lie outside {root}: use another model name",
                                   field="model", value=model)
        self._rows: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            self._rows = {}
            if self.path.is_file():
                try:
                    with np.load(self.path, allow_pickle=False) as data:
                        self._rows = dict(zip(data["keys"].tolist(), data["vectors"]))
                except (OSError, ValueError, KeyError):
                    self._rows = {}  # a damaged cache file is rebuilt, never trusted
        return self._rows

    def __len__(self) -> int:
        return len(self._load())

    def get(self, key: str) -> np.ndarray | None:
        return self._load().get(key)

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        rows = self._load()
        rows.update(zip(keys, np.asarray(vectors, dtype=np.float32)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        dims = {v.shape for v in rows.values()}
        if len(dims) > 1:
            raise PlaybookError(f"{self.path} would mix vector shapes {sorted(dims)}: the model changed without a "
                                "new name or revision; delete the file or pass revision=", obj=self.path)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(list(rows), dtype=str), vectors=np.stack(list(rows.values())))
        os.replace(tmp, self.path)


class CachedEmbedder:
    """Any embedder behind an :class:`EmbeddingCache`: only texts not seen before are embedded, in batches of
    ``batch_size`` with a progress bar. ``calls`` records each real embedding call (texts, seconds, tokens)."""

    def __init__(self, embedder: Embedder, dataset: str, *, cache_dir: str | os.PathLike | None = None,
                 revision: str | None = None, batch_size: int = DEFAULT_BATCH, progress: bool = True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidSpecError(f"batch_size={batch_size!r}: use a positive integer such as 32",
                                   field="batch_size", value=batch_size)
        self.inner = embedder
        self.batch_size, self.progress = batch_size, progress
        self.revision = revision or revision_of(embedder)
        self.cache = EmbeddingCache(cache_dir or default_cache_dir(), self.name, self.revision, dataset)
        self.calls: list[dict] = []

    @property
    def name(self) -> str:
        return str(getattr(self.inner, "name", None) or type(self.inner).__name__)

    def __getattr__(self, item):  # model_info, model, memory_bytes ... of the wrapped embedder
        if item == "inner":
            raise AttributeError(item)
        return getattr(self.inner, item)

    def _embed(self, kind: str, texts: list[str], task: str | None) -> np.ndarray:
        keys = [text_key(kind, t, task) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if self.cache.get(k) is None))
        if missing:
            by_key = dict(zip(keys, texts))
            with progress_bar(self.progress, len(missing),
                              f"{self.name}: {'queries' if kind == 'query' else 'documents'}", "text") as bar:
                for start in range(0, len(missing), self.batch_size):
                    chunk = missing[start:start + self.batch_size]
                    began = time.perf_counter()
                    vectors = self._call(kind, [by_key[k] for k in chunk], task)
                    self.calls.append({"kind": kind, "texts": len(chunk), "seconds": time.perf_counter() - began,
                                       "tokens": getattr(self.inner, "last_prompt_tokens", None)})
                    self.cache.put(chunk, vectors)
                    bar.update(len(chunk))
        return np.stack([self.cache.get(k) for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)

    def _call(self, kind: str, texts: list[str], task: str | None) -> np.ndarray:
        if kind == "query":
            out = self.inner.embed_queries(texts, task) if task else self.inner.embed_queries(texts)
        else:
            out = self.inner.embed_documents(texts)
        array = np.asarray(out, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(texts):
            raise PlaybookError(f"{self.name} returned shape {array.shape} for {len(texts)} texts: an embedder must "
                                "return one row per text", obj=self.inner)
        return array

    def embed_queries(self, texts: Iterable[str] | str, task: str | None = None) -> np.ndarray:
        return self._embed("query", check_texts(texts), task)

    def embed_documents(self, texts: Iterable[str] | str) -> np.ndarray:
        return self._embed("document", check_texts(texts), None)


def cacheable(embedder) -> bool:
    """Embedders that learn from what they embed (the TF-IDF baseline fits its vocabulary) are not cached."""
    return not callable(getattr(embedder, "fit", None))


class ResultCache:
    """mteb's scores and the recorded rankings of one system on one task, as JSON under ``<cache>/results``,
    keyed by the system's fingerprint (name, revision, parameters), the task's content and the mteb version: a
    rerun of an unchanged scorecard evaluates nothing."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder or default_cache_dir()) / "results"

    @staticmethod
    def key(*parts: str) -> str:
        return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:32]

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(value), encoding="utf-8")
        os.replace(tmp, self.folder / f"{key}.json")
