"""BM25 (bm25s) on hand-made corpora and reciprocal rank fusion with hand-computed values."""

import math

import numpy as np
import pytest

from tke_playbook.errors import InvalidSpecError, PlaybookError
from tke_playbook.scorecard import BM25Retriever, bm25_tokens, reciprocal_rank_fusion


def test_tokens_are_words_and_chinese_unigrams_and_bigrams():
    assert bm25_tokens("Pods restart") == ["w:pods", "w:restart"]
    assert bm25_tokens("红烧肉") == ["z:红", "z:烧", "z:肉", "z:红烧", "z:烧肉"]


def test_bm25_scores_follow_the_okapi_formula():
    # Lucene BM25: idf = ln(1 + (N - df + 0.5) / (df + 0.5)); tf part = tf / (tf + k1 (1 - b + b |d| / avgdl))
    docs = ["gpu node pool", "gpu gpu", "cooking fish"]
    retriever = BM25Retriever(k1=1.5, b=0.75).index(["a", "b", "c"], docs)
    scores = retriever.scores(["gpu"])[0]
    n, df, avgdl = 3, 2, (3 + 2 + 2) / 3
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))

    def part(tf, length):
        return tf / (tf + 1.5 * (1 - 0.75 + 0.75 * length / avgdl))
    np.testing.assert_allclose(scores, [idf * part(1, 3), idf * part(2, 2), 0.0], rtol=1e-5)


def test_chinese_query_finds_the_chinese_document():
    retriever = BM25Retriever().index(["zh", "en"], ["红烧肉要用小火慢炖", "Braise the pork belly slowly"])
    scores = retriever.scores(["红烧肉怎么做"])[0]
    assert scores[0] > 0 and scores[1] == 0


@pytest.mark.parametrize("kwargs", [{"k1": 0}, {"b": 1.5}], ids=["k1-zero", "b-above-one"])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(InvalidSpecError, match="k1"):
        BM25Retriever(**kwargs)


def test_scoring_before_indexing_says_what_to_do():
    with pytest.raises(PlaybookError, match="call index"):
        BM25Retriever().scores(["gpu"])


def test_reciprocal_rank_fusion_by_hand():
    # run 1 ranks a, b, c; run 2 ranks c, a (b missing). k = 60:
    # a = 1/61 + 1/62, b = 1/62, c = 1/63 + 1/61
    fused = reciprocal_rank_fusion([{"q": {"a": 0.9, "b": 0.5, "c": 0.1}}, {"q": {"c": 7.0, "a": 3.0}}])
    assert fused["q"]["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["q"]["b"] == pytest.approx(1 / 62)
    assert fused["q"]["c"] == pytest.approx(1 / 63 + 1 / 61)


def test_fusion_breaks_ties_by_document_id_and_weights_runs():
    # tied scores rank by ascending id: x first, y second
    fused = reciprocal_rank_fusion([{"q": {"y": 1.0, "x": 1.0}}], k=0, weights=[2.0])
    assert fused["q"] == {"x": 2.0, "y": 1.0}


@pytest.mark.parametrize("runs, kwargs, message", [
    pytest.param([], {}, "at least one run", id="no-runs"),
    pytest.param([{"q": {}}], {"k": -1}, "non-negative", id="negative-k"),
    pytest.param([{"q": {}}], {"weights": [1, 2]}, "2 weights for 1 runs", id="weights-mismatch"),
])
def test_fusion_refuses_bad_input(runs, kwargs, message):
    with pytest.raises(InvalidSpecError, match=message):
        reciprocal_rank_fusion(runs, **kwargs)
