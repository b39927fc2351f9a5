"""Statistics over per-query scores: bootstrap confidence intervals, a paired test between two systems, and the
queries where they disagree.

Queries are the unit of resampling (the usual practice in IR evaluation, Sakai 2014): a 95 % interval comes from
``n_boot`` resamples of the queries with replacement (percentile method). The paired test asks whether the mean
per-query difference between two systems could be chance: a randomisation (sign-flip permutation) test, or a
paired bootstrap of the differences centred on zero; both two-sided, with ``(hits + 1) / (n + 1)`` p-values.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InvalidSpecError
from ..evaluate.metrics import judged_queries, ndcg_of_ranking, ranked, recall_of_ranking, reciprocal_rank_of_ranking

DEFAULT_BOOT = 2000
DEFAULT_KS = (1, 3, 5, 10)


class PairedMethod(str, enum.Enum):
    PERMUTATION = "permutation"
    BOOTSTRAP = "bootstrap"


def per_query_scores(qrels, run, ks: Sequence[int] = DEFAULT_KS) -> pd.DataFrame:
    """One row per counted query: ``ndcg@k``, ``recall@k``, ``mrr@k`` for each k and ``mrr`` (no cutoff)."""
    rows = []
    for qid in judged_queries(qrels):
        judged, ranking = qrels[qid], ranked(run.get(qid, {}))  # one sort per query, shared by every metric
        row = {"query_id": qid}
        row.update({f"ndcg@{k}": ndcg_of_ranking(judged, ranking, k) for k in ks})
        row.update({f"recall@{k}": recall_of_ranking(judged, ranking, k) for k in ks})
        row.update({f"mrr@{k}": reciprocal_rank_of_ranking(judged, ranking, k) for k in ks})
        row["mrr"] = reciprocal_rank_of_ranking(judged, ranking)
        rows.append(row)
    return pd.DataFrame(rows).set_index("query_id")


def _values(values, what: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or len(array) < 2 or not np.isfinite(array).all():
        raise InvalidSpecError(f"{what} must be at least two finite per-query scores, got shape {array.shape}",
                               field=what, value=array.shape)
    return array


def _check_boot(n_boot: int, confidence: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise InvalidSpecError(f"n_boot={n_boot!r}: use at least 100 resamples (2000 is usual)", field="n_boot",
                               value=n_boot)
    if not 0.5 <= confidence < 1:
        raise InvalidSpecError(f"confidence={confidence!r}: use a level such as 0.95", field="confidence",
                               value=confidence)


def bootstrap_ci(values, *, n_boot: int = DEFAULT_BOOT, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its percentile-bootstrap interval over queries."""
    array = _values(values)
    _check_boot(n_boot, confidence)
    rng = np.random.default_rng(seed)
    means = array[rng.integers(0, len(array), size=(n_boot, len(array)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(array.mean()), float(low), float(high)


def intervals(per_query: pd.DataFrame, metrics: Sequence[str] | None = None, **options) -> pd.DataFrame:
    """Mean and bootstrap interval of every metric column: index metric, columns ``mean``, ``low``, ``high``."""
    metrics = list(metrics or [c for c in per_query.columns if pd.api.types.is_numeric_dtype(per_query[c])])
    rows = {m: dict(zip(("mean", "low", "high"), bootstrap_ci(per_query[m].to_numpy(), **options)))
            for m in metrics}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")


@dataclass(frozen=True)
class PairedTest:
    """``b`` minus ``a`` on ``metric`` over the same ``queries``: mean difference, its interval and p-value."""

    a: str
    b: str
    metric: str
    queries: int
    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    p_value: float
    method: PairedMethod
    wins_b: int
    wins_a: int
    ties: int

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05

    def sentence(self) -> str:
        verdict = "a significant" if self.significant else "no significant"
        return (f"{self.b} − {self.a} on {self.metric}: {self.difference:+.3f} (95% CI {self.low:+.3f}..{self.high:+.3f}), "
                f"p = {self.p_value:.3g} ({self.method.value}, {self.queries} queries): {verdict} difference; "
                f"{self.b} better on {self.wins_b}, {self.a} on {self.wins_a}, tied on {self.ties}")


def paired_test(a_values, b_values, *, a: str = "A", b: str = "B", metric: str = "ndcg@10",
                method: PairedMethod | str = PairedMethod.PERMUTATION, n_resamples: int = 10_000,
                seed: int = 0) -> PairedTest:
    """Two-sided paired test of ``mean(b - a)`` = 0 on per-query scores in the same query order."""
    x, y = _values(a_values, "a_values"), _values(b_values, "b_values")
    if len(x) != len(y):
        raise InvalidSpecError(f"{len(x)} scores for {a} but {len(y)} for {b}: pass the same queries in the same "
                               "order", field="b_values", value=len(y))
    method = PairedMethod(method)
    _check_boot(n_resamples, 0.95)
    diff = y - x
    observed = diff.mean()
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    if method is PairedMethod.PERMUTATION:
        null = (diff * rng.choice((-1.0, 1.0), size=(n_resamples, len(diff)))).mean(axis=1)
    else:
        null = boot - observed
    hits = int((np.abs(null) >= abs(observed) - 1e-12).sum())
    low, high = np.percentile(boot, [2.5, 97.5])
    return PairedTest(a=a, b=b, metric=metric, queries=len(diff), mean_a=float(x.mean()), mean_b=float(y.mean()),
                      difference=float(observed), low=float(low), high=float(high),
                      p_value=(hits + 1) / (n_resamples + 1), method=method, wins_b=int((diff > 0).sum()),
                      wins_a=int((diff < 0).sum()), ties=int((diff == 0).sum()))


def first_relevant_rank(judged: Mapping[str, float], scores: Mapping[str, float]) -> int | None:
    for rank, doc in enumerate(ranked(scores), start=1):
        if judged.get(doc, 0) > 0:
            return rank
    return None


def disagreements(qrels, run_a, run_b, *, a: str = "A", b: str = "B", k: int = 3,
                  query_text: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Queries where one system ranks a relevant document in its top ``k`` and the other does not: the query,
    who gets it, each system's rank of its first relevant document and its top document."""
    rows = []
    for qid in judged_queries(qrels):
        ra, rb = first_relevant_rank(qrels[qid], run_a.get(qid, {})), first_relevant_rank(qrels[qid], run_b.get(qid, {}))
        hit_a, hit_b = ra is not None and ra <= k, rb is not None and rb <= k
        if hit_a == hit_b:
            continue
        top_a, top_b = ranked(run_a.get(qid, {}))[:1], ranked(run_b.get(qid, {}))[:1]
        rows.append({"query_id": qid, "query": (query_text or {}).get(qid, ""), "found by": a if hit_a else b,
                     f"{a} rank": ra, f"{b} rank": rb, f"{a} top": top_a[0] if top_a else None,
                     f"{b} top": top_b[0] if top_b else None})
    columns = ["query_id", "query", "found by", f"{a} rank", f"{b} rank", f"{a} top", f"{b} top"]
    return pd.DataFrame(rows, columns=columns).set_index("query_id")
