"""The scorecard on your own documents: any number of systems (endpoints, in-process models, BM25, TF-IDF, dense +
BM25 hybrids) rank the chunks of a :class:`~tke_playbook.corpus.Corpus` for your queries; quality comes from your
labels (TREC qrels, complete or growing as you label in the notebook), agreement between systems needs none.

Dense systems embed the corpus once through :func:`~tke_playbook.corpus.embed_texts` (bounded concurrency, a
resumable on-disk cache keyed by model, revision, prompt kind and text hash) and search it exactly in blocks
(:func:`~tke_playbook.corpus.topk_search`); BM25 scores blocks of queries; a hybrid fuses its dense half's and
BM25's top ``depth`` by reciprocal rank fusion. Every run keeps each query's top ``depth`` chunks.

Labels may name chunks (``<doc_id>#<n>``) or documents. With document labels, a document's score is its best
chunk's (MaxP) and chunk labels are lifted to their documents.

**How many more judgements halve the interval.** The 95 % interval comes from resampling judged queries (the query
bootstrap of :mod:`~tke_playbook.scorecard.stats`); its width falls as 1/√n with n judged queries, like the
standard error of a mean. Halving it takes 4n judged queries: 3n more, which at the labels per query seen so far
(J) is 3·n·J more judgements. The same rule gives the figure in the HTML report and the benchmark.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..corpus.loading import Corpus
from ..corpus.queries import CHUNK, DOCUMENT, label_unit
from ..corpus.topk import merge_top, run_from_topk, topk_search
from ..corpus.vectors import DOCUMENT as DOC_KIND
from ..corpus.vectors import QUERY, EmbedStats, VectorCache, embed_texts
from ..embed.http import EmbeddingClient
from ..embed.lexical import LexicalEmbedder
from ..embed.local import LocalEmbedder
from ..errors import InvalidSpecError
from ..evaluate.metrics import judged_queries, ranked
from ..specs.catalog import OFFLINE_MODEL, list_models
from ..specs.names import unknown
from . import stats
from .agreement import agreement_table, most_disagreed, overlap_matrix
from .bm25 import BM25Retriever
from .cache import default_cache_dir, revision_of
from .fusion import RRF_K, reciprocal_rank_fusion
from .pipelines import CachedReranker, TwoStage, rerank_run
from .registry import Hybrid, Kind

HEADLINE = ("ndcg@10", "recall@10", "mrr@10")
DEFAULT_DEPTH = 100
HALVING_METHOD = ("interval width ~ 1/sqrt(judged queries) (query bootstrap): halving it needs 4x the judged "
                  "queries, i.e. 3n more queries at the judgements per query seen so far")
LOCAL_NAMES = ("local", "minilm", "all-minilm-l6-v2", OFFLINE_MODEL.lower())
NAMED = ("bm25", "tfidf", "hybrid", *LOCAL_NAMES)
TFIDF_BLOCK = 256


@dataclass
class CorpusSystem:
    """One system on a corpus: a dense ``embedder``, a ``bm25`` retriever, TF-IDF (``embedder`` that fits), a
    hybrid of ``dense`` (another CorpusSystem) and BM25, or a two-stage pipeline: ``first`` (another CorpusSystem)
    then ``reranker`` on its top ``rerank_depth``."""

    name: str
    kind: Kind
    embedder: object | None = None
    bm25: BM25Retriever | None = None
    dense: "CorpusSystem | None" = None
    rrf_k: int = RRF_K
    first: "CorpusSystem | None" = None
    reranker: object | None = None
    rerank_depth: int = 0


def _from_string(item: str, api_key: str | None):
    text = item.strip()
    if text.startswith(("http://", "https://")):
        return EmbeddingClient(text, None, api_key)
    if text.lower() in LOCAL_NAMES:
        return LocalEmbedder()
    if text.lower() == "bm25":
        return BM25Retriever()
    if text.lower() == "tfidf":
        return LexicalEmbedder()
    if Path(text).expanduser().is_dir():
        return LocalEmbedder(Path(text).expanduser())
    raise unknown("system", text, [*NAMED, *(m.hf_id for m in list_models())])


def _label(embedder) -> str:
    return str(getattr(embedder, "name", None) or type(embedder).__name__).replace(" ", "-")


def _named_model(item) -> None:
    """An HTTP client without a model name learns the served one, so the system is named after the model."""
    if isinstance(item, EmbeddingClient) and item.model is None:
        served = item.models()
        item.model = served[0] if served else None


def _resolve(item, systems: list[CorpusSystem], api_key: str | None):
    """A string as the object it names: ``hybrid`` (the first dense system fused with BM25), ``FIRST>URL`` (a
    two-stage pipeline: FIRST, then the endpoint at URL reranks), or what :func:`_from_string` knows."""
    if not isinstance(item, str):
        return item
    if ">" in item:
        first, _, url = item.partition(">")
        return TwoStage(_resolve(first.strip(), systems, api_key), EmbeddingClient(url.strip(), None, api_key))
    if item.strip().lower() == "hybrid":
        first = next((s for s in systems if s.kind is Kind.DENSE), None)
        if first is None:
            raise InvalidSpecError("'hybrid' fuses the first dense system with BM25: list a dense system (a URL "
                                   "or 'local') before it", field="systems", value=item)
        return Hybrid(first.embedder)
    return _from_string(item, api_key)


def corpus_systems(items: Sequence, *, api_key: str | None = None) -> list[CorpusSystem]:
    """The systems to compare: embedder objects, ``BM25Retriever``, ``Hybrid``, ``TwoStage``, or strings - a URL
    (an OpenAI-compatible endpoint; ``api_key`` for it), ``local`` (the packaged MiniLM in-process), a model folder,
    ``bm25``, ``tfidf``, ``hybrid`` (the first dense system fused with BM25) or ``FIRST>URL`` (FIRST's top
    chunks reranked by the endpoint at URL on vLLM's ``/rerank``, e.g. ``bm25>http://127.0.0.1:60000``)."""
    systems: list[CorpusSystem] = []
    for item in items:
        systems.append(_system(_resolve(item, systems, api_key), systems))
    if not systems:
        raise InvalidSpecError("a scorecard needs at least one system: give a URL, 'local', 'bm25' or 'tfidf'",
                               field="systems", value=0)
    names = [s.name for s in systems]
    for i, system in enumerate(systems):
        if names.count(system.name) > 1:
            system.name = f"{system.name}-{names[:i + 1].count(system.name)}"
    return systems


def _two_stage(item: TwoStage, known: list[CorpusSystem]) -> CorpusSystem:
    first = item.first if not isinstance(item.first, str) else _resolve(item.first, known, None)
    stage = next((s for s in known if first in (s.embedder, s.bm25) and s.kind is not Kind.HYBRID), None)
    _named_model(item.reranker)
    return CorpusSystem(item.label, Kind.TWO_STAGE, first=stage or _system(first, known), reranker=item.reranker,
                        rerank_depth=item.depth)


def _hybrid(item: Hybrid, known: list[CorpusSystem]) -> CorpusSystem:
    dense = next((s for s in known if s.embedder is item.dense), None) or _system(item.dense, [])
    return CorpusSystem(item.label, Kind.HYBRID, dense=dense, bm25=item.bm25 or BM25Retriever(), rrf_k=item.rrf_k)


def _system(item, known: list[CorpusSystem]) -> CorpusSystem:
    if isinstance(item, TwoStage):
        return _two_stage(item, known)
    if isinstance(item, BM25Retriever):
        return CorpusSystem(item.name, Kind.LEXICAL, bm25=item)
    if isinstance(item, Hybrid):
        return _hybrid(item, known)
    if callable(getattr(item, "embed_documents", None)) and callable(getattr(item, "embed_queries", None)):
        _named_model(item)
        kind = Kind.LEXICAL if callable(getattr(item, "fit", None)) else Kind.DENSE
        return CorpusSystem(_label(item), kind, embedder=item)
    raise InvalidSpecError(f"{type(item).__name__} is not a system: give an embedder, a BM25Retriever, a Hybrid, a "
                           "URL, 'local', 'bm25' or 'tfidf'", field="systems", value=type(item).__name__)


# --- running the systems ------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """How systems run: ``depth`` chunks kept per query, the embedding cache, batch size and requests in flight."""

    depth: int = DEFAULT_DEPTH
    cache_dir: object = None
    batch_size: int = 64
    concurrency: int = 4
    progress: bool = True


def _throughput_file(cache: VectorCache) -> Path:
    return cache.folder / "throughput.json"


def _dense_stats(cache: VectorCache, docs: EmbedStats) -> dict:
    """This run's embedding figures; when everything came from the cache, the last measured ones."""
    path = _throughput_file(cache)
    if docs.embedded:
        measured = {"chunks_per_s": docs.per_s, "p99_ms": docs.p99_ms(), "batch_size": docs.batch_size,
                    "measured_chunks": docs.embedded}
        path.write_text(json.dumps(measured), encoding="utf-8")
    else:
        try:
            measured = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            measured = {}
    return {"embedded": docs.embedded, "cached": docs.cached, **measured}


def corpus_cache_dir(home=None) -> Path:
    """Where corpus runs keep vectors and reranker scores when no ``cache_dir`` is given: ``corpus`` in the
    embedding cache of the state folder ``home`` (``pb.settings.home``; None: ``$TKE_PLAYBOOK_HOME``)."""
    return default_cache_dir(home) / "corpus"


def vector_cache(name: str, embedder, cache_dir=None, kind: str = DOC_KIND) -> VectorCache:
    """The on-disk vectors of system ``name`` (its embedder's revision; documents or queries, whose prompts differ)."""
    root = Path(cache_dir) if cache_dir else corpus_cache_dir()
    return VectorCache(root, f"{name}|{revision_of(embedder)}|{kind}")


def _dense_run(system: CorpusSystem, corpus: Corpus, queries: Mapping[str, str], opts: RunOptions):
    doc_cache = vector_cache(system.name, system.embedder, opts.cache_dir, DOC_KIND)
    query_cache = vector_cache(system.name, system.embedder, opts.cache_dir, QUERY)
    # requests in flight for an endpoint; an in-process model already uses every core for one batch
    concurrency = opts.concurrency if getattr(system.embedder, "base_url", None) else 1
    sizes = {"batch_size": opts.batch_size, "concurrency": concurrency, "progress": opts.progress}
    doc_vectors, doc_stats = embed_texts(system.embedder, corpus.texts, doc_cache, kind=DOC_KIND,
                                         desc=f"{system.name}: chunks", **sizes)
    query_vectors, _ = embed_texts(system.embedder, list(queries.values()), query_cache, kind=QUERY,
                                   desc=f"{system.name}: queries", **sizes)
    scores, index = topk_search(query_vectors, doc_vectors, opts.depth)
    return run_from_topk(scores, index, list(queries), corpus.ids), _dense_stats(doc_cache, doc_stats)


def _bm25_run(system: CorpusSystem, corpus: Corpus, queries: Mapping[str, str], opts: RunOptions, block: int = 32):
    bm25 = system.bm25
    if bm25.doc_ids != corpus.ids:
        bm25.index(corpus.ids, corpus.texts)
    qids, texts = list(queries), list(queries.values())
    runs = {}
    for start in range(0, len(texts), block):
        scores = bm25.scores(texts[start:start + block])
        best_s, best_i = merge_top(np.empty((len(scores), 0), np.float32), np.empty((len(scores), 0), np.int64),
                                   scores, 0, min(opts.depth, len(corpus)))
        runs.update(run_from_topk(best_s, best_i, qids[start:start + block], corpus.ids))
    return runs, {}


def _tfidf_run(system: CorpusSystem, corpus: Corpus, queries: Mapping[str, str], opts: RunOptions):
    embedder = system.embedder
    embedder.fit(corpus.texts)
    q = np.asarray(embedder.embed_queries(list(queries.values())), dtype=np.float32)
    best_s, best_i = np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
    texts = corpus.texts
    for start in range(0, len(texts), TFIDF_BLOCK):  # never the whole documents × vocabulary matrix
        block = np.asarray(embedder.embed_documents(texts[start:start + TFIDF_BLOCK]), dtype=np.float32)
        best_s, best_i = merge_top(best_s, best_i, q @ block.T, start, min(opts.depth, len(texts)))
    return run_from_topk(best_s, best_i, list(queries), corpus.ids), {}


def _hybrid_run(system: CorpusSystem, runs: dict, corpus: Corpus, queries, opts: RunOptions):
    dense_run = runs.get(system.dense.name)
    if dense_run is None:
        dense_run, _ = _dense_run(system.dense, corpus, queries, opts)
    bm25_run, _ = _bm25_run(CorpusSystem("bm25", Kind.LEXICAL, bm25=system.bm25), corpus, queries, opts)
    fused = reciprocal_rank_fusion([dense_run, bm25_run], k=system.rrf_k)
    return {q: dict(sorted(row.items(), key=lambda i: (-i[1], i[0]))[:opts.depth]) for q, row in fused.items()}, {}


def _two_stage_run(system: CorpusSystem, runs: dict, corpus: Corpus, queries, opts: RunOptions):
    first = runs.get(system.first.name) if system.first.name in runs else None
    if first is None:
        first, _ = _run_one(system.first, runs, corpus, queries, opts)
    root = Path(opts.cache_dir) if opts.cache_dir else corpus_cache_dir()
    reranker = CachedReranker(system.reranker, str(corpus.name), cache_dir=root)
    texts = dict(zip(corpus.ids, corpus.texts))
    return rerank_run(first, texts, queries, reranker, system.rerank_depth, progress=opts.progress,
                      desc=f"{system.name}: reranking"), {}


def _run_one(system: CorpusSystem, runs: dict, corpus: Corpus, queries, opts: RunOptions):
    if system.kind is Kind.TWO_STAGE:
        return _two_stage_run(system, runs, corpus, queries, opts)
    if system.kind is Kind.HYBRID:
        return _hybrid_run(system, runs, corpus, queries, opts)
    if system.bm25 is not None:
        return _bm25_run(system, corpus, queries, opts)
    if system.kind is Kind.LEXICAL:
        return _tfidf_run(system, corpus, queries, opts)
    return _dense_run(system, corpus, queries, opts)


def _check_queries(queries: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(queries, Mapping) or not queries:
        raise InvalidSpecError("no queries: give {query_id: text}, read_queries(path) or queries_from_texts([...])",
                               field="queries", value=type(queries).__name__)
    return {str(q): str(t) for q, t in queries.items()}


def run_corpus(corpus: Corpus, queries: Mapping[str, str], systems: Sequence, *, qrels=None, api_key=None,
               options: RunOptions | None = None, n_boot: int = stats.DEFAULT_BOOT,
               home=None) -> "CorpusScorecard":
    """Rank ``corpus`` for ``queries`` with every system; the result scores them against ``qrels`` (optional).
    Vectors are cached in ``options.cache_dir``, else :func:`corpus_cache_dir` of ``home`` (the state folder:
    ``pb.settings.home``; None: ``$TKE_PLAYBOOK_HOME``)."""
    opts = options or RunOptions()
    if not opts.cache_dir:
        opts = replace(opts, cache_dir=corpus_cache_dir(home))
    queries = _check_queries(queries)
    resolved = corpus_systems(systems, api_key=api_key)
    runs, figures = {}, {}
    for system in resolved:
        began = time.perf_counter()
        runs[system.name], extra = _run_one(system, runs, corpus, queries, opts)
        figures[system.name] = {"kind": system.kind.value, "seconds": time.perf_counter() - began, **extra}
    card = corpus.card()
    return CorpusScorecard(card, queries, runs, dict(qrels or {}), corpus, figures, n_boot=n_boot,
                           depth=opts.depth)


# --- the result ---------------------------------------------------------------------------------------------


def max_passage(run: Mapping[str, Mapping[str, float]], doc_of: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """A chunk run as a document run: each document scores its best chunk (MaxP)."""
    out = {}
    for qid, scores in run.items():
        row: dict[str, float] = {}
        for chunk, score in scores.items():
            doc = doc_of.get(chunk, chunk)
            row[doc] = max(score, row.get(doc, -math.inf))
        out[qid] = row
    return out


def _interval(values: np.ndarray, n_boot: int) -> tuple[float, float, float]:
    if len(values) >= 2:
        return stats.bootstrap_ci(values, n_boot=n_boot)
    return (float(values.mean()) if len(values) else float("nan")), float("nan"), float("nan")


def _with_interval(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.3f}" if math.isnan(low) else f"{value:.3f} ({low:.3f}–{high:.3f})"


def _figure(value: float) -> str:
    """A measured figure for a page: one decimal with thousands separators, "—" where a system has none."""
    return "—" if math.isnan(value) else f"{value:,.1f}"


def _short_system(name: str) -> str:
    """A system's name without the hub organisation ("sentence-transformers/all-MiniLM-L6-v2" -> "all-MiniLM-L6-v2")."""
    return name.rsplit("/", 1)[-1]


@dataclass
class CorpusScorecard:
    """Every system's run on a corpus, and the numbers from it: :meth:`table` (quality with 95 % intervals, from
    the labels), :meth:`agreement`, :meth:`disagreements`, :meth:`labels_to_halve`, :meth:`pool` (what to label
    next). :meth:`with_qrels` gives the same runs scored against new labels - nothing is embedded again."""

    card: dict
    queries: dict[str, str]
    runs: dict[str, dict[str, dict[str, float]]]
    qrels: dict[str, dict[str, float]]
    corpus: Corpus | None
    figures: dict[str, dict]
    n_boot: int = stats.DEFAULT_BOOT
    depth: int = DEFAULT_DEPTH
    _doc_of: dict = field(default_factory=dict, repr=False)

    @property
    def systems(self) -> list[str]:
        return list(self.runs)

    def doc_of(self) -> dict[str, str]:
        if not self._doc_of and self.corpus is not None:
            self._doc_of = self.corpus.doc_of()
        return self._doc_of

    def with_qrels(self, qrels) -> "CorpusScorecard":
        return replace(self, qrels={q: dict(j) for q, j in (qrels or {}).items()})

    @property
    def unit(self) -> str:
        doc_of = self.doc_of()
        return label_unit(self.qrels, doc_of.keys(), set(doc_of.values())) if self.qrels else CHUNK

    def unit_qrels(self) -> dict[str, dict[str, float]]:
        """The labels at the unit the scorecard uses (chunk labels lifted to documents when the unit is documents)."""
        if self.unit == CHUNK:
            return {q: dict(j) for q, j in self.qrels.items() if q in self.queries}
        doc_of = self.doc_of()
        out: dict[str, dict[str, float]] = {}
        for qid, judged in self.qrels.items():
            if qid in self.queries:
                row = out.setdefault(qid, {})
                for item, grade in judged.items():
                    doc = doc_of.get(item, item)
                    row[doc] = max(grade, row.get(doc, 0.0))
        return out

    def unit_runs(self) -> dict[str, dict]:
        if self.unit == CHUNK:
            return self.runs
        doc_of = self.doc_of()
        return {name: max_passage(run, doc_of) for name, run in self.runs.items()}

    def judged(self) -> list[str]:
        return judged_queries(self.unit_qrels())

    def per_query(self, name: str) -> pd.DataFrame:
        if name not in self.runs:
            raise unknown("system", name, self.systems)
        qrels = self.unit_qrels()
        if not judged_queries(qrels):
            return pd.DataFrame(columns=list(HEADLINE))
        return stats.per_query_scores(qrels, self.unit_runs()[name], ks=(10,))

    def table(self) -> pd.DataFrame:
        """One row per system: nDCG@10, recall@10, MRR@10 with their 95 % intervals over the judged queries (NaN
        without labels), p99 latency and throughput of the chunks' embedding (dense systems)."""
        rows = []
        for name in self.systems:
            per_query = self.per_query(name)
            row = {"system": name, "kind": self.figures[name]["kind"]}
            for metric in HEADLINE:
                values = per_query[metric].to_numpy(dtype=float) if len(per_query) else np.array([])
                row[metric], row[f"{metric} low"], row[f"{metric} high"] = _interval(values, self.n_boot)
            row["judged queries"] = len(per_query)
            row["p99 ms"] = self.figures[name].get("p99_ms", np.nan)
            row["chunks/s"] = self.figures[name].get("chunks_per_s", np.nan)
            rows.append(row)
        return pd.DataFrame(rows).set_index("system")

    def summary(self) -> pd.DataFrame:
        """:meth:`table` for reading on a page: each headline metric with its 95 % interval in one column
        ("0.512 (0.401–0.618)"), the judged queries, and the bulk embedding's p99 per request (of ``batch_size``
        chunks) and chunks/s, "—" for a system that embedded nothing (bm25, hybrid); a model's organisation is
        dropped from its name. :meth:`table` keeps every number for plots and code."""
        table = self.table()
        out = pd.DataFrame(index=[_short_system(name) for name in table.index])
        out.index.name = "system"
        for metric in HEADLINE:
            out[f"{metric} (95% CI)"] = [_with_interval(*values) for values in
                                         table[[metric, f"{metric} low", f"{metric} high"]].to_numpy(dtype=float)]
        out["judged queries"] = table["judged queries"].to_numpy()
        out[self._bulk_p99_label()] = [_figure(value) for value in table["p99 ms"].to_numpy(dtype=float)]
        out["bulk chunks/s"] = [_figure(value) for value in table["chunks/s"].to_numpy(dtype=float)]
        return out

    def _bulk_p99_label(self) -> str:
        """The summary's latency column says what it times: one bulk request of the corpus's chunks (``batch_size``
        of them), not a query - seconds for a request of 64 chunks on a CPU are no query latency."""
        sizes = {self.figures[name].get("batch_size") for name in self.systems} - {None, 0}
        return f"bulk p99 ms ({sizes.pop()} chunks/request)" if len(sizes) == 1 else "bulk p99 ms (per request)"

    def labels_to_halve(self) -> dict:
        """How many more judgements would halve the nDCG@10 interval (the method: see the module docstring)."""
        qrels = self.unit_qrels()
        judged = judged_queries(qrels)
        n = len(judged)
        per_query = float(np.mean([len(self.qrels.get(q, {})) for q in judged])) if n else 0.0
        table = self.table() if n >= 2 else None
        widths = {} if table is None else (table["ndcg@10 high"] - table["ndcg@10 low"]).round(4).to_dict()
        return {"judged_queries": n, "judgements_per_query": round(per_query, 2),
                "more_queries": 3 * n if n >= 2 else None,
                "more_judgements": math.ceil(3 * n * per_query) if n >= 2 else None,
                "ndcg@10_ci_width": widths, "method": HALVING_METHOD}

    def agreement(self, k: int = 10) -> pd.DataFrame:
        return agreement_table(self.runs, k)

    def overlap(self, k: int = 10) -> pd.DataFrame:
        return overlap_matrix(self.runs, k)

    def disagreements(self, a: str | None = None, b: str | None = None, *, k: int = 10, n: int = 10) -> pd.DataFrame:
        """The (query, chunk) pairs two systems (default: the first two) disagree on most, with the chunk's text."""
        names = self.systems
        if len(names) < 2:
            raise InvalidSpecError("disagreements need two systems", field="systems", value=len(names))
        a, b = a or names[0], b or names[1]
        for name in (a, b):
            if name not in self.runs:
                raise unknown("system", name, names)
        frame = most_disagreed(self.runs[a], self.runs[b], a=a, b=b, k=k, n=n, query_text=self.queries)
        if self.corpus is not None and len(frame):
            text = dict(zip(self.corpus.chunks["chunk_id"], self.corpus.chunks["text"]))
            frame["text"] = [" ".join(text.get(c, "").split())[:200] for c in frame["chunk"]]
        return frame

    def pool(self, k: int = 10, *, unjudged_only: bool = True, seed: int = 0) -> pd.DataFrame:
        """What to label: for each query, the union of every system's top ``k`` chunks, shuffled (so nobody can
        tell which system found which), without the chunks already labelled."""
        rng = random.Random(seed)
        rows = []
        for qid, text in self.queries.items():
            chunks = sorted({c for run in self.runs.values() for c in ranked(run.get(qid, {}))[:k]})
            judged = self.qrels.get(qid, {})
            chunks = [c for c in chunks if not (unjudged_only and c in judged)]
            rng.shuffle(chunks)
            rows += [{"query_id": qid, "query": text, "chunk_id": c} for c in chunks]
        frame = pd.DataFrame(rows, columns=["query_id", "query", "chunk_id"])
        if self.corpus is not None and len(frame):
            text = dict(zip(self.corpus.chunks["chunk_id"], self.corpus.chunks["text"]))
            frame["text"] = [text.get(c, "") for c in frame["chunk_id"]]
        return frame

    def to_dict(self, k: int = 10) -> dict:
        """Everything as JSON-ready values: the card, the table, agreement, the judgements to halve the interval."""
        table = self.table().reset_index()
        return {"dataset": self.card, "unit": self.unit, "queries": len(self.queries),
                "systems": json.loads(table.to_json(orient="records")),
                "agreement": json.loads(self.agreement(k).to_json(orient="records")),
                "labels_to_halve": self.labels_to_halve(), "depth": self.depth}
