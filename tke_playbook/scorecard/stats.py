"""Statistics over per-query scores: bootstrap confidence intervals, a paired test between two systems, and the
queries where they disagree.

Queries are the unit of resampling (the usual practice in IR evaluation, Sakai 2014): a 95 % interval comes from
``n_boot`` resamples of the queries with replacement (percentile method). The paired test asks whether the mean
per-query difference between two systems could be chance: a randomisation (sign-flip permutation) test, or a
paired bootstrap of the differences centred on zero; both two-sided, with ``(hits + 1) / (n + 1)`` p-values.
"""

from __future__ import annotations

import enum
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InvalidSpecError
from ..evaluate.metrics import judged_queries, ndcg_of_ranking, ranked, recall_of_ranking, reciprocal_rank_of_ranking

DEFAULT_BOOT = 2000
MIN_RESAMPLES = 100
MAX_RESAMPLES = 1_000_000  # 8 MB of means; a p-value resolution of 1e-6
BATCH_ELEMENTS = 1 << 18  # draws per block (2 MiB of indices): memory independent of the resample count
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


def _check_resamples(count: int, what: str, batch: int | None) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < MIN_RESAMPLES:
        raise InvalidSpecError(f"{what}={count!r}: use at least {MIN_RESAMPLES} resamples (2000 is usual)", field=what,
                               value=count)
    if count > MAX_RESAMPLES:
        raise InvalidSpecError(f"{what}={count:,}: use at most {MAX_RESAMPLES:,} resamples (2,000 is usual for an "
                               "interval, 10,000 for a p-value; more only takes longer)", field=what, value=count)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise InvalidSpecError(f"batch={batch!r}: use a positive number of resamples per batch, or None for the "
                               "default", field="batch", value=batch)


def _check_options(confidence: float, seed) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
        raise InvalidSpecError(f"confidence={confidence!r}: use a level such as 0.95", field="confidence",
                               value=confidence)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InvalidSpecError(f"seed={seed!r}: use a whole number >= 0 (or None)", field="seed", value=seed)


