"""vLLM's pooling surface for an embedding model on the local server (the real MiniLM, the app in-process):
/score (four forms), /rerank (three paths), /pooling, Cohere's /v2/embed, /classify, the API-key rule on each,
Matryoshka ``dimensions`` with --hf-overrides, chunked processing of long inputs, and 0.34.0's usage.

Expectations: recorded vLLM bodies (vllm_examples) for shapes, statuses and messages; values from
sentence-transformers itself (its embeddings, ``cos_sim`` and ``quantize_embeddings``), never from the server."""

from __future__ import annotations

import asyncio
import base64
import json
import os

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tke_playbook.hostenv import offline_model_dir
from tke_playbook.localserver.app import ServerConfig, build_app
from tke_playbook.localserver.encoder import Encoder

from . import vllm_examples as vllm

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
KEY = "pooling-key-123"


@pytest.fixture(scope="module")
def encoder():
    return Encoder(offline_model_dir(), threads=1)


@pytest.fixture(scope="module")
def reference():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(offline_model_dir()), device="cpu")


def call(encoder, requests, **config):
    """[(status, body or bytes, headers)] for ``requests`` = [(path, json body, headers)] against the app."""
    async def main():
        server = TestServer(build_app(encoder, ServerConfig(MODEL, **config)))
        await server.start_server()
        out = []
        try:
            async with ClientSession() as session:
                for path, body, headers in requests:
                    async with session.post(server.make_url(path), json=body, headers=headers or {}) as response:
                        raw = await response.read()
                        try:
                            answer = json.loads(raw)
                        except ValueError:
                            answer = raw
                        out.append((response.status, answer, response.headers))
        finally:
            await server.close()
        return out

    return asyncio.run(main())


def one(encoder, path, body, headers=None, **config):
    return call(encoder, [(path, body, headers)], **config)[0][:2]


@pytest.mark.parametrize("form", vllm.SCORE_REQUEST_FORMS, ids=["queries-documents", "queries-items", "data",
                                                                  "text"])
@pytest.mark.parametrize("path", ["/score", "/v1/score"])
def test_every_score_form_answers_the_cosine_of_the_pooled_vectors(encoder, reference, form, path):
    from sentence_transformers.util import cos_sim

    status, body = one(encoder, path, form)
    assert status == 200 and vllm.same_shape(body, vllm.SCORE_RESPONSE) and body["id"].startswith("score-")
    queries, documents = list(form.values())
    expected = cos_sim(reference.encode([queries]), reference.encode(documents))[0].numpy()
    assert np.allclose([d["score"] for d in body["data"]], expected, atol=1e-5)
    tokens = sum(len(ids) for ids in reference.tokenizer([queries] + documents)["input_ids"])
    assert body["usage"]["prompt_tokens"] == tokens  # the query counted once, as vLLM sums its prompts


def test_score_pairs_n_to_n_and_refuses_other_lengths(encoder, reference):
    from sentence_transformers.util import pairwise_cos_sim

    pairs = {"text_1": ["a cat", "a GPU"], "text_2": ["a kitten", "a graphics card"]}
    (status, body), (bad, error) = [r[:2] for r in call(encoder, [
        ("/score", pairs, None), ("/score", {"text_1": ["a", "b"], "text_2": ["c", "d", "e"]}, None)])]
    expected = pairwise_cos_sim(reference.encode(pairs["text_1"]), reference.encode(pairs["text_2"])).numpy()
    assert status == 200 and np.allclose([d["score"] for d in body["data"]], expected, atol=1e-5)
    assert (bad, error) == (400, vllm.SCORE_LENGTHS)


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
def test_rerank_sorts_by_relevance_and_cuts_to_top_n(encoder, reference, path):
    from sentence_transformers.util import cos_sim

    request = vllm.RERANK_REQUEST
    status, body = one(encoder, path, request)
    assert status == 200 and vllm.same_shape(body, vllm.RERANK_RESPONSE)
    scores = cos_sim(reference.encode([request["query"]]), reference.encode(request["documents"]))[0].numpy()
    order = list(np.argsort(-scores)[:request["top_n"]])
    assert [r["index"] for r in body["results"]] == order
    assert [r["document"]["text"] for r in body["results"]] == [request["documents"][i] for i in order]
    assert np.allclose([r["relevance_score"] for r in body["results"]], scores[order], atol=1e-5)
    everything = one(encoder, path, {**request, "top_n": 0})[1]
    assert len(everything["results"]) == 3


def test_pooling_answers_the_embedding_as_vllm_shapes_it(encoder, reference):
    text = "The cluster serves embeddings."
    results = call(encoder, [("/pooling", {"input": [text]}, None),
                             ("/pooling", {"input": text, "dimensions": 64}, None),
                             ("/pooling", {"input": text, "normalize": True}, None),
                             ("/pooling", {"input": text, "task": "classify"}, None)])
    (status, body, _), dims, normalize, task = results
    assert status == 200 and vllm.same_shape(body, vllm.POOLING_RESPONSE) and body["id"].startswith("pool-")
    assert np.abs(np.array(body["data"][0]["data"]) - reference.encode(text)).max() < 1e-5
    assert dims[:2] == (400, vllm.POOLING_DIMENSIONS)
    assert normalize[0] == 400 and "`normalize` was removed" in normalize[1]["error"]["message"]
    assert task[0] == 400 and "Unsupported task: 'classify'" in task[1]["error"]["message"]


