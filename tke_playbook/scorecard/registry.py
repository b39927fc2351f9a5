"""The systems a scorecard compares, any number of them: dense embedders (HTTP endpoints - the local server or
deployments -, in-process models, the TF-IDF baseline), BM25, hybrids of a dense model with BM25, and two-stage
pipelines (any of those, then a reranker: :class:`~tke_playbook.scorecard.pipelines.TwoStage`).

Pass embedder objects as they are, a :class:`~tke_playbook.scorecard.bm25.BM25Retriever`, a :class:`Hybrid`, a
``TwoStage``, or one of the names ``"bm25"``, ``"tfidf"``; :func:`build_systems` turns them into mteb search models.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..embed.base import Embedder
from ..embed.http import EmbeddingClient
from ..embed.lexical import LexicalEmbedder
from ..embed.local import LocalEmbedder
from ..errors import InvalidSpecError
from ..localserver import start_server
from .bm25 import BM25Retriever
from .cache import CachedEmbedder, cacheable, revision_of
from .fusion import RRF_K
from .pipelines import TWO_STAGE, CachedReranker, RerankSearch, TwoStage
from .search import BM25Search, HybridSearch, RecordingSearch, dense_search


class Kind(str, enum.Enum):
    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"
    TWO_STAGE = TWO_STAGE


@dataclass(frozen=True)
class Hybrid:
    """Dense + BM25 by reciprocal rank fusion; ``dense`` is an embedder (also compared on its own when listed)."""

    dense: Embedder
    bm25: BM25Retriever | None = None
    name: str | None = None
    rrf_k: int = RRF_K

    def __post_init__(self) -> None:
        if not callable(getattr(self.dense, "embed_queries", None)):
            raise InvalidSpecError("Hybrid(dense=...) needs an embedder (an EmbeddingClient or LocalEmbedder)",
                                   field="dense", value=type(self.dense).__name__)

    @property
    def label(self) -> str:
        return self.name or f"hybrid-{_name(self.dense).rsplit('/', 1)[-1]}+bm25"


@dataclass
class System:
    """One compared system: its name, kind, the recording mteb search model, and the (cached) embedder if dense."""

    name: str
    kind: Kind
    search: RecordingSearch
    embedder: Embedder | None = None
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)


def _name(embedder) -> str:
    return str(getattr(embedder, "name", None) or type(embedder).__name__).replace(" ", "-")


class _FitOnIndex:
    """An embedder that learns from the corpus (TF-IDF) is fitted when mteb indexes the corpus."""

    def __init__(self, embedder, inner):
        self.embedder, self.inner = embedder, inner
        self.mteb_model_meta = inner.mteb_model_meta

    def index(self, corpus, **kwargs: Any) -> None:
        self.embedder.fit(list(corpus["text"]))
        self.inner.index(corpus, **kwargs)

    def search(self, queries, **kwargs: Any) -> dict:
        return self.inner.search(queries, **kwargs)


def _params(item) -> str:
    """Name, revision and plain parameters of a system: what decides its results on a given task."""
    plain = sorted((k, v) for k, v in vars(item).items() if isinstance(v, (int, float, str, bool, type(None)))
                   and not k.startswith(("_", "last_")))  # last_latency_s, last_prompt_tokens: measurements
    return f"{type(item).__name__}|{_name(item)}|{revision_of(item) if cacheable(item) else ''}|{plain}"


def _resolve_served_name(item) -> None:
    """An HTTP client without a model name learns the served one now, so the system is named after the model."""
    if getattr(item, "model", "") is None and callable(getattr(item, "models", None)):
        served = item.models()
        item.model = served[0] if served else None


def _item(item):
    if isinstance(item, str):
        named = {"bm25": BM25Retriever, "tfidf": LexicalEmbedder, "lexical": LexicalEmbedder}
        if item.lower() not in named:
            raise InvalidSpecError(f"unknown system {item!r}: pass an embedder object, a Hybrid, or one of "
                                   f"{', '.join(named)}", field="systems", value=item)
        return named[item.lower()]()
    return item


def build_systems(items: Sequence, dataset: str, *, cache_dir=None, progress: bool = True,
                  task_instruction: str | None = None) -> list[System]:
    """mteb search models for ``items``; dense embedders go through the embedding cache (one per embedder,
    shared with any hybrid built on it)."""
    items = [_item(i) for i in items]
    if not items:
        raise InvalidSpecError("a scorecard needs at least one system: pass embedders, 'bm25' or a Hybrid",
                               field="systems", value=0)
    cached: dict[int, Embedder] = {}
    rerankers: dict[int, CachedReranker] = {}

    def dense(embedder):
        if id(embedder) not in cached:
            cached[id(embedder)] = CachedEmbedder(embedder, dataset, cache_dir=cache_dir, progress=progress) \
                if cacheable(embedder) else embedder
        wrapped = cached[id(embedder)]
        search = dense_search(wrapped, task=task_instruction)
        return wrapped, search if cacheable(embedder) else _FitOnIndex(embedder, search)

    def first_stage(item) -> tuple[Any, str]:
        """A pipeline's first stage as a search model, and what decides its results."""
        if isinstance(item, BM25Retriever):
            return BM25Search(item), _params(item)
        if isinstance(item, Hybrid):
            _resolve_served_name(item.dense)
            bm25 = item.bm25 or BM25Retriever()
            return (HybridSearch(item.label, [dense(item.dense)[1], BM25Search(bm25)], rrf_k=item.rrf_k),
                    f"hybrid|{item.label}|{_params(item.dense)}|{_params(bm25)}|{item.rrf_k}|{task_instruction}")
        _resolve_served_name(item)
        return dense(item)[1], f"{_params(item)}|{task_instruction}"

    systems: list[System] = []
    for item in items:
        if isinstance(item, TwoStage):
            first = _item(item.first)
            _resolve_served_name(item.reranker)
            search, fingerprint = first_stage(first)
            reranker = rerankers.setdefault(id(item.reranker), CachedReranker(item.reranker, dataset,
                                                                              cache_dir=cache_dir))
            rerank = RerankSearch(item.label, search, reranker, item.depth, progress=progress)
            systems.append(System(item.label, Kind.TWO_STAGE, RecordingSearch(item.label, rerank),
                                  fingerprint=f"two-stage|{fingerprint}|{_params(item.reranker)}|{item.depth}",
                                  extra={**item.describe(), "first_system": _first_name(first)}))
            continue
        _resolve_served_name(item.dense if isinstance(item, Hybrid) else item)
        if isinstance(item, BM25Retriever):
            systems.append(System(item.name, Kind.LEXICAL, RecordingSearch(item.name, BM25Search(item)),
                                  fingerprint=_params(item)))
        elif isinstance(item, Hybrid):
            wrapped, search = dense(item.dense)
            bm25 = item.bm25 or BM25Retriever()
            systems.append(System(item.label, Kind.HYBRID, RecordingSearch(
                item.label, HybridSearch(item.label, [search, BM25Search(bm25)], rrf_k=item.rrf_k)), wrapped,
                fingerprint=f"hybrid|{item.label}|{_params(item.dense)}|{_params(bm25)}|{item.rrf_k}|{task_instruction}"))
        elif callable(getattr(item, "embed_queries", None)) and callable(getattr(item, "embed_documents", None)):
            wrapped, search = dense(item)
            kind = Kind.DENSE if cacheable(item) else Kind.LEXICAL
            systems.append(System(_name(item), kind, RecordingSearch(_name(item), search), wrapped,
                                  fingerprint=f"{_params(item)}|{task_instruction}"))
        else:
            raise InvalidSpecError(f"{type(item).__name__} is not a system: pass an embedder, a BM25Retriever, a "
                                   "Hybrid or 'bm25'", field="systems", value=type(item).__name__)
    _unique(systems)
    return systems


