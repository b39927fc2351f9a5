"""The embedding cache: only unseen texts are embedded, the cache survives a new process-level object, and a
model change under the same name is refused instead of mixing vectors."""

import numpy as np
import pytest

from tke_playbook.embed.lexical import LexicalEmbedder
from tke_playbook.errors import InvalidSpecError, PlaybookError
from tke_playbook.scorecard import CachedEmbedder
from tke_playbook.scorecard.cache import cacheable


class Counting:
    name = "counting"
    revision = "r1"

    def __init__(self, dim=4):
        self.dim, self.seen = dim, []

    def _vec(self, text, salt):
        rng = np.random.default_rng(abs(hash((salt, text))) % 2**32)
        return rng.standard_normal(self.dim).astype(np.float32)

    def embed_documents(self, texts):
        self.seen.extend(texts)
        return np.stack([self._vec(t, "d") for t in texts])

    def embed_queries(self, texts, task=None):
        self.seen.extend(texts)
        return np.stack([self._vec(t, ("q", task)) for t in texts])


def test_only_unseen_texts_are_embedded_and_a_new_wrapper_reads_the_disk(tmp_path):
    inner = Counting()
    first = CachedEmbedder(inner, "set", cache_dir=tmp_path, batch_size=2, progress=False)
    a = first.embed_documents(["x", "y", "z"])
    assert inner.seen == ["x", "y", "z"] and [c["texts"] for c in first.calls] == [2, 1]
    b = first.embed_documents(["z", "w", "x"])
    assert inner.seen == ["x", "y", "z", "w"]
    np.testing.assert_array_equal(b[0], a[2])
    again = CachedEmbedder(Counting(), "set", cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again.embed_documents(["x", "y", "z"]), a)
    assert again.inner.seen == [] and again.calls == []


def test_queries_documents_and_tasks_are_cached_apart(tmp_path):
    inner = Counting()
    cached = CachedEmbedder(inner, "set", cache_dir=tmp_path, progress=False)
    doc, query = cached.embed_documents(["t"]), cached.embed_queries(["t"])
    instructed = cached.embed_queries(["t"], task="find passages")
    assert inner.seen == ["t", "t", "t"]
    assert not np.allclose(doc, query) and not np.allclose(query, instructed)


def test_revision_and_dataset_key_the_cache(tmp_path):
    CachedEmbedder(Counting(), "set", cache_dir=tmp_path, progress=False).embed_documents(["t"])
    for revision, dataset in (("r2", "set"), ("r1", "other")):
        inner = Counting()
        CachedEmbedder(inner, dataset, cache_dir=tmp_path, revision=revision, progress=False).embed_documents(["t"])
        assert inner.seen == ["t"]


def test_a_changed_model_under_the_same_name_is_refused(tmp_path):
    CachedEmbedder(Counting(dim=4), "set", cache_dir=tmp_path, progress=False).embed_documents(["t"])
    with pytest.raises(PlaybookError, match="mix vector shapes"):
        CachedEmbedder(Counting(dim=8), "set", cache_dir=tmp_path, progress=False).embed_documents(["u"])


def test_a_damaged_cache_file_is_rebuilt(tmp_path):
    cached = CachedEmbedder(Counting(), "set", cache_dir=tmp_path, progress=False)
    cached.embed_documents(["t"])
    cached.cache.path.write_bytes(b"not a zip")
    inner = Counting()
    CachedEmbedder(inner, "set", cache_dir=tmp_path, progress=False).embed_documents(["t"])
    assert inner.seen == ["t"]


def test_embedders_that_fit_on_their_input_are_not_cached():
    assert not cacheable(LexicalEmbedder()) and cacheable(Counting())


def test_bad_batch_size_is_refused(tmp_path):
    with pytest.raises(InvalidSpecError, match="batch_size"):
        CachedEmbedder(Counting(), "set", cache_dir=tmp_path, batch_size=0)


def test_an_endpoint_is_cached_by_its_served_name_not_its_url(tmp_path):
    from tke_playbook.embed.http import EmbeddingClient
    from tke_playbook.scorecard import revision_of

    # a port-forward gets a new local port every time: the cache must not depend on it
    a, b = EmbeddingClient("http://127.0.0.1:1111", "BAAI/bge-m3"), EmbeddingClient("http://127.0.0.1:2222", "BAAI/bge-m3")
    assert revision_of(a) == revision_of(b) == "served"
    b.revision = "image-v0.10.1"
    assert revision_of(b) == "image-v0.10.1"
    assert CachedEmbedder(a, "set", cache_dir=tmp_path).cache.path == CachedEmbedder(
        EmbeddingClient("http://127.0.0.1:3333", "BAAI/bge-m3"), "set", cache_dir=tmp_path).cache.path