def test_cohere_embed_gives_every_embedding_type_as_sentence_transformers_quantises(encoder, reference):
    from sentence_transformers.util.quantization import quantize_embeddings

    request = vllm.COHERE_REQUEST
    status, body = one(encoder, "/v2/embed", request, {"Authorization": f"Bearer {KEY}"}, api_key=KEY)
    assert status == 200 and vllm.same_shape(body, vllm.COHERE_RESPONSE) and body["texts"] == request["texts"]
    floats = reference.encode(request["texts"])
    assert np.abs(np.array(body["embeddings"]["float"]) - floats).max() < 1e-5
    for kind in ("binary", "ubinary"):  # the same signs, packed the same way
        assert np.array_equal(body["embeddings"][kind], quantize_embeddings(floats, precision=kind))
    packed = np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in body["embeddings"]["base64"]])
    assert np.abs(packed - floats).max() < 1e-5
    tokens = sum(len(ids) for ids in reference.tokenizer(request["texts"])["input_ids"])
    assert body["meta"]["billed_units"] == {"input_tokens": tokens, "image_tokens": 0}


def test_cohere_embed_refusals_follow_vllm(encoder):
    texts = {"texts": ["hello"]}
    results = call(encoder, [("/v2/embed", {**texts, "input_type": "search_query"}, None),
                             ("/v2/embed", {**texts, "output_dimension": 64}, None),
                             ("/v2/embed", {"texts": ["word " * 300], "truncate": "NONE"}, None),
                             ("/v2/embed", {"texts": ["word " * 300]}, None),
                             ("/v2/embed", {"texts": []}, None)])
    (input_type, error), (dims, dims_error), (none, _), (end, cut), (empty, _) = [r[:2] for r in results]
    assert (input_type, error) == (400, vllm.COHERE_INPUT_TYPE)
    assert dims == 400 and dims_error["error"]["message"] == vllm.DIMENSIONS["error"]["message"]
    assert none == 400 and end == 200 and cut["meta"]["billed_units"]["input_tokens"] == 256  # END cuts
    assert empty == 400


def test_classify_is_not_served_for_an_embedding_model(encoder):
    assert one(encoder, "/classify", {"input": "x"}) == (501, vllm.CLASSIFY_EMBEDDING_MODEL)


@pytest.mark.parametrize("path, guarded", [("/v2/embed", True), ("/v1/score", True), ("/v1/rerank", True),
                                           ("/v2/rerank", True), ("/score", False), ("/rerank", False),
                                           ("/pooling", False), ("/classify", False)])
def test_the_api_key_guards_the_pooling_routes_as_vllm_does(encoder, path, guarded):
    body = {"texts": ["x"], "query": "x", "documents": ["y"], "text_1": "x", "text_2": "y", "input": "x"}
    status, answer = one(encoder, path, body, api_key=KEY)
    assert (status == 401) == guarded
    if guarded:
        assert answer == vllm.UNAUTHORIZED


def test_every_pooling_route_of_vllm_034_is_answered(encoder):
    statuses = [r[0] for r in call(encoder, [(path, {"input": "x"}, None) for path in vllm.POOLING_ROUTES_034])]
    assert 404 not in statuses and 405 not in statuses


def test_dimensions_need_a_matryoshka_model_or_the_hf_override(encoder, reference):
    text = {"input": "The cluster serves embeddings."}
    plain = one(encoder, "/v1/embeddings", {**text, "dimensions": 64})
    assert plain == (400, vllm.DIMENSIONS)
    results = call(encoder, [("/v1/embeddings", {**text, "dimensions": 128}, None),
                             ("/v1/embeddings", {**text, "dimensions": 100}, None)],
                   matryoshka_dimensions=(128, 256))
    (ok, body, _), (bad, error, _) = results
    full = reference.encode(text["input"])[:128]
    assert ok == 200 and np.abs(np.array(body["data"][0]["embedding"]) - full / np.linalg.norm(full)).max() < 1e-5
    assert bad == 400 and error["error"]["message"] == vllm.MATRYOSHKA_ONLY


def test_long_inputs_are_embedded_in_chunks_as_vllm_combines_them(encoder, reference):
    import torch

    text = " ".join(f"word{i}" for i in range(300))  # well over 256 tokens
    ids = reference.tokenizer(text)["input_ids"]
    assert 256 < len(ids) < 1024
    chunks = [ids[i:i + 256] for i in range(0, len(ids), 256)]
    with torch.inference_mode():
        vectors = [reference({"input_ids": torch.tensor([c]), "attention_mask": torch.ones(1, len(c),
                                                                                             dtype=torch.long),
                              "token_type_ids": torch.zeros(1, len(c), dtype=torch.long)})
                   ["sentence_embedding"][0].numpy() for c in chunks]
    mean = sum(v * len(c) for v, c in zip(vectors, chunks)) / len(ids)
    expected = mean / np.linalg.norm(mean)
    plain = one(encoder, "/v1/embeddings", {"input": text})
    chunked = call(encoder, [("/v1/embeddings", {"input": text}, None),
                             ("/v1/embeddings", {"input": text + " more" * 900}, None)],
                   enable_chunked_processing=True, max_embed_len=1024)
    (status, body, _), (too_long, error, _) = chunked
    assert plain[0] == 400 and "maximum context length is 256" in plain[1]["error"]["message"]
    assert status == 200 and body["usage"]["prompt_tokens"] == len(ids)
    assert np.abs(np.array(body["data"][0]["embedding"]) - expected).max() < 1e-5
    assert too_long == 400 and "maximum context length is 1024" in error["error"]["message"]


def test_vllm_034_usage_has_no_prompt_tokens_details(encoder):
    results = call(encoder, [("/v1/embeddings", {"input": "hello"}, None), ("/score", vllm.SCORE_REQUEST_FORMS[0],
                                                                            None)], vllm_version="0.34.0")
    (status, body, _), (_, score, _) = results
    assert status == 200 and vllm.same_shape(body["usage"], vllm.USAGE_034)
    assert vllm.same_shape(score["usage"], vllm.USAGE_034)