def _first_name(first) -> str:
    """The name the first stage has when it is also compared on its own."""
    return first.label if isinstance(first, Hybrid) else first.name if isinstance(first, BM25Retriever) else \
        _name(first)


def _unique(systems: list[System]) -> None:
    seen: dict[str, int] = {}
    for system in systems:
        count = seen.get(system.name, 0)
        seen[system.name] = count + 1
        if count:
            system.name = f"{system.name}-{count + 1}"
            system.search.name = system.name


def local_systems(dense=None, *, tfidf: bool = False) -> list:
    """The offline line-up: a dense model (default: the packaged all-MiniLM-L6-v2 in-process), BM25 and their
    hybrid; ``tfidf`` adds the TF-IDF baseline."""
    if dense is None:
        dense = LocalEmbedder()
    return [dense, BM25Retriever(), Hybrid(dense)] + ([LexicalEmbedder()] if tfidf else [])


def target_systems(pb, models: Sequence[str] = (), *, baselines: bool = True) -> list:
    """The endpoints of a target (``workflow.open_target``): every model in ``models`` (deployed with 03), or
    the served model when empty; with ``baselines``, BM25, a hybrid of the first model with BM25 and TF-IDF."""
    clients = []
    for model in list(models) or [""]:
        try:
            endpoint = pb.endpoint(model) if model else pb.endpoint()
        except TypeError as exc:  # the local target serves one model
            raise InvalidSpecError(f"This target serves one model; leave MODELS empty instead of {model!r}, or run "
                                   "on a cluster with each model deployed by 03.", field="models", value=model,
                                   cause=exc) from exc
        clients.append(endpoint.client())
    return clients + ([BM25Retriever(), Hybrid(clients[0]), LexicalEmbedder()] if baselines else [])


def local_endpoints(model_dirs: Sequence, **server_options) -> list:
    """Several models side by side on this machine: one local server per model folder (each a complete download,
    or the packaged offline model), returned as clients; ``client.server.stop()`` (or ``stop_local(clients)``)
    ends them. With a hub, download the folders first (02); offline, only the packaged model exists."""
    clients = []
    try:
        for folder in model_dirs:
            server = start_server(folder, **server_options)
            client = EmbeddingClient(server.url, server.served_model_name, server.api_key)
            client.server = server
            clients.append(client)
    except BaseException:
        stop_local(clients)
        raise
    return clients


def stop_local(clients: Sequence) -> None:
    """Stop the local servers behind clients from :func:`local_endpoints`."""
    for client in clients:
        server = getattr(client, "server", None)
        if server is not None:
            server.stop()
