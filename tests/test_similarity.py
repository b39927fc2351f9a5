"""Cosine matrices, retrieval into runs, score distributions, separation and PCA on small known inputs."""

import math

import numpy as np
import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.evaluate import metrics as evaluation
from tke_playbook.evaluate import similarity

R = 1 / math.sqrt(2)


def test_cosine_matrix_of_a_set_with_itself():
    sim = similarity.cosine_matrix([[1, 0], [1, 1], [0, 3]])
    # cos((1,0),(1,1)) = 1/sqrt(2); cos((1,0),(0,3)) = 0; cos((1,1),(0,3)) = 3/(sqrt(2)*3) = 1/sqrt(2)
    np.testing.assert_allclose(sim, [[1, R, 0], [R, 1, R], [0, R, 1]], atol=1e-12)


def test_cosine_matrix_between_two_sets_ignores_length():
    sim = similarity.cosine_matrix([[2, 0]], [[5, 0], [0, 1], [-1, 0]])
    np.testing.assert_allclose(sim, [[1, 0, -1]])


def test_zero_vectors_have_zero_similarity():
    sim = similarity.cosine_matrix([[0, 0], [1, 0]])
    np.testing.assert_allclose(sim, [[0, 0], [0, 1]])


@pytest.mark.parametrize("a, b, message", [
    pytest.param([[1, 0]], [[1, 0, 0]], "2-dim with 3-dim", id="dimension-mismatch"),
    pytest.param([[1, float("nan")]], None, "NaN", id="nan"),
    pytest.param(np.zeros((2, 2, 2)), None, "2-D array", id="three-dimensional"),
])
def test_cosine_matrix_refuses_bad_input(a, b, message):
    with pytest.raises(InvalidSpecError, match=message):
        similarity.cosine_matrix(a, b)


def test_retrieve_keeps_the_top_k_by_cosine():
    run = similarity.retrieve([[1, 0]], [[1, 0], [0, 1], [1, 1]], ["q"], ["x", "y", "z"], k=2)
    assert list(run["q"]) == ["x", "z"]
    assert run["q"]["x"] == pytest.approx(1.0) and run["q"]["z"] == pytest.approx(R)


def test_retrieve_breaks_ties_by_document_id_like_the_metrics():
    run = similarity.retrieve([[1, 0]], [[1, 0], [1, 0], [0, 1]], ["q"], ["b", "a", "c"], k=None)
    assert list(run["q"]) == ["a", "b", "c"]
    assert evaluation.ranked(run["q"]) == list(run["q"])


def test_retrieve_checks_ids_and_k():
    with pytest.raises(InvalidSpecError, match="do not match"):
        similarity.retrieve([[1, 0]], [[1, 0]], ["q"], ["a", "b"])
    with pytest.raises(InvalidSpecError, match="positive integer"):
        similarity.retrieve([[1, 0]], [[1, 0]], ["q"], ["a"], k=0)


def test_score_distributions_label_every_pair():
    sim = np.array([[0.9, 0.1], [0.2, 0.8]])
    qrels = {"q1": {"d1": 2}, "q2": {"d2": 1, "d1": 0}}
    frame = similarity.score_distributions(sim, qrels, ["q1", "q2"], ["d1", "d2"], ["en", "zh"], ["en", "en"])
    assert len(frame) == 4
    row = frame.set_index(["query_id", "doc_id"])
    assert row.loc[("q1", "d1"), "grade"] == 2 and row.loc[("q1", "d1"), "label"] == "relevant"
    assert row.loc[("q2", "d1"), "grade"] == 0 and not row.loc[("q2", "d1"), "relevant"]
    assert row.loc[("q1", "d2"), "label"] == "irrelevant"  # not judged counts as irrelevant
    assert row.loc[("q2", "d2"), "cross_lingual"] and not row.loc[("q1", "d2"), "cross_lingual"]
    assert row.loc[("q2", "d2"), "score"] == pytest.approx(0.8)


def test_score_distributions_check_the_shape():
    with pytest.raises(InvalidSpecError, match="shape"):
        similarity.score_distributions(np.zeros((2, 2)), {}, ["q"], ["a", "b"])


def test_separation_auc_and_gap():
    import pandas as pd

    frame = pd.DataFrame({"score": [0.9, 0.5, 0.6, 0.1], "relevant": [True, True, False, False]})
    # pairs (relevant, irrelevant): 0.9>0.6, 0.9>0.1, 0.5<0.6, 0.5>0.1 -> AUC 3/4; gap 0.7 - 0.35 = 0.35
    result = similarity.separation(frame)
    assert result["auc"] == pytest.approx(0.75)
    assert result["gap"] == pytest.approx(0.35)
    assert math.isnan(similarity.separation(frame[frame["relevant"]])["auc"])


def test_topic_separation():
    sim = np.array([[1.0, 0.8, 0.1], [0.8, 1.0, 0.3], [0.1, 0.3, 1.0]])
    # within topic "a": the off-diagonal 0.8 twice -> 0.8; across: 0.1, 0.3, 0.1, 0.3 -> 0.2; margin 0.6
    result = similarity.topic_separation(sim, ["a", "a", "b"])
    assert result == pytest.approx({"within_topic": 0.8, "across_topics": 0.2, "margin": 0.6})


def test_pca_recovers_a_line():
    t = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    direction = np.array([1.0, 2.0, 2.0]) / 3.0  # unit length
    points = similarity.pca_2d(t[:, None] * direction + np.array([5.0, 5.0, 5.0]))
    assert points.shape == (5, 2)
    np.testing.assert_allclose(points[:, 0], t, atol=1e-9)  # sign fixed: largest loading positive
    np.testing.assert_allclose(points[:, 1], 0, atol=1e-9)


def test_pca_of_2d_data_preserves_distances():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(6, 2))
    points = similarity.pca_2d(data)
    before = np.linalg.norm(data[:, None] - data[None], axis=-1)
    after = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.testing.assert_allclose(before, after, atol=1e-9)
    assert points[:, 0].var() >= points[:, 1].var()


def test_pca_of_one_dimensional_vectors_pads_with_zeros():
    points = similarity.pca_2d([[1.0], [3.0]])
    np.testing.assert_allclose(points, [[-1, 0], [1, 0]])


def test_pca_needs_two_vectors():
    with pytest.raises(InvalidSpecError, match="at least two"):
        similarity.pca_2d([[1.0, 2.0]])
