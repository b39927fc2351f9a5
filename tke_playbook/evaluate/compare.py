"""Evaluate one embedder, or compare two, on a retrieval dataset - through the embedder interface only.

Anything with ``name``, ``embed_queries(texts, task=None)`` and ``embed_documents(texts)`` works: the HTTP
client of a vLLM deployment, :class:`~tke_playbook.embed.local.LocalEmbedder` or the lexical baseline. So the
same calls compare BGE and E5 on a cluster, and all-MiniLM-L6-v2 against TF-IDF on a laptop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..embed.base import Embedder
from ..errors import InvalidSpecError, PlaybookError
from ..specs.catalog import ModelInfo, get_model
from . import metrics as evaluation
from . import similarity
from .datasets import RetrievalDataset, load_bilingual

DEFAULT_KS = (1, 3, 5, 10)
SLICES = ("all", "same-language", "cross-lingual")


@dataclass
class EvaluationResult:
    """What :func:`evaluate_embedder` measured for one embedder (everything the plots need)."""

    name: str
    metrics: dict[str, float]            # over all documents and queries
    slices: pd.DataFrame                 # index: all / same-language / cross-lingual; columns: metrics
    per_query: pd.DataFrame              # one row per query: metrics, language, topic, kind
    query_doc_sim: np.ndarray            # queries × documents cosine
    sentence_sim: np.ndarray             # sentence set × sentence set cosine
    doc_vectors: np.ndarray
    distributions: pd.DataFrame          # every query-document pair: score, grade, relevant, cross_lingual
    separation: dict[str, float]         # mean relevant/irrelevant score, gap, AUC
    topic_separation: dict[str, float]   # sentence set: within-topic vs across-topic similarity
    timings: pd.DataFrame                # one row per call: call, texts, chars, seconds
    dim: int
    memory_bytes: int | None
    memory_source: str
    model: ModelInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def model_of(embedder) -> ModelInfo | None:
    """The catalog entry behind an embedder (its ``model_info()``, ``model`` attribute or name), or None."""
    lookup = getattr(embedder, "model_info", None)
    if callable(lookup):
        info = lookup()
        if isinstance(info, ModelInfo):
            return info
    for candidate in (getattr(embedder, "model", None), getattr(embedder, "name", None)):
        if isinstance(candidate, ModelInfo):
            return candidate
        if isinstance(candidate, str) and candidate:
            try:
                return get_model(candidate)
            except LookupError:
                continue
    return None


def _memory(embedder, model: ModelInfo | None) -> tuple[int | None, str]:
    own = getattr(embedder, "memory_bytes", None)
    if isinstance(own, (int, np.integer)) and not isinstance(own, bool):
        return int(own), "embedder"
    if model is not None:
        return model.serving_bytes, "catalog (weights in fp16/bf16)"
    return None, "unknown"


def _check_protocol(embedder) -> None:
    missing = [m for m in ("embed_queries", "embed_documents") if not callable(getattr(embedder, m, None))]
    if missing:
        raise InvalidSpecError(f"{type(embedder).__name__} is not an embedder: it lacks {', '.join(missing)}. Pass "
                               "an EmbeddingClient, LocalEmbedder or LexicalEmbedder", field="embedder",
                               value=type(embedder).__name__)


def _name(embedder) -> str:
    name = getattr(embedder, "name", None)
    return str(name) if name else type(embedder).__name__


class _Timer:
    def __init__(self, embedder, name: str):
        self.embedder, self.name, self.rows = embedder, name, []

    def call(self, method: str, texts: list[str], call: str) -> np.ndarray:
        start = time.perf_counter()
        vectors = getattr(self.embedder, method)(texts)
        seconds = time.perf_counter() - start
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(texts):
            raise PlaybookError(f"{self.name}.{method} returned shape {array.shape} for {len(texts)} texts: an "
                                "embedder must return one row per text", obj=self.embedder)
        self.rows.append({"call": call, "texts": len(texts), "chars": sum(len(t) for t in texts),
                          "seconds": seconds})
        return array


def _slice_run(dataset: RetrievalDataset, run: dict, cross: bool) -> dict:
    langs = {d.id: d.lang for d in dataset.documents}
    qlang = {q.id: q.lang for q in dataset.queries}
    return {q: {d: s for d, s in scores.items() if (langs[d] != qlang[q]) == cross} for q, scores in run.items()}


def _slice_metrics(dataset: RetrievalDataset, run: dict, ks: Sequence[int]) -> pd.DataFrame:
    rows = {"all": evaluation.evaluate_run(dataset.qrels, run, ks)}
    for label, cross in (("same-language", False), ("cross-lingual", True)):
        qrels = dataset.restrict_qrels(cross_lingual=cross)
        counted = evaluation.judged_queries(qrels)
        rows[label] = evaluation.evaluate_run(qrels, _slice_run(dataset, run, cross), ks) if counted else \
            {k: float("nan") for k in rows["all"]}
        rows[label]["queries"] = len(counted)
    rows["all"]["queries"] = len(evaluation.judged_queries(dataset.qrels))
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("slice")


def evaluate_embedder(embedder: Embedder, dataset: RetrievalDataset | None = None, *, ks: Sequence[int] = DEFAULT_KS,
                      warmup: bool = True) -> EvaluationResult:
    """Embed the dataset's documents (one batch), queries (one call each, so the timings are per-request
    latencies) and heatmap sentences (one batch); retrieve, score and time it all. ``warmup`` first embeds the
    documents once untimed-in-summary (its row in ``timings`` says ``warmup``), so model loading or connection
    set-up is not counted; the whole batch is used so an embedder that fits on first use (the lexical baseline)
    fits on every document."""
    _check_protocol(embedder)
    dataset = dataset or load_bilingual()
    timer = _Timer(embedder, _name(embedder))
    if warmup:
        timer.call("embed_documents", [d.text for d in dataset.documents], "warmup")
    name = timer.name = _name(embedder)  # an HTTP client learns its served model name on the first call
    docs = timer.call("embed_documents", [d.text for d in dataset.documents], "documents")
    queries = np.vstack([timer.call("embed_queries", [q.text], "query") for q in dataset.queries])
    sentences = dataset.sentence_set()
    sent_vecs = timer.call("embed_documents", list(sentences.texts), "sentences") if len(sentences) else None
    if queries.shape[1] != docs.shape[1]:
        raise PlaybookError(f"{name} returned {queries.shape[1]}-dim queries but {docs.shape[1]}-dim documents",
                            obj=embedder)

    sim = similarity.cosine_matrix(queries, docs)
    run = similarity.run_from_matrix(sim, dataset.query_ids, dataset.doc_ids)
    slices = _slice_metrics(dataset, run, ks)
    per_query = evaluation.per_query_table(dataset.qrels, run, ks)
    per_query["lang"] = [dataset.query(q).lang for q in per_query.index]
    per_query["topic"] = [dataset.query(q).topic for q in per_query.index]
    per_query["kind"] = [dataset.query_kind(q) for q in per_query.index]
    dist = similarity.score_distributions(sim, dataset.qrels, dataset.query_ids, dataset.doc_ids,
                                          [q.lang for q in dataset.queries], [d.lang for d in dataset.documents])
    sent_sim = similarity.cosine_matrix(sent_vecs) if sent_vecs is not None else np.zeros((0, 0))
    model = model_of(embedder)
    memory, source = _memory(embedder, model)
    return EvaluationResult(
        name=name, metrics=evaluation.evaluate_run(dataset.qrels, run, ks), slices=slices, per_query=per_query,
        query_doc_sim=sim, sentence_sim=sent_sim, doc_vectors=docs, distributions=dist,
        separation=similarity.separation(dist),
        topic_separation=similarity.topic_separation(sent_sim, sentences.topics) if len(sentences) else {},
        timings=pd.DataFrame(timer.rows, columns=["call", "texts", "chars", "seconds"]), dim=int(docs.shape[1]),
        memory_bytes=memory, memory_source=source, model=model)


def summary_row(result: EvaluationResult, k: int = 10) -> dict[str, float]:
    """The headline numbers of one result, as used in the comparison table."""
    slices = result.slices
    k = k if f"ndcg@{k}" in slices.columns else max(int(c.split("@")[1]) for c in slices.columns if "@" in c)
    q = result.timings.loc[result.timings["call"] == "query", "seconds"]
    d = result.timings.loc[result.timings["call"] == "documents"]
    row = {f"ndcg@{k}": slices.loc["all", f"ndcg@{k}"], f"recall@{k}": slices.loc["all", f"recall@{k}"],
           "mrr": slices.loc["all", "mrr"],
           f"ndcg@{k} same-language": slices.loc["same-language", f"ndcg@{k}"],
           f"ndcg@{k} cross-lingual": slices.loc["cross-lingual", f"ndcg@{k}"],
           "mrr cross-lingual": slices.loc["cross-lingual", "mrr"],
           **{f"ndcg@{k} {lang} queries": value
              for lang, value in result.per_query.groupby("lang")[f"ndcg@{k}"].mean().items()},
           "relevant-irrelevant gap": result.separation["gap"], "AUC relevant>irrelevant": result.separation["auc"],
           "topic margin (sentences)": result.topic_separation.get("margin", float("nan")),
           "query latency p50 (ms)": float(q.median() * 1000) if len(q) else float("nan"),
           "documents per second": float(d["texts"].sum() / d["seconds"].sum()) if d["seconds"].sum() > 0
           else float("nan"),
           "dimension": float(result.dim),
           "memory (MB)": result.memory_bytes / 1e6 if result.memory_bytes is not None else float("nan")}
    return {key: float(value) for key, value in row.items()}


@dataclass
class Comparison:
    """Two evaluations on the same dataset: ``table`` has one row per metric and a column per embedder plus
    ``difference`` (second minus first)."""

    a: EvaluationResult
    b: EvaluationResult
    table: pd.DataFrame
    dataset: RetrievalDataset

    @property
    def names(self) -> tuple[str, str]:
        return self.a.name, self.b.name

    @property
    def sentence_labels(self) -> list[str]:
        return self.dataset.sentence_set().labels()

    @property
    def sentence_topics(self) -> list[str]:
        return list(self.dataset.sentence_set().topics)


def compare_results(a: EvaluationResult, b: EvaluationResult, dataset: RetrievalDataset, k: int = 10) -> Comparison:
    if a.name == b.name:
        b = dataclasses.replace(b, name=f"{b.name} (2)")
    table = pd.DataFrame({a.name: summary_row(a, k), b.name: summary_row(b, k)})
    table["difference"] = table[b.name] - table[a.name]
    return Comparison(a=a, b=b, table=table.rename_axis("metric"), dataset=dataset)


def compare_embedders(a, b, dataset: RetrievalDataset | None = None, *, ks: Sequence[int] = DEFAULT_KS,
                      k: int = 10) -> Comparison:
    """Evaluate ``a`` and ``b`` on the same dataset and line their numbers up side by side."""
    dataset = dataset or load_bilingual()
    return compare_results(evaluate_embedder(a, dataset, ks=ks), evaluate_embedder(b, dataset, ks=ks), dataset, k)
