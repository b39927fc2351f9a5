"""Retrieval metrics over TREC-style dictionaries: nDCG@k, recall@k and MRR, averaged over queries.

``qrels[qid][docid] = grade`` holds graded relevance judgements (0 = not relevant, higher = more relevant);
``run[qid][docid] = score`` holds what a system retrieved (higher score = ranked earlier).

Definitions (the same as trec_eval's ``ndcg_cut``, ``recall`` and ``recip_rank``):

- **Ranking.** A query's documents are sorted by score, highest first; equal scores are broken by document id
  (ascending string order), so results never depend on dictionary order. (trec_eval breaks ties by descending
  document id, so on tied scores the two can differ.)
- **nDCG@k** uses *linear* gain: a document of grade ``g`` at rank ``r`` (1-based) contributes
  ``g / log2(r + 1)``. The ideal DCG ranks the query's judged documents by grade, best first. Documents the
  run retrieved but the qrels do not mention count as grade 0.
- **recall@k** = relevant documents (grade > 0) in the top ``k`` / all relevant documents of the query.
- **MRR** = mean of ``1 / rank`` of the first relevant document (0 when none is retrieved).
- **Which queries count.** Every query in ``qrels`` with at least one relevant document. Queries without a
  relevant document are *skipped* (no metric is defined for them); a counted query the run does not answer
  scores 0. Queries only in the run are ignored.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence

from ..errors import InvalidSpecError

Qrels = Mapping[str, Mapping[str, float]]
Run = Mapping[str, Mapping[str, float]]


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Document ids by descending score; ties broken by ascending document id."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (-float(item[1]), str(item[0])))]


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidSpecError(f"k must be a positive integer, got {k!r}: use a cutoff such as 10", field="k",
                               value=k)
    return k


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and not math.isnan(float(value))


def _check_table(table, name: str, value_name: str, valid, hint: str) -> None:
    """``table`` must be ``{query_id: {doc_id: value}}`` with every value passing ``valid``."""
    if not isinstance(table, Mapping):
        raise InvalidSpecError(f"{name} must be a dict of dicts: {name}[query_id][doc_id] = {value_name}",
                               field=name, value=type(table).__name__)
    for qid, row in table.items():
        if not isinstance(row, Mapping):
            raise InvalidSpecError(f"{name}[{qid!r}] must be a dict of doc_id -> {value_name}", field=name, value=qid)
        for doc, value in row.items():
            if not valid(value):
                raise InvalidSpecError(f"{name}[{qid!r}][{doc!r}] = {value!r} is not a {value_name}: {hint}",
                                       field=name, value=value)


def _check_qrels(qrels: Qrels) -> None:
    _check_table(qrels, "qrels", "grade", lambda g: _is_number(g) and g >= 0, "use a number >= 0 (0 = not relevant)")


def _check_run(run: Run) -> None:
    _check_table(run, "run", "score", _is_number, "use a number (not NaN)")


def judged_queries(qrels: Qrels) -> list[str]:
    """The queries the metrics average over: those with at least one relevant (grade > 0) document, sorted."""
    return sorted(qid for qid, judged in qrels.items() if any(g > 0 for g in judged.values()))


def _dcg(grades: Iterable[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(grades, start=1))


def ndcg_of_ranking(judged: Mapping[str, float], ranking: Sequence[str], k: int) -> float:
    """nDCG@k of one query's ranking (document ids, best first; linear gain)."""
    ideal = _dcg(sorted((g for g in judged.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return _dcg(judged.get(doc, 0) for doc in ranking[:k]) / ideal


def recall_of_ranking(judged: Mapping[str, float], ranking: Sequence[str], k: int) -> float:
    """recall@k of one query's ranking: relevant in the top k / all relevant."""
    relevant = {doc for doc, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def reciprocal_rank_of_ranking(judged: Mapping[str, float], ranking: Sequence[str], k: int | None = None) -> float:
    """1 / rank of the first relevant document of a ranking (within the top ``k`` when given), else 0."""
    for rank, doc in enumerate(ranking if k is None else ranking[:k], start=1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def query_ndcg(judged: Mapping[str, float], scores: Mapping[str, float], k: int) -> float:
    """nDCG@k of one query (linear gain)."""
    return ndcg_of_ranking(judged, ranked(scores), k)


def query_recall(judged: Mapping[str, float], scores: Mapping[str, float], k: int) -> float:
    """recall@k of one query: relevant in the top k / all relevant."""
    return recall_of_ranking(judged, ranked(scores), k)


def query_reciprocal_rank(judged: Mapping[str, float], scores: Mapping[str, float], k: int | None = None) -> float:
    """1 / rank of the first relevant document (within the top ``k`` when given), else 0."""
    return reciprocal_rank_of_ranking(judged, ranked(scores), k)


def _mean_over_queries(qrels: Qrels, run: Run, metric, *args) -> float:
    _check_qrels(qrels)
    _check_run(run)
    queries = judged_queries(qrels)
    if not queries:
        raise InvalidSpecError("qrels has no query with a relevant document (grade > 0): there is nothing to "
                               "evaluate; check the qrels you passed", field="qrels", value=len(qrels))
    return sum(metric(qrels[q], run.get(q, {}), *args) for q in queries) / len(queries)


def ndcg_at_k(qrels: Qrels, run: Run, k: int) -> float:
    """Mean nDCG@k (linear gain ``g / log2(rank + 1)``) over queries with a relevant document."""
    return _mean_over_queries(qrels, run, query_ndcg, _check_k(k))


def recall_at_k(qrels: Qrels, run: Run, k: int) -> float:
    """Mean recall@k over queries with a relevant document."""
    return _mean_over_queries(qrels, run, query_recall, _check_k(k))


def mrr(qrels: Qrels, run: Run, k: int | None = None) -> float:
    """Mean reciprocal rank of the first relevant document (optionally only within the top ``k``)."""
    return _mean_over_queries(qrels, run, query_reciprocal_rank, None if k is None else _check_k(k))


def evaluate_run(qrels: Qrels, run: Run, ks: Iterable[int] = (1, 5, 10)) -> dict[str, float]:
    """All metrics at once: ``{"ndcg@1": …, "recall@1": …, …, "mrr": …}`` (keys in ``ks`` order)."""
    ks = [_check_k(k) for k in ks]
    result: dict[str, float] = {}
    for k in ks:
        result[f"ndcg@{k}"] = ndcg_at_k(qrels, run, k)
    for k in ks:
        result[f"recall@{k}"] = recall_at_k(qrels, run, k)
    result["mrr"] = mrr(qrels, run)
    return result


def per_query_table(qrels: Qrels, run: Run, ks: Iterable[int] = (1, 5, 10)):
    """One row per counted query (index ``query_id``): nDCG@k and recall@k for each k, reciprocal rank,
    the number of relevant documents and the top-ranked document. Its column means equal :func:`evaluate`."""
    import pandas as pd  # late: pandas loads only when a table is asked for (see evaluate/__init__)

    _check_qrels(qrels)
    _check_run(run)
    ks = [_check_k(k) for k in ks]
    rows = []
    for qid in judged_queries(qrels):
        judged, scores = qrels[qid], run.get(qid, {})
        top = ranked(scores)
        row: dict = {"query_id": qid}
        row.update({f"ndcg@{k}": query_ndcg(judged, scores, k) for k in ks})
        row.update({f"recall@{k}": query_recall(judged, scores, k) for k in ks})
        row["rr"] = query_reciprocal_rank(judged, scores)
        row["n_relevant"] = sum(1 for g in judged.values() if g > 0)
        row["top_doc"] = top[0] if top else None
        row["top_grade"] = judged.get(top[0], 0) if top else 0
        rows.append(row)
    columns = ["query_id"] + [f"ndcg@{k}" for k in ks] + [f"recall@{k}" for k in ks] + \
        ["rr", "n_relevant", "top_doc", "top_grade"]
    return pd.DataFrame(rows, columns=columns).set_index("query_id")
