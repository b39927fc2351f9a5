"""Two-stage retrieval pipelines: a first stage (BM25, a dense embedder or a dense + BM25 hybrid) keeps each query's
top ``depth`` documents, and a reranker orders them - any object with ``rerank(query, documents)``, such as an
:class:`~tke_playbook.embed.http.EmbeddingClient` on vLLM's ``/rerank`` (a cross-encoder like bge-reranker-v2-m3,
or an embedding model, which vLLM scores as a bi-encoder: the cosine of the two pooled vectors).

A pipeline is one more system of the scorecard (:func:`~tke_playbook.scorecard.run.run_scorecard` on an mteb task,
:func:`~tke_playbook.scorecard.corpusrun.run_corpus` on your documents): its ranking is the reranked top ``depth``
followed by the rest of the first stage's ranking in its own order (so recall at cutoffs beyond ``depth`` is the
first stage's). Scores in the recorded run are rank scores (``n - position``): rerankers' scales differ, ranks do
not. :func:`pipeline_table` compares each pipeline with its own first stage, query by query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..embed.api import Reranked, check_texts
from ..errors import InvalidSpecError
from ..evaluate.metrics import ranked
from ..reporting import progress_bar
from . import stats
from .bm25 import BM25Retriever
from .cache import EmbeddingCache, default_cache_dir, revision_of, text_key
from .search import doc_text, model_meta

DEFAULT_DEPTH = 20  # documents each query's reranker sees (nDCG@10 needs at least 10)
TWO_STAGE = "two-stage"


def stage_label(item) -> str:
    """A short name for a first stage or reranker: its label or name, the model's part after the last '/'."""
    if isinstance(item, str):
        return item
    label = getattr(item, "label", None) or getattr(item, "name", None) or type(item).__name__
    return str(label).rsplit("/", 1)[-1].replace(" ", "-")


@dataclass(frozen=True)
class TwoStage:
    """``first`` (a BM25Retriever, ``"bm25"``, a dense embedder or a Hybrid) keeps its top ``depth`` per query;
    ``reranker`` (anything with ``rerank(query, documents)``: an endpoint's client on ``/rerank``) orders them."""

    first: Any
    reranker: Any
    depth: int = DEFAULT_DEPTH
    name: str | None = None

    def __post_init__(self) -> None:
        if not callable(getattr(self.reranker, "rerank", None)):
            raise InvalidSpecError(f"TwoStage(reranker=...) needs a reranker (an EmbeddingClient on a vLLM "
                                   f"endpoint, which answers /rerank), not {type(self.reranker).__name__}",
                                   field="reranker", value=type(self.reranker).__name__)
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise InvalidSpecError(f"depth={self.depth!r}: use how many first-stage documents each query's "
                                   f"reranker sees, a whole number >= 1 ({DEFAULT_DEPTH} is usual; nDCG@10 needs "
                                   "at least 10)", field="depth", value=self.depth)

    @property
    def label(self) -> str:
        return self.name or f"{stage_label(self.first)}→{stage_label(self.reranker)}"

    def describe(self) -> dict:
        return {"first": stage_label(self.first), "reranker": stage_label(self.reranker), "depth": self.depth}


class CachedReranker:
    """A reranker behind an on-disk cache of pair scores (one per reranker, revision and data set; see
    :mod:`~tke_playbook.scorecard.cache`): a pair's score depends on the query and that document alone, for a
    cross-encoder as for vLLM's bi-encoder scoring, so only pairs never scored before are sent - two pipelines
    whose first stages overlap, or a rerun, cost only what is new."""

    def __init__(self, reranker, dataset: str, *, cache_dir=None):
        self.inner = reranker
        self.name = str(getattr(reranker, "name", None) or type(reranker).__name__)
        self.cache = EmbeddingCache(cache_dir or default_cache_dir(), self.name, revision_of(reranker),
                                    f"{dataset}-rerank")

    def rerank(self, query: str, documents, *, top_n: int | None = None) -> Reranked:
        docs = check_texts(documents, "documents")
        keys = [text_key("rerank", d, query) for d in docs]
        missing = list(dict.fromkeys(k for k in keys if self.cache.get(k) is None))
        if missing:
            by_key = dict(zip(keys, docs))
            answer = self.inner.rerank(query, [by_key[k] for k in missing])
            scored = dict(zip(answer.order, answer.scores))
            if len(scored) != len(missing):
                raise InvalidSpecError(f"{self.name} ranked {len(scored)} of {len(missing)} documents: a pipeline's "
                                       "reranker must score every document it is sent (no top_n)",
                                       field="reranker", value=self.name)
            self.cache.put(missing, np.array([[scored[i]] for i in range(len(missing))], dtype=np.float32))
        scores = [float(self.cache.get(k)[0]) for k in keys]
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))[:top_n or None]
        return Reranked(query, tuple(docs), order, [scores[i] for i in order])


