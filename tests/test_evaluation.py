"""Retrieval metrics on hand-computed cases (the arithmetic is in the comments)."""

import math

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.evaluate import metrics as evaluation
from tke_playbook.evaluate.metrics import evaluate_run, mrr, ndcg_at_k, per_query_table, recall_at_k

# q1 ranking by score: d2 (0.9, grade 1), d3 (0.5, grade 0), d5 (0.3, not judged = 0), d1 (0.1, grade 2)
# q2 ranking by score: d6 (0.8, not judged), d4 (0.2, grade 1)
QRELS = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d4": 1}}
RUN = {"q1": {"d1": 0.1, "d2": 0.9, "d3": 0.5, "d5": 0.3}, "q2": {"d4": 0.2, "d6": 0.8}}
LOG2_3 = math.log2(3)  # 1.5849625


def test_ndcg_at_3_linear_gain():
    # q1: DCG@3 = 1/log2(2) + 0 + 0 = 1; IDCG@3 = 2/log2(2) + 1/log2(3) = 2.6309298 -> 0.3800937
    # q2: DCG@3 = 0 + 1/log2(3) = 0.6309298; IDCG@3 = 1/log2(2) = 1 -> 0.6309298
    # mean = (0.3800937 + 0.6309298) / 2 = 0.5055117
    assert ndcg_at_k(QRELS, RUN, 3) == pytest.approx(0.5055117, abs=1e-6)
    assert ndcg_at_k(QRELS, RUN, 3) == pytest.approx((1 / (2 + 1 / LOG2_3) + 1 / LOG2_3) / 2)


def test_ndcg_at_4_reaches_the_grade_2_document():
    # q1: DCG@4 = 1 + 2/log2(5) = 1 + 0.8613531 = 1.8613531; IDCG@4 = 2.6309298 -> 0.7074871
    # q2 unchanged: 0.6309298; mean = 0.6692085
    assert ndcg_at_k(QRELS, RUN, 4) == pytest.approx(0.6692085, abs=1e-6)


def test_ndcg_at_1():
    # q1: top d2 grade 1 / ideal top grade 2 = 0.5; q2: top d6 grade 0 -> 0; mean 0.25
    assert ndcg_at_k(QRELS, RUN, 1) == pytest.approx(0.25)


def test_ndcg_gain_is_linear_not_exponential():
    # ranking: a (grade 1), b (grade 2).
    # linear:      (1 + 2/log2 3) / (2 + 1/log2 3) = 2.2618595 / 2.6309298 = 0.8597186
    # exponential: (1 + 3/log2 3) / (3 + 1/log2 3) = 2.8927893 / 3.6309298 = 0.7967098 (not used)
    qrels, run = {"q": {"a": 1, "b": 2}}, {"q": {"a": 0.9, "b": 0.8}}
    assert ndcg_at_k(qrels, run, 2) == pytest.approx(0.8597186, abs=1e-6)


def test_recall_at_k():
    # relevant: q1 {d1, d2}, q2 {d4}
    # @1: q1 top {d2} -> 1/2; q2 top {d6} -> 0/1; mean 0.25
    # @2: q1 {d2, d3} -> 1/2; q2 {d6, d4} -> 1/1; mean 0.75
    # @4: q1 all four -> 2/2; q2 -> 1; mean 1.0
    assert recall_at_k(QRELS, RUN, 1) == pytest.approx(0.25)
    assert recall_at_k(QRELS, RUN, 2) == pytest.approx(0.75)
    assert recall_at_k(QRELS, RUN, 4) == pytest.approx(1.0)


def test_mrr():
    # q1: first relevant d2 at rank 1 -> 1; q2: d4 at rank 2 -> 1/2; mean 0.75
    assert mrr(QRELS, RUN) == pytest.approx(0.75)


def test_mrr_with_cutoff():
    # q2's relevant document is at rank 2, outside a cutoff of 1 -> 0; mean (1 + 0) / 2 = 0.5
    assert mrr(QRELS, RUN, k=1) == pytest.approx(0.5)


def test_ties_are_broken_by_document_id():
    # scores: c 0.9, then a and b tie at 0.5 -> ranking c, a, b whatever the dict order; b is rank 3 -> 1/3
    for run in ({"q": {"b": 0.5, "a": 0.5, "c": 0.9}}, {"q": {"a": 0.5, "c": 0.9, "b": 0.5}}):
        assert evaluation.ranked(run["q"]) == ["c", "a", "b"]
        assert mrr({"q": {"b": 1}}, run) == pytest.approx(1 / 3)


