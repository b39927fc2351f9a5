"""How good an embedder is: the shipped bilingual retrieval set (``datasets``), retrieval metrics over TREC-style
dictionaries (``metrics``), similarity analytics on embedding matrices (``similarity``) and one-call evaluation
and comparison of embedders (``compare``). Names are imported on first use (pandas loads only when needed).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "datasets": "load_bilingual sentence_set RetrievalDataset SentenceSet",
    "metrics": "ndcg_at_k recall_at_k mrr evaluate_run per_query_table",
    "similarity": "cosine_matrix retrieve score_distributions pca_2d",
    "compare": "evaluate_embedder compare_embedders EvaluationResult Comparison",
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names.split()}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