def rerank_run(run: Mapping[str, Mapping[str, float]], texts: Mapping[str, str], queries: Mapping[str, str],
               reranker, depth: int, *, progress: bool = False, desc: str = "reranking") -> dict[str, dict]:
    """``run`` (TREC-style, ``run[qid][doc] = score``) with each query's top ``depth`` documents ordered by
    ``reranker.rerank(query, texts)``; the rest follow in the first stage's order. Rank scores (``n - position``)."""
    out = {}
    with progress_bar(progress, len(run), desc, "query") as bar:
        for qid in list(run):
            order = ranked(run[qid])
            head, tail = order[:depth], order[depth:]
            if head:
                answer = reranker.rerank(queries[qid], [texts[d] for d in head])
                head = [head[i] for i in answer.order] + [d for i, d in enumerate(head) if i not in set(answer.order)]
            final = head + tail
            out[str(qid)] = {doc: float(len(final) - i) for i, doc in enumerate(final)}
            bar.update(1)
    return out


class RerankSearch:
    """A first stage's mteb search model followed by a reranker, as an mteb search model."""

    def __init__(self, name: str, first, reranker, depth: int, *, progress: bool = True):
        self.name, self.first, self.reranker, self.depth, self.progress = name, first, reranker, depth, progress
        self.mteb_model_meta = model_meta(name, f"depth={depth}", kind=TWO_STAGE)
        self.texts: dict[str, str] = {}

    def index(self, corpus, **kwargs: Any) -> None:
        self.texts = {str(row["id"]): doc_text(row) for row in corpus}
        self.first.index(corpus, **kwargs)

    def search(self, queries, *, top_k: int, **kwargs: Any) -> dict:
        run = self.first.search(queries, **{**kwargs, "top_k": max(top_k, self.depth)})
        texts = {str(q): t for q, t in zip(queries["id"], queries["text"])}
        reranked = rerank_run(run, self.texts, texts, self.reranker, self.depth, progress=self.progress,
                              desc=f"{self.name}: reranking")
        return {q: dict(list(row.items())[:top_k]) for q, row in reranked.items()}


def two_stage_systems(systems: Sequence, reranker=None, *, depth: int = DEFAULT_DEPTH) -> list[TwoStage]:
    """A pipeline for every lexical or hybrid first stage in ``systems`` (``"bm25"``, a BM25Retriever, a Hybrid),
    each reranked by ``reranker`` - default: the first endpoint in ``systems`` (vLLM's ``/rerank`` on an embedding
    model scores as a bi-encoder; a dense model reranking its own top k would change nothing, so dense first
    stages get no pipeline here)."""
    reranker = reranker if reranker is not None else next(
        (s for s in systems if callable(getattr(s, "rerank", None))), None)
    if reranker is None:
        raise InvalidSpecError("no endpoint among the systems to rerank with: pass reranker= a client of a deployed "
                               "model (a reranker such as BAAI/bge-reranker-v2-m3, or an embedding model)",
                               field="reranker", value=None)
    firsts = [s for s in systems if isinstance(s, BM25Retriever) or (isinstance(s, str) and s.lower() == "bm25")
              or _is_hybrid(s)]
    return [TwoStage(first, reranker, depth) for first in firsts]


def reranker_for(serving, model: str = ""):
    """The client of a reranker deployed on a target (``serving``: ``pb.serving``, anything with
    ``endpoint(model)``; ``model``: its name, deployed with 03), or None when ``model`` is empty - then
    :func:`two_stage_systems` reranks with the scorecard's first endpoint. The local target serves one model: asking
    it for another says so."""
    if not model or not model.strip():
        return None
    return serving.endpoint(model.strip()).client()


def _is_hybrid(item) -> bool:
    """A dense + BM25 hybrid (registry's Hybrid, which imports this module: known by its fields)."""
    return hasattr(item, "dense") and hasattr(item, "rrf_k")


def pipeline_table(result, metric: str = "ndcg@10", *, alpha: float = 0.05) -> pd.DataFrame:
    """Each two-stage system of a scorecard against its own first stage, over the same queries: both scores, the
    gain with its 95 % interval, and the paired test's p-value Holm-corrected over the pipelines."""
    stages = getattr(result, "stages", {}) or {}
    rows, tests = [], []
    for name, stage in stages.items():
        first = stage["first_system"]
        row = {"pipeline": name, "first stage": first, "reranker": stage["reranker"], "depth": stage["depth"],
               f"{metric} first stage": np.nan, f"{metric} pipeline": float(result.table.loc[name, metric])}
        if first in result.per_query:
            test = result.paired(first, name, metric)
            tests.append(test)
            row.update({f"{metric} first stage": test.mean_a, "gain": test.difference,
                        "gain 95% CI": f"{test.low:+.3f}..{test.high:+.3f}", "p": test.p_value})
        else:
            row["gain 95% CI"] = "first stage not scored on its own"
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).set_index("pipeline")
    if tests:
        scored = frame["p"].notna() if "p" in frame else pd.Series(False, index=frame.index)
        frame.loc[scored, "p (Holm)"] = stats.holm_adjust(frame.loc[scored, "p"].to_numpy())
        frame["significant"] = np.where(frame["p (Holm)"] < alpha, "yes", "no")
    return frame
