"""Served-output parity: the local server's /v2/embed bits and /score, /rerank values match sentence-transformers'
own ``quantize_embeddings`` and ``cos_sim``; endpoints that get one thing wrong fail with that cause named.

The faulty endpoints are the real local server's answers with one known mistake applied (bits packed least
significant first, inverted, Cohere's int8 offset left out; scores through a sigmoid, with the query prompt, as
unnormalised dot products; CLS instead of mean pooling)."""

from __future__ import annotations

import numpy as np
import pytest

from tke_playbook.embed import api
from tke_playbook.embed.api import Reranked
from tke_playbook.embed.http import EmbeddingClient
from tke_playbook.embed.local import LocalEmbedder
from tke_playbook.errors import InvalidSpecError
from tke_playbook.scorecard import Cause, ReferenceEncoder
from tke_playbook.scorecard.output_parity import check_output_parity
from tke_playbook.specs.catalog import get_model
from tke_playbook.hostenv import offline_model_dir

BGE = "BAAI/bge-small-en-v1.5"  # a catalog model with a query prompt, played by MiniLM's weights


class Faulty:
    """The local server's client with one mistake applied to what it answers."""

    def __init__(self, url, fault: str):
        self.inner, self.fault, self.name = EmbeddingClient(url), fault, f"faulty ({fault})"

    def cohere_embed(self, texts, embedding_types=("float",), **options):
        if self.fault == "cls":
            vectors = LocalEmbedder(pooling="cls").embed_documents(texts)
            floats = {"float": vectors, "binary": np.packbits(vectors >= 0, axis=-1).astype(np.int16) - 128,
                      "ubinary": np.packbits(vectors >= 0, axis=-1)}
            return {k: floats[k] for k in embedding_types}
        typed = self.inner.cohere_embed(texts, embedding_types, **options)
        for kind in set(embedding_types) & {"binary", "ubinary"}:
            bits = np.unpackbits((typed[kind].astype(np.int16) + (128 if kind == "binary" else 0)).astype(np.uint8),
                                 axis=-1)
            if self.fault == "little-endian":
                bits = np.unpackbits(np.packbits(bits, axis=-1), axis=-1, bitorder="little")
            if self.fault == "inverted":
                bits = 1 - bits
            packed = np.packbits(bits, axis=-1).astype(np.int64)
            if self.fault == "no-offset" and kind == "binary":  # ubinary's bytes sent as binary: the real parser
                return api.parse_cohere_response({"embeddings": {"binary": packed.tolist()}}, len(texts), ("binary",))[0]
            typed[kind] = packed - (128 if kind == "binary" else 0)
        return typed

    def score(self, query, documents):
        if self.fault == "prompt":
            return self.inner.score(get_model(BGE).format_query(query), documents)
        if self.fault == "dot":
            st = ReferenceEncoder(offline_model_dir())
            raw = st.pooled([query] + list(documents), get_model(BGE).pooling, False)
            return raw[1:] @ raw[0]
        scores = self.inner.score(query, documents)
        return 1 / (1 + np.exp(-scores)) if self.fault == "sigmoid" else scores

    def rerank(self, query, documents, **options):
        scores = np.asarray(self.score(query, documents))
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
        return Reranked(query, tuple(documents), order, scores[order])


def test_the_local_server_serves_what_sentence_transformers_computes(local_server, reference):
    report = check_output_parity(EmbeddingClient(local_server.url), reference)
    assert report.passed and report.cause is None, report.table().to_string()
    assert report.embedder == "sentence-transformers/all-MiniLM-L6-v2"
    names = list(report.table().index)
    assert names == ["/v2/embed float = reference", "/v2/embed binary = quantize_embeddings",
                     "/v2/embed ubinary = quantize_embeddings", "/score = cos_sim(reference)",
                     "/rerank = /score, sorted"]
    assert "served outputs match" in report.sentence()


@pytest.mark.parametrize("fault, check, cause, words", [
    ("little-endian", "/v2/embed binary = quantize_embeddings", Cause.BIT_ORDER, "least significant first"),
    ("inverted", "/v2/embed ubinary = quantize_embeddings", Cause.BIT_SENSE, "inverted"),
    ("no-offset", "/v2/embed binary = quantize_embeddings", Cause.BINARY_OFFSET, "minus 128"),
    ("sigmoid", "/score = cos_sim(reference)", Cause.SCORE_FUNCTION, "sigmoid of the cosine"),
    ("cls", "/v2/embed float = reference", Cause.POOLING, "match CLS pooling"),
])
def test_each_mistake_fails_with_its_cause_named(local_server, reference, fault, check, cause, words):
    report = check_output_parity(Faulty(local_server.url, fault), reference, model="sentence-transformers/"
                                 "all-MiniLM-L6-v2")
    table = report.table()
    assert not report.passed and not table.loc[check, "passed"]
    assert report.causes[check][0] is cause and words in report.causes[check][1]
    assert cause.value in report.sentence()


@pytest.mark.parametrize("fault, words", [("prompt", "applied the catalog's query prompt"),
                                          ("dot", "dot products of unnormalised vectors")])
def test_score_mistakes_of_a_prompted_model_are_named(local_server, fault, words):
    reference = ReferenceEncoder(offline_model_dir(), BGE)
    report = check_output_parity(Faulty(local_server.url, fault), reference, model=BGE)
    assert not report.table().loc["/score = cos_sim(reference)", "passed"]
    assert words in report.causes["/score = cos_sim(reference)"][1]


def test_only_an_endpoint_client_can_be_checked(reference):
    with pytest.raises(InvalidSpecError, match="with cohere_embed"):
        check_output_parity(LocalEmbedder(), reference)