def _batches(count: int, width: int, batch: int | None):
    """Sizes of the blocks of resamples drawn at once: at most ``BATCH_ELEMENTS`` draws (or ``batch`` rows), so
    memory does not grow with ``count``."""
    rows = batch or max(1, BATCH_ELEMENTS // max(width, 1))
    for start in range(0, count, rows):
        yield min(rows, count - start)


def _resampled_means(values: np.ndarray, count: int, rng, batch: int | None):
    """Blocks of bootstrap means: each row resamples ``values`` with replacement."""
    for rows in _batches(count, len(values), batch):
        yield values[rng.integers(0, len(values), size=(rows, len(values)))].mean(axis=1)


def bootstrap_ci(values, *, n_boot: int = DEFAULT_BOOT, confidence: float = 0.95, seed: int = 0,
                 batch: int | None = None) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` and its percentile-bootstrap interval over queries.
    Resamples are drawn ``batch`` at a time (default: blocks of ``BATCH_ELEMENTS`` draws): memory holds one block
    and one mean per resample (8 bytes), whatever ``n_boot`` is, up to ``MAX_RESAMPLES``."""
    array = _values(values)
    _check_resamples(n_boot, "n_boot", batch)
    _check_options(confidence, seed)
    rng = np.random.default_rng(seed)
    means = np.concatenate(list(_resampled_means(array, n_boot, rng, batch)))
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
                seed: int = 0, batch: int | None = None) -> PairedTest:
    """Two-sided paired test of ``mean(b - a)`` = 0 on per-query scores in the same query order. Resamples are
    drawn in blocks (see :func:`bootstrap_ci`): the p-value counts hits block by block."""
    x, y = _values(a_values, "a_values"), _values(b_values, "b_values")
    if len(x) != len(y):
        raise InvalidSpecError(f"{len(x)} scores for {a} but {len(y)} for {b}: pass the same queries in the same "
                               "order", field="b_values", value=len(y))
    try:
        method = PairedMethod(method)
    except ValueError:
        raise InvalidSpecError(f"method={method!r}: use one of {[m.value for m in PairedMethod]}", field="method",
                               value=method) from None
    _check_resamples(n_resamples, "n_resamples", batch)
    _check_options(0.95, seed)
    diff = y - x
    observed = diff.mean()
    rng = np.random.default_rng(seed)
    boot, hits = [], 0
    for rows in _batches(n_resamples, len(diff), batch):
        means = diff[rng.integers(0, len(diff), size=(rows, len(diff)))].mean(axis=1)
        if method is PairedMethod.PERMUTATION:
            null = (diff * rng.choice((-1.0, 1.0), size=(rows, len(diff)))).mean(axis=1)
        else:
            null = means - observed
        hits += int((np.abs(null) >= abs(observed) - 1e-12).sum())
        boot.append(means)
    low, high = np.percentile(np.concatenate(boot), [2.5, 97.5])
    return PairedTest(a=a, b=b, metric=metric, queries=len(diff), mean_a=float(x.mean()), mean_b=float(y.mean()),
                      difference=float(observed), low=float(low), high=float(high),
                      p_value=(hits + 1) / (n_resamples + 1), method=method, wins_b=int((diff > 0).sum()),
                      wins_a=int((diff < 0).sum()), ties=int((diff == 0).sum()))


def holm_adjust(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (Holm 1979), in the input order: the i-th smallest of m p-values times
    ``m - i + 1``, kept from decreasing and capped at 1. A test is significant at level ``alpha`` when its adjusted
    p-value is below ``alpha``; the chance of any false positive among the m tests stays below ``alpha``."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not np.isfinite(p).all() or ((p < 0) | (p > 1)).any():
        raise InvalidSpecError(f"p-values must be a list of numbers in [0, 1], got {p_values!r}", field="p_values",
                               value=p_values)
    order = np.argsort(p, kind="stable")
    steps = (len(p) - np.arange(len(p))) * p[order]
    out = np.empty_like(p)
    out[order] = np.minimum(1.0, np.maximum.accumulate(steps)) if len(p) else steps
    return out


def metric_label(metric: str) -> str:
    """``ndcg@10`` -> ``nDCG@10``, ``mrr@10`` -> ``MRR@10`` (as papers write them)."""
    name, _, k = str(metric).partition("@")
    shown = {"ndcg": "nDCG", "mrr": "MRR"}.get(name, name)
    return f"{shown}@{k}" if k else shown


@dataclass(frozen=True)
class PairwiseTests:
    """Every pair of systems, each test oriented so that ``b`` is the one with the higher mean (the leader),
    with Holm-adjusted p-values over all the pairs (``adjusted[i]`` belongs to ``tests[i]``). Systems are ranked
    by their mean; ``tests[0]`` is the best against the runner-up."""

    metric: str
    ranking: tuple[str, ...]
    tests: tuple[PairedTest, ...]
    adjusted: tuple[float, ...]
    alpha: float = 0.05

    def significant(self) -> list[PairedTest]:
        return [t for t, p in zip(self.tests, self.adjusted) if p < self.alpha]

    def table(self) -> pd.DataFrame:
        """One row per pair, leader first: the difference with its 95 % interval, raw and Holm-adjusted p."""
        label = metric_label(self.metric)
        rows = [{"leader": t.b, "vs": t.a, f"Δ {label} [95% CI]": f"{t.difference:+.3f} [{t.low:+.3f}, {t.high:+.3f}]",
                 "p": round(t.p_value, 4), "p (Holm)": round(p, 4), "significant": "yes" if p < self.alpha else "no",
                 "queries won / lost / tied": f"{t.wins_b} / {t.wins_a} / {t.ties}"}
                for t, p in zip(self.tests, self.adjusted)]
        columns = ["leader", "vs", f"Δ {label} [95% CI]", "p", "p (Holm)", "significant",
                   "queries won / lost / tied"]
        return pd.DataFrame(rows, columns=columns).set_index(["leader", "vs"])

    def verdict(self) -> str:
        """One sentence: the leader against the runner-up, and which differences survive the Holm correction."""
        label = metric_label(self.metric)
        if not self.tests:
            return f"Only one system was scored on {label}: there is nothing to compare."
        top, p_top = self.tests[0], self.adjusted[0]
        head = (f"{top.b} leads {top.a} by {top.difference:.3f} {label} "
                f"[95% CI {top.low:+.3f}, {top.high:+.3f}]")
        pairs = len(self.tests)
        where = f"at n = {top.queries} queries" + (f" after Holm correction over {pairs} pairs" if pairs > 1 else "")
        found = self.significant()
        if not found:
            if pairs == 1:
                return f"{head}; the difference is not significant {where} (p = {p_top:.2f})."
            return (f"{head}; no difference between the {len(self.ranking)} systems is significant {where} "
                    f"(smallest adjusted p = {min(self.adjusted):.2f}).")
        status = "significant" if p_top < self.alpha else "not significant"
        others = [f"{t.b} over {t.a}" for t in found if t is not top]
        also = f"; significant: {', '.join(others)}" if others else ""
        return f"{head}, {status} {where} (adjusted p = {p_top:.3g}){also}."

    def _repr_html_(self) -> str:
        return self.table()._repr_html_() + f"<p><b>{html.escape(self.verdict())}</b></p>"


def pairwise_tests(per_query: Mapping[str, Sequence[float]], metric: str = "ndcg@10", *, alpha: float = 0.05,
                   **options) -> PairwiseTests:
    """Paired tests (:func:`paired_test`, ``options`` passed on) between every pair of systems in ``per_query``
    (``{system: per-query scores in one query order}``), p-values adjusted with :func:`holm_adjust`."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 1:
        raise InvalidSpecError(f"alpha={alpha!r}: use a significance level such as 0.05", field="alpha", value=alpha)
    values = {str(name): _values(v, str(name)) for name, v in per_query.items()}
    ranking = sorted(values, key=lambda name: -values[name].mean())  # stable: equal means keep the given order
    tests = tuple(paired_test(values[other], values[leader], a=other, b=leader, metric=metric, **options)
                  for i, leader in enumerate(ranking) for other in ranking[i + 1:])
    adjusted = holm_adjust([t.p_value for t in tests]) if tests else np.array([])
    return PairwiseTests(metric, tuple(ranking), tests, tuple(float(p) for p in adjusted), float(alpha))


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
