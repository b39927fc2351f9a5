"""Bootstrap intervals, the paired test and the disagreement table on small hand-made cases."""

import numpy as np
import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.scorecard import (PairedMethod, bootstrap_ci, disagreements, holm_adjust, intervals, paired_test,
                                    pairwise_tests, per_query_scores)


def test_constant_scores_have_a_zero_width_interval():
    assert bootstrap_ci([0.5] * 20) == (0.5, 0.5, 0.5)


def test_interval_brackets_the_mean_and_matches_the_normal_approximation():
    # 400 scores of 0/1 with mean 0.3: the standard error is sqrt(0.3 * 0.7 / 400) = 0.0229, so a 95 % interval
    # is about 0.3 +- 1.96 * 0.0229 = [0.255, 0.345]
    values = np.array([1.0] * 120 + [0.0] * 280)
    mean, low, high = bootstrap_ci(values, n_boot=4000, seed=1)
    assert mean == pytest.approx(0.3)
    assert low == pytest.approx(0.255, abs=0.01) and high == pytest.approx(0.345, abs=0.01)


def test_interval_is_reproducible_with_a_seed():
    values = np.linspace(0, 1, 30)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)


def test_intervals_table_has_one_row_per_metric():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    run = {"q1": {"a": 1.0, "b": 0.5}, "q2": {"a": 1.0, "b": 0.5}, "q3": {"c": 0.2, "a": 0.9}}
    per_query = per_query_scores(qrels, run, ks=(1, 10))
    # q1 rank 1, q2 rank 2, q3 rank 2: reciprocal ranks 1, 1/2, 1/2
    assert per_query["mrr"].tolist() == [1.0, 0.5, 0.5]
    assert per_query["mrr@1"].tolist() == [1.0, 0.0, 0.0]
    table = intervals(per_query, ["mrr", "ndcg@10"], n_boot=500)
    assert list(table.index) == ["mrr", "ndcg@10"]
    assert table.loc["mrr", "mean"] == pytest.approx(2 / 3)
    assert (table["low"] <= table["mean"]).all() and (table["mean"] <= table["high"]).all()


def test_identical_systems_are_not_significantly_different():
    a = np.linspace(0, 1, 25)
    for method in PairedMethod:
        test = paired_test(a, a.copy(), method=method)
        assert test.difference == 0 and test.p_value == pytest.approx(1.0) and not test.significant
        assert test.ties == 25


def test_a_consistent_gain_is_significant():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.6, 30)
    test = paired_test(a, a + 0.2, a="base", b="better", method="permutation")
    # every one of the 30 sign flips must land on +0.2: chance 2 * 0.5^30, so only the (hits + 1) floor is left
    assert test.p_value == pytest.approx(1 / 10_001)
    assert test.significant and test.wins_b == 30 and test.difference == pytest.approx(0.2)
    assert "better − base" in test.sentence() and "a significant difference" in test.sentence()


def test_paired_test_needs_the_same_queries():
    with pytest.raises(InvalidSpecError, match="same queries"):
        paired_test([0.1, 0.2, 0.3], [0.1, 0.2])


@pytest.mark.parametrize("values, message", [
    pytest.param([0.5], "at least two", id="one-query"),
    pytest.param([0.5, float("nan")], "at least two finite", id="nan"),
])
def test_bad_scores_are_refused(values, message):
    with pytest.raises(InvalidSpecError, match=message):
        bootstrap_ci(values)


def test_disagreements_list_queries_found_in_the_top_k_by_one_only():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 2}, "q3": {"d3": 1}}
    run_a = {"q1": {"d1": 0.9, "x": 0.1}, "q2": {"x": 0.9, "y": 0.8, "z": 0.7, "d2": 0.1}, "q3": {"d3": 1.0}}
    run_b = {"q1": {"x": 0.9, "y": 0.8, "z": 0.7, "d1": 0.6}, "q2": {"d2": 0.9}, "q3": {"d3": 1.0}}
    table = disagreements(qrels, run_a, run_b, a="A", b="B", k=3, query_text={"q1": "first"})
    # q1: A rank 1, B rank 4 -> A; q2: A rank 4, B rank 1 -> B; q3: both rank 1 -> not listed
    assert list(table.index) == ["q1", "q2"]
    assert table.loc["q1", "found by"] == "A" and table.loc["q1", "B rank"] == 4
    assert table.loc["q2", "found by"] == "B" and table.loc["q2", "A top"] == "x"
    assert table.loc["q1", "query"] == "first"


def test_holm_adjustment_by_hand():
    """Holm (1979): sort the m p-values, multiply the i-th smallest by m - i + 1, keep the running maximum, cap at
    1. For 0.01, 0.04, 0.03, 0.005: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06."""
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm_adjust([0.5, 0.9]), [1.0, 1.0])
    with pytest.raises(InvalidSpecError, match="in \\[0, 1\\]"):
        holm_adjust([0.2, 1.5])


def _three():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 22)
    return {"weak": base - 0.3, "good": base, "best": base + rng.normal(0.01, 0.05, 22)}


def test_every_pair_is_tested_leader_first_with_holm_adjusted_p_values():
    pairs = pairwise_tests(_three())
    assert pairs.ranking == ("best", "good", "weak")
    assert [(t.b, t.a) for t in pairs.tests] == [("best", "good"), ("best", "weak"), ("good", "weak")]
    assert all(t.difference >= 0 for t in pairs.tests)
    np.testing.assert_allclose(pairs.adjusted, holm_adjust([t.p_value for t in pairs.tests]))
    table = pairs.table()
    assert list(table.index) == [("best", "good"), ("best", "weak"), ("good", "weak")]
    assert list(table["significant"]) == ["no", "yes", "yes"]


def test_the_verdict_names_the_leader_its_margin_and_what_holm_leaves_significant():
    verdict = pairwise_tests(_three()).verdict()
    assert verdict.startswith("best leads good by 0.0") and "nDCG@10 [95% CI" in verdict
    assert "not significant at n = 22 queries after Holm correction over 3 pairs" in verdict
    assert "significant: best over weak, good over weak" in verdict and verdict.count(".") >= 1
    same = np.linspace(0.1, 0.9, 22)
    alike = pairwise_tests({"a": same, "b": same[::-1], "c": same}).verdict()
    assert "no difference between the 3 systems is significant at n = 22 queries after Holm correction" in alike
    assert "nothing to compare" in pairwise_tests({"only": same}).verdict()
