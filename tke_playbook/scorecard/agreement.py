"""Label-free signals: how far systems agree on the same queries, and where they disagree most.

* **overlap@k**: the share of one system's top ``k`` that the other also has in its top ``k``, averaged over queries.
* **rank correlation**: Kendall's tau-b between the two rankings over the union of both top-``k`` lists, a document
  missing from one list taking rank ``k + 1`` there (tied), averaged over queries (1 = same order, 0 = unrelated).
* **disagreement** of one chunk for one query: ``|1/rank_a - 1/rank_b|`` (0 when missing), so a chunk one system puts
  first and the other leaves out of its top ``k`` scores highest - the first ones to look at.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..evaluate.metrics import ranked

Run = Mapping[str, Mapping[str, float]]


def _ranks(scores: Mapping[str, float], k: int) -> dict[str, int]:
    return {doc: rank for rank, doc in enumerate(ranked(scores)[:k], start=1)}


def overlap_at_k(a: Mapping[str, float], b: Mapping[str, float], k: int) -> float:
    top_a, top_b = set(ranked(a)[:k]), set(ranked(b)[:k])
    return len(top_a & top_b) / max(1, min(k, max(len(top_a), len(top_b))))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long rank lists (ties allowed); NaN when either is constant."""
    concordant = discordant = ties_x = ties_y = 0
    for (x1, y1), (x2, y2) in itertools.combinations(zip(x, y), 2):
        dx, dy = np.sign(x1 - x2), np.sign(y1 - y2)
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    denominator = np.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return float((concordant - discordant) / denominator) if denominator else float("nan")


def rank_correlation(a: Mapping[str, float], b: Mapping[str, float], k: int) -> float:
    ra, rb = _ranks(a, k), _ranks(b, k)
    union = sorted(set(ra) | set(rb))
    return kendall_tau_b([ra.get(d, k + 1) for d in union], [rb.get(d, k + 1) for d in union])


def agreement_table(runs: Mapping[str, Run], k: int = 10) -> pd.DataFrame:
    """One row per pair of systems: mean overlap@k and mean Kendall tau-b over the queries both answered."""
    rows = []
    for a, b in itertools.combinations(list(runs), 2):
        queries = sorted(set(runs[a]) & set(runs[b]))
        overlaps = [overlap_at_k(runs[a][q], runs[b][q], k) for q in queries]
        taus = [t for t in (rank_correlation(runs[a][q], runs[b][q], k) for q in queries) if not np.isnan(t)]
        rows.append({"system a": a, "system b": b, f"overlap@{k}": float(np.mean(overlaps)) if overlaps else np.nan,
                     "kendall tau": float(np.mean(taus)) if taus else np.nan, "queries": len(queries)})
    return pd.DataFrame(rows, columns=["system a", "system b", f"overlap@{k}", "kendall tau", "queries"])


def overlap_matrix(runs: Mapping[str, Run], k: int = 10) -> pd.DataFrame:
    """Systems × systems mean overlap@k (1 on the diagonal), for a heatmap."""
    names = list(runs)
    table = agreement_table(runs, k)
    matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for _, row in table.iterrows():
        matrix.loc[row["system a"], row["system b"]] = matrix.loc[row["system b"], row["system a"]] = \
            row[f"overlap@{k}"]
    return matrix


def most_disagreed(run_a: Run, run_b: Run, *, a: str = "A", b: str = "B", k: int = 10, n: int = 10,
                   query_text: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The ``n`` (query, chunk) pairs the two systems disagree on most: each system's rank (None: not in its top
    ``k``) and the disagreement score."""
    rows = []
    for qid in sorted(set(run_a) & set(run_b)):
        ra, rb = _ranks(run_a[qid], k), _ranks(run_b[qid], k)
        for doc in set(ra) | set(rb):
            score = (1 / ra[doc] if doc in ra else 0.0) - (1 / rb[doc] if doc in rb else 0.0)
            rows.append({"query_id": qid, "query": (query_text or {}).get(qid, ""), "chunk": doc,
                         f"{a} rank": ra.get(doc), f"{b} rank": rb.get(doc), "disagreement": abs(score)})
    columns = ["query_id", "query", "chunk", f"{a} rank", f"{b} rank", "disagreement"]
    frame = pd.DataFrame(rows, columns=columns).astype({f"{a} rank": "Int64", f"{b} rank": "Int64"})
    return frame.sort_values(["disagreement", "query_id", "chunk"], ascending=[False, True, True]).head(n) \
        .reset_index(drop=True)
