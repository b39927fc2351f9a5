"""Our systems as mteb models: dense embedders as mteb encoders (our catalog query/document prompts, vectors
through the on-disk cache) inside mteb's own ``SearchEncoderWrapper``; BM25 and hybrids as search models of their
own. :class:`RecordingSearch` keeps each run, so our statistics use exactly what mteb scored; mteb is handed each
ranking as rank scores, ties already broken by ascending document id (pytrec_eval would break them the other way),
so mteb's numbers and :mod:`tke_playbook.evaluate.metrics`'s agree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mteb.models import SearchEncoderWrapper
from mteb.models.model_meta import ModelMeta
from mteb.types import PromptType

from ..embed.base import Embedder
from ..evaluate.compare import model_of
from ..evaluate.metrics import ranked
from ..evaluate.similarity import cosine_matrix, normalize_rows, run_from_matrix
from .fusion import reciprocal_rank_fusion


def model_meta(name: str, revision: str | None = None, *, info=None, kind: str = "dense") -> ModelMeta:
    """mteb metadata for one of our systems (catalog facts when the model is in the catalog)."""
    full = name if "/" in name else f"tke-playbook/{name.replace(' ', '-')}"
    return ModelMeta(
        loader=None, name=full, revision=revision or "unversioned", release_date=None, languages=None,
        n_parameters=getattr(info, "params", None), memory_usage_mb=None,
        max_tokens=getattr(info, "max_tokens", None), embed_dim=getattr(info, "dim", None), license=None,
        open_weights=None, public_training_code=None, public_training_data=None, framework=[],
        similarity_fn_name="cosine" if kind == "dense" else None, use_instructions=None, training_datasets=None,
        model_type=["dense"])


class MtebEncoder:
    """An embedder as an mteb encoder: queries through ``embed_queries`` (the catalog's query prompt, ``task``
    filling instruction prompts), documents through ``embed_documents``; cosine similarity."""

    def __init__(self, embedder: Embedder, *, task: str | None = None, revision: str | None = None):
        self.embedder, self.task = embedder, task
        self.mteb_model_meta = model_meta(str(getattr(embedder, "name", "embedder")),
                                          revision or getattr(embedder, "revision", None), info=model_of(embedder))

    def encode(self, inputs, *, task_metadata=None, hf_split: str = "", hf_subset: str = "",
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        texts = [t for batch in inputs for t in batch["text"]]
        if prompt_type == PromptType.query:
            vectors = self.embedder.embed_queries(texts, self.task) if self.task else self.embedder.embed_queries(texts)
        else:
            vectors = self.embedder.embed_documents(texts)
        return np.asarray(vectors, dtype=np.float32)

    def similarity(self, embeddings1, embeddings2):
        import torch  # late: loaded only when mteb asks for torch tensors

        return torch.from_numpy(cosine_matrix(np.asarray(embeddings1), np.asarray(embeddings2)).astype(np.float32))

    def similarity_pairwise(self, embeddings1, embeddings2):
        import torch  # late: loaded only when mteb asks for torch tensors

        a, b = normalize_rows(np.asarray(embeddings1)), normalize_rows(np.asarray(embeddings2))
        return torch.from_numpy((a * b).sum(axis=1).astype(np.float32))


def _top(scores: np.ndarray, doc_ids: Sequence[str], query_ids: Sequence[str], top_k: int) -> dict:
    return run_from_matrix(scores, query_ids, doc_ids, min(top_k, len(doc_ids)))


class BM25Search:
    """A :class:`~tke_playbook.scorecard.bm25.BM25Retriever` as an mteb search model."""

    def __init__(self, retriever):
        self.retriever = retriever
        self.name = retriever.name
        self.mteb_model_meta = model_meta(retriever.name, f"k1={retriever.k1},b={retriever.b}", kind="lexical")

    def index(self, corpus, **kwargs: Any) -> None:
        self.retriever.index(list(corpus["id"]), [doc_text(row) for row in corpus])

    def search(self, queries, *, top_k: int, **kwargs: Any) -> dict:
        scores = self.retriever.scores(list(queries["text"]))
        return _top(scores, self.retriever.doc_ids, list(queries["id"]), top_k)


def doc_text(row: Mapping) -> str:
    """A corpus row's text as the systems index it: the title (when there is one), then the text."""
    title = (row.get("title") or "").strip()
    return f"{title} {row['text']}".strip() if title else row["text"]


class HybridSearch:
    """Dense + BM25 fused by reciprocal rank fusion over full rankings of the corpus."""

    def __init__(self, name: str, parts: Sequence, *, rrf_k: int = 60):
        self.name, self.parts, self.rrf_k = name, list(parts), rrf_k
        self.mteb_model_meta = model_meta(name, "rrf", kind="hybrid")
        self._size = 0

    def index(self, corpus, **kwargs: Any) -> None:
        self._size = len(corpus)
        for part in self.parts:
            part.index(corpus, **kwargs)

    def search(self, queries, *, top_k: int, **kwargs: Any) -> dict:
        runs = [part.search(queries, **{**kwargs, "top_k": self._size}) for part in self.parts]
        fused = reciprocal_rank_fusion(runs, k=self.rrf_k)
        return {q: dict(sorted(row.items(), key=lambda i: (-i[1], i[0]))[:top_k]) for q, row in fused.items()}


def rank_scores(run: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """The same rankings with each score replaced by ``n - rank`` (distinct, so no tie is left to break), in the
    order of :func:`tke_playbook.evaluate.metrics.ranked` (ties by ascending document id)."""
    out = {}
    for qid, scores in run.items():
        order = ranked(scores)
        out[str(qid)] = {doc: float(len(order) - i) for i, doc in enumerate(order)}
    return out


class RecordingSearch:
    """Wraps a search model and keeps each ``(subset, split)`` run it returns; mteb is handed the same rankings
    as rank scores (:func:`rank_scores`), so pytrec_eval cannot order tied documents differently."""

    def __init__(self, name: str, inner):
        self.name, self.inner = name, inner
        self.mteb_model_meta = inner.mteb_model_meta
        self.runs: dict[tuple[str, str], dict] = {}

    def index(self, corpus, **kwargs: Any) -> None:
        self.inner.index(corpus, **kwargs)

    def search(self, queries, *, hf_subset: str = "default", hf_split: str = "test", **kwargs: Any) -> dict:
        run = self.inner.search(queries, hf_subset=hf_subset, hf_split=hf_split, **kwargs)
        self.runs[(hf_subset, hf_split)] = {str(q): {str(d): float(v) for d, v in row.items()} for q, row in run.items()}
        return rank_scores(run)


def dense_search(embedder: Embedder, *, task: str | None = None):
    return SearchEncoderWrapper(MtebEncoder(embedder, task=task))