def test_queries_without_relevant_documents_are_skipped():
    # q3 has only a grade-0 judgement: not counted, so the mean is over q1 alone -> 1.0 (not 0.5)
    qrels = {"q1": {"d1": 1}, "q3": {"d9": 0}}
    assert mrr(qrels, {"q1": {"d1": 1.0}}) == 1.0
    assert evaluation.judged_queries(qrels) == ["q1"]


def test_counted_query_missing_from_the_run_scores_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": {"d1": 1.0}, "extra": {"d2": 1.0}}  # queries only in the run are ignored
    assert mrr(qrels, run) == pytest.approx(0.5)
    assert ndcg_at_k(qrels, run, 10) == pytest.approx(0.5)
    assert recall_at_k(qrels, run, 10) == pytest.approx(0.5)


def test_evaluate_collects_every_metric_in_order():
    result = evaluate_run(QRELS, RUN, ks=(1, 3))
    assert list(result) == ["ndcg@1", "ndcg@3", "recall@1", "recall@3", "mrr"]
    assert result["ndcg@3"] == ndcg_at_k(QRELS, RUN, 3)
    assert result["recall@1"] == recall_at_k(QRELS, RUN, 1)
    assert result["mrr"] == mrr(QRELS, RUN)


def test_per_query_table_means_equal_evaluate():
    table = per_query_table(QRELS, RUN, ks=(1, 3))
    assert list(table.index) == ["q1", "q2"]
    assert table.loc["q1", "top_doc"] == "d2" and table.loc["q2", "top_grade"] == 0
    assert table.loc["q2", "rr"] == pytest.approx(0.5)
    assert table.loc["q1", "n_relevant"] == 2
    summary = evaluate_run(QRELS, RUN, ks=(1, 3))
    for column in ("ndcg@1", "ndcg@3", "recall@1", "recall@3"):
        assert table[column].mean() == pytest.approx(summary[column])
    assert table["rr"].mean() == pytest.approx(summary["mrr"])


def test_perfect_run_scores_one():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}
    assert evaluate_run(qrels, run, ks=(1, 2, 3)) == {"ndcg@1": 1.0, "ndcg@2": 1.0, "ndcg@3": 1.0, "recall@1": 0.5,
                                                  "recall@2": 1.0, "recall@3": 1.0, "mrr": 1.0}


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "10"], ids=["zero", "negative", "float", "bool", "string"])
def test_bad_cutoff_is_refused(k):
    with pytest.raises(InvalidSpecError, match="k must be a positive integer"):
        ndcg_at_k(QRELS, RUN, k)


@pytest.mark.parametrize("qrels, run, message", [
    pytest.param({"q": {"a": -1}}, {"q": {"a": 1.0}}, "not a grade", id="negative-grade"),
    pytest.param({"q": {"a": "2"}}, {"q": {"a": 1.0}}, "not a grade", id="string-grade"),
    pytest.param({"q": ["a"]}, {"q": {"a": 1.0}}, "must be a dict", id="qrels-list"),
    pytest.param({"q": {"a": 1}}, {"q": {"a": float("nan")}}, "not a score", id="nan-score"),
    pytest.param({"q": {"a": 1}}, [("q", "a")], "run must be a dict", id="run-list"),
    pytest.param({"q": {"a": 0}}, {"q": {"a": 1.0}}, "no query with a relevant document", id="nothing-relevant"),
])
def test_bad_input_gets_a_clear_error(qrels, run, message):
    with pytest.raises(InvalidSpecError, match=message):
        evaluate_run(qrels, run)


def test_numpy_grades_and_scores_are_accepted():
    # runs built from a similarity matrix hold np.float32 scores; qrels loaded with pandas hold np.int64 grades
    np = pytest.importorskip("numpy")
    qrels = {"q1": {"d1": np.int64(2), "d2": np.int64(1), "d3": np.int64(0)}, "q2": {"d4": np.int64(1)}}
    run = {q: {d: np.float32(s) for d, s in scores.items()} for q, scores in RUN.items()}
    assert evaluate_run(qrels, run, ks=(1, 3)) == pytest.approx(evaluate_run(QRELS, RUN, ks=(1, 3)))
