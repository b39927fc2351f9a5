"""The lexical TF-IDF baseline: tokens, exact weights, the embedder interface and its failure modes."""

import math

import numpy as np
import pytest

from tke_playbook.embed.lexical import LexicalEmbedder, tokenize
from tke_playbook.errors import InvalidSpecError, PlaybookError
from tke_playbook.evaluate.datasets import load_bilingual
from tke_playbook.evaluate.similarity import cosine_matrix


def test_tokenize_words_and_character_ngrams():
    tokens = tokenize("Pods")
    assert "w:pods" in tokens
    assert tokens.count("c:#po") == 1 and "c:ds#" in tokens  # '#pods#' -> #po pod ods ds#
    assert len([t for t in tokens if t.startswith("c:")]) == 4


def test_tokenize_chinese_into_unigrams_and_bigrams():
    tokens = tokenize("快速排序")
    assert [t for t in tokens] == ["z:快", "z:速", "z:排", "z:序", "z:快速", "z:速排", "z:排序"]


def test_tokenize_mixed_text_and_full_width_forms():
    tokens = tokenize("用Python实现ＡＢ")  # full-width letters are folded by NFKC
    assert "w:python" in tokens and "w:ab" in tokens and "z:实现" in tokens and "z:用" in tokens


def test_exact_tfidf_weights_words_only():
    model = LexicalEmbedder(char_ngrams=0).fit(["a b", "a c"])
    assert list(model.vocabulary) == ["w:a", "w:b", "w:c"]
    # N = 2: idf(a) = ln(3/3) + 1 = 1; idf(b) = idf(c) = ln(3/2) + 1 = 1.4054651
    np.testing.assert_allclose(model.idf, [1.0, 1.4054651, 1.4054651], rtol=1e-6)
    # "a a b": tf(a) = 2 -> (1 + ln 2) * 1 = 1.6931472; tf(b) = 1 -> 1.4054651; norm = 2.1999...
    raw = np.array([1 + math.log(2), 1 + math.log(1.5), 0.0])
    np.testing.assert_allclose(model.embed_queries(["a a b"])[0], raw / np.linalg.norm(raw), rtol=1e-6)


def test_vectors_are_normalised_float32():
    model = LexicalEmbedder()
    docs = model.embed_documents(["the cat sat on the mat", "stock markets fell sharply", "快速排序算法"])
    assert docs.dtype == np.float32 and docs.shape == (3, model.dim)
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-6)


def test_queries_find_documents_that_share_words():
    model = LexicalEmbedder()
    texts = ["the cat sat on the mat", "stock markets fell sharply", "快速排序算法的实现"]
    docs = model.embed_documents(texts)
    queries = model.embed_queries(["why did the markets fall", "排序算法"], task="ignored")
    assert list(cosine_matrix(queries, docs).argmax(axis=1)) == [1, 2]


def test_each_dataset_document_retrieves_itself_first():
    dataset = load_bilingual()
    model = LexicalEmbedder()
    texts = [d.text for d in dataset.documents]
    docs = model.embed_documents(texts)
    sim = cosine_matrix(model.embed_queries(texts), docs)
    assert list(sim.argmax(axis=1)) == list(range(len(texts)))


def test_documents_fit_once_and_later_calls_reuse_the_vocabulary():
    model = LexicalEmbedder()
    model.embed_documents(["alpha beta"])
    vocabulary = dict(model.vocabulary)
    model.embed_documents(["gamma delta"])
    assert model.vocabulary == vocabulary
    assert not model.embed_documents(["xyz 七八"]).any()  # nothing known: zero vector, cosine 0


def test_queries_before_fitting_are_refused():
    with pytest.raises(PlaybookError, match="call fit"):
        LexicalEmbedder().embed_queries(["hello"])


def test_max_features_caps_the_dimension():
    model = LexicalEmbedder(max_features=5).fit(["one two three four five six seven"])
    assert model.dim == 5 and model.memory_bytes > 0


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"char_ngrams": 1}, "char_ngrams", id="char-ngrams-1"),
    pytest.param({"max_features": 0}, "max_features", id="max-features-0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(InvalidSpecError, match=message):
        LexicalEmbedder(**kwargs)


def test_bad_texts_are_refused():
    model = LexicalEmbedder()
    with pytest.raises(InvalidSpecError, match="no words"):
        model.fit(["  ", "!!"])
    with pytest.raises(InvalidSpecError, match=r"texts\[1\] is int"):
        model.embed_documents(["fine", 3])


def test_a_single_string_is_one_text():
    model = LexicalEmbedder()
    assert model.embed_documents("just one text").shape[0] == 1
