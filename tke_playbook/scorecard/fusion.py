"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, 2009): a document's fused score is the sum over the fused
runs of ``1 / (k + rank)``, rank 1-based; ``k = 60`` is the paper's constant. Ranks, not raw scores, are fused, so
cosine similarities and BM25 scores need no calibration against each other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InvalidSpecError
from ..evaluate.metrics import ranked

RRF_K = 60


def reciprocal_rank_fusion(runs: Sequence[Mapping[str, Mapping[str, float]]], *, k: int = RRF_K,
                           weights: Sequence[float] | None = None) -> dict[str, dict[str, float]]:
    """Fuse TREC-style runs (``run[qid][docid] = score``); a document missing from a run gets nothing from it.
    Within a run, ties are ranked by ascending document id (as :func:`tke_playbook.evaluate.metrics.ranked`)."""
    if not runs:
        raise InvalidSpecError("reciprocal rank fusion needs at least one run", field="runs", value=0)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise InvalidSpecError(f"k={k!r}: use a non-negative integer (60 is the usual constant)", field="k", value=k)
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs):
        raise InvalidSpecError(f"{len(weights)} weights for {len(runs)} runs", field="weights", value=len(weights))
    fused: dict[str, dict[str, float]] = {}
    for run, weight in zip(runs, weights):
        for qid, scores in run.items():
            row = fused.setdefault(str(qid), {})
            for rank, doc in enumerate(ranked(scores), start=1):
                row[doc] = row.get(doc, 0.0) + weight / (k + rank)
    return fused
