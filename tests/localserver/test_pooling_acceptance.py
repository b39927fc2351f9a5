"""Issue 24's acceptance on the real server (a subprocess following vLLM 0.34.0, served with the Matryoshka
``--hf-overrides``): the official ``openai`` client, Cohere-shaped raw requests and raw requests built from vLLM
0.34.0's request models get vLLM's status codes and body shapes, for valid input and for each kind of invalid
input. What test_pooling_routes.py checks in-process (every score form, the rerank paths, every Cohere type's
values, refusals of input_type/output_dimension/truncate NONE, /classify, the key on each route) is not repeated.

Expectations: vLLM 0.34.0's request and response models (``entrypoints/pooling/*/protocol.py``), its
``PoolingParams`` dimension rules, and its error handlers - request validation (FastAPI) is ``Bad Request`` with
the first error's location as ``param`` (a VLLMValidationError's parameter when a validator raised one), the
engine's refusals ``BadRequestError`` with none."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import openai
import pytest

from tke_playbook.localserver import start_server

from . import vllm_examples as vllm

KEY = "acceptance-key-24"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["The cluster serves embeddings.", "A GPU node runs vLLM."]
EMBEDDING_034 = {**vllm.EMBEDDING_RESPONSE, "usage": vllm.USAGE_034}
EMBEDDING_BASE64_034 = {**vllm.EMBEDDING_RESPONSE_BASE64, "usage": vllm.USAGE_034}
SCORE_034 = {**vllm.SCORE_RESPONSE, "usage": vllm.USAGE_034}
POOLING_034 = {**vllm.POOLING_RESPONSE, "usage": vllm.USAGE_034}
VALIDATION, BAD, NOT_FOUND = "Bad Request", "BadRequestError", "NotFoundError"
ANY = object()  # a validation error's location, whose spelling for a union of request models is pydantic's


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("acceptance") / "server.log"
    with start_server(api_key=KEY, vllm_version="0.34.0", timeout=240, log_path=log,
                      hf_overrides={"matryoshka_dimensions": [128, 256]}) as running:
        yield running


@pytest.fixture(scope="module")
def official(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


def check_error(status, body, expected_status, err_type, param):
    assert status == expected_status and vllm.error_shape(body), body
    assert body["error"]["type"] == err_type and body["error"]["code"] == expected_status
    if param is ANY:
        assert isinstance(body["error"]["param"], str)
    else:
        assert body["error"]["param"] == param


# --- the official openai client ----------------------------------------------------------------------------------


def create(official, **kwargs):
    try:
        answer = official.embeddings.with_raw_response.create(model=MODEL, input=TEXTS, **kwargs)
        return answer.status_code, json.loads(answer.content)
    except openai.APIStatusError as exc:
        return exc.status_code, exc.response.json()


def post(official, path, body):
    """The official client's generic POST (base URL .../v1: /rerank is /v1/rerank, /score is /v1/score)."""
    try:
        answer = official.post(path, body=body, cast_to=httpx.Response)
        return answer.status_code, answer.json()
    except openai.APIStatusError as exc:
        return exc.status_code, exc.response.json()


def test_the_openai_client_gets_matryoshka_dimensions_as_vllm_answers_them(official):
    status, body = create(official, dimensions=128, encoding_format="float")
    assert status == 200 and vllm.same_shape(body, EMBEDDING_034)
    assert [len(d["embedding"]) for d in body["data"]] == [128, 128]
    status, body = create(official, dimensions=100)
    check_error(status, body, 400, BAD, None)
    assert body["error"]["message"] == vllm.MATRYOSHKA_ONLY
    status, body = create(official, dimensions=1000)
    check_error(status, body, 400, BAD, None)
    assert body["error"]["message"] == vllm.DIMENSIONS_RANGE


@pytest.mark.parametrize("dtype, width", [("float32", 4), ("float16", 2), ("bfloat16", 2), ("fp8_e4m3", 1),
                                          ("fp8_e5m2", 1)])
def test_the_openai_client_gets_each_embed_dtype_in_base64(official, dtype, width):
    status, body = create(official, encoding_format="base64", extra_body={"embed_dtype": dtype})
    assert status == 200 and vllm.same_shape(body, EMBEDDING_BASE64_034)
    assert [len(base64.b64decode(d["embedding"])) for d in body["data"]] == [384 * width] * 2


@pytest.mark.parametrize("extra, param", [({"embed_dtype": "int8"}, ANY), ({"endianness": "middle"}, ANY),
                                          ({"encoding_format": "bytes2"}, ANY)])
def test_the_openai_client_gets_vllms_validation_errors(official, extra, param):
    status, body = create(official, extra_body=extra)
    check_error(status, body, 400, VALIDATION, param)
    assert set(extra).pop() in body["error"]["message"]


def test_the_openai_client_posts_rerank_and_score_as_vllm_answers_them(official):
    status, body = post(official, "/rerank", vllm.RERANK_REQUEST)
    assert status == 200 and vllm.same_shape(body, vllm.RERANK_RESPONSE) and len(body["results"]) == 2
    status, body = post(official, "/score", vllm.SCORE_REQUEST_FORMS[0])
    assert status == 200 and vllm.same_shape(body, SCORE_034)
    status, body = post(official, "/rerank", {"documents": ["a"]})
    check_error(status, body, 400, VALIDATION, "body.query")
    status, body = post(official, "/rerank", {**vllm.RERANK_REQUEST, "model": "nope"})
    check_error(status, body, 404, NOT_FOUND, None)


def test_the_openai_client_with_a_wrong_key_gets_vllms_401(server):
    wrong = openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0, timeout=60)
    status, body = create(wrong)
    assert (status, body) == (401, vllm.UNAUTHORIZED)


# --- Cohere-shaped raw requests (Cohere's v2 embed API: model, texts, input_type, embedding_types, ...) ----------


def cohere(server, body, key=KEY):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(server.url + "/v2/embed", json=body, headers=headers, timeout=60)
    return response.status_code, response.json()


def cohere_example(kinds):
    return {**vllm.COHERE_RESPONSE, "embeddings": {k: vllm.COHERE_RESPONSE["embeddings"][k] for k in kinds}}


def test_a_cohere_request_gets_vllms_answer_at_each_output_dimension(server):
    request = {"model": MODEL, "texts": TEXTS, "embedding_types": ["float", "ubinary"]}
    status, body = cohere(server, request)
    assert status == 200 and vllm.same_shape(body, cohere_example(["float", "ubinary"]))
    assert [len(v) for v in body["embeddings"]["float"]] == [384, 384]
    status, body = cohere(server, {**request, "output_dimension": 256})
    assert status == 200 and [len(v) for v in body["embeddings"]["float"]] == [256, 256]
    assert [len(v) for v in body["embeddings"]["ubinary"]] == [32, 32]  # one bit per dimension
    assert np.allclose(np.linalg.norm(body["embeddings"]["float"], axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("change, status, err_type, param", [
    pytest.param({"embedding_types": ["int8"]}, 400, VALIDATION, "body.embedding_types.0", id="int8-not-in-vllm"),
    pytest.param({"truncate": "MIDDLE"}, 400, VALIDATION, "body.truncate", id="bad-truncate"),
    pytest.param({"inputs": [{"content": [{"type": "text", "text": "x"}]}]}, 400, VALIDATION, "body",
                 id="texts-and-inputs"),
    pytest.param({"texts": None}, 400, VALIDATION, "body", id="no-texts"),
    pytest.param({"texts": "hello"}, 400, VALIDATION, "body.texts", id="texts-not-a-list"),
    pytest.param({"output_dimension": 100}, 400, BAD, None, id="dimension-not-listed"),
    pytest.param({"input_type": "search_document"}, 400, BAD, None, id="input-type-without-instructions"),
    pytest.param({"model": "nope"}, 404, NOT_FOUND, None, id="unknown-model"),
])
def test_each_kind_of_bad_cohere_request_gets_vllms_error(server, change, status, err_type, param):
    got, body = cohere(server, {"model": MODEL, "texts": TEXTS, "embedding_types": ["float"], **change})
    check_error(got, body, status, err_type, param)


def test_a_cohere_request_without_the_key_gets_vllms_401(server):
    assert cohere(server, {"texts": TEXTS}, key=None) == (401, vllm.UNAUTHORIZED)


# --- raw requests built from vLLM 0.34.0's request models --------------------------------------------------------


def raw(server, path, body):
    response = httpx.post(server.url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    return response


@pytest.mark.parametrize("encoding", ["bytes", "bytes_only"])
def test_bytes_answers_carry_vllms_metadata_or_none(server, encoding):
    """EmbeddingCompletionRequest with encoding_format bytes/bytes_only, embed_dtype and endianness: the rows back to
    back (application/octet-stream), and for ``bytes`` a metadata header of vLLM's MetadataItem per row."""
    response = raw(server, "/v1/embeddings", {"model": MODEL, "input": TEXTS, "encoding_format": encoding,
                                              "embed_dtype": "float16", "endianness": "big"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/octet-stream")
    assert len(response.content) == 2 * 384 * 2
    if encoding == "bytes_only":
        assert "metadata" not in response.headers
        return
    metadata = json.loads(response.headers["metadata"])
    assert vllm.same_shape(metadata, vllm.BYTES_METADATA)
    assert [(d["start"], d["end"], d["shape"], d["embed_dtype"], d["endianness"]) for d in metadata["data"]] == \
        [(0, 768, [384], "float16", "big"), (768, 1536, [384], "float16", "big")]


@pytest.mark.parametrize("path, body, status, err_type, param", [
    pytest.param("/rerank", {"query": "q", "documents": ["a"], "top_n": -1}, 400, VALIDATION, "body.top_n",
                 id="rerank-negative-top-n"),
    pytest.param("/rerank", {"query": "q", "documents": 5}, 400, VALIDATION, ANY, id="rerank-documents-not-text"),
    pytest.param("/rerank", {"query": "q"}, 400, VALIDATION, "body.documents", id="rerank-no-documents"),
    pytest.param("/v2/rerank", {"model": "nope", "query": "q", "documents": ["a"]}, 404, NOT_FOUND, None,
                 id="rerank-unknown-model"),
    pytest.param("/score", {"model": MODEL}, 400, VALIDATION, ANY, id="score-no-form"),
    pytest.param("/score", {"text_1": 5, "text_2": ["a"]}, 400, VALIDATION, ANY, id="score-not-text"),
    pytest.param("/v1/score", {"model": "nope", "text_1": "a", "text_2": ["b"]}, 404, NOT_FOUND, None,
                 id="score-unknown-model"),
    pytest.param("/pooling", {"input": "x", "normalize": True}, 400, VALIDATION, "normalize",
                 id="pooling-normalize-removed"),
    pytest.param("/pooling", {"model": MODEL}, 400, VALIDATION, ANY, id="pooling-no-input"),
    pytest.param("/pooling", {"model": "nope", "input": "x"}, 404, NOT_FOUND, None, id="pooling-unknown-model"),
    pytest.param("/v1/embeddings", {"input": "x", "dimensions": 64}, 400, BAD, None, id="embeddings-not-listed"),
])
def test_each_kind_of_bad_request_to_the_pooling_routes_gets_vllms_error(server, path, body, status, err_type,
                                                                          param):
    response = raw(server, path, body)
    check_error(response.status_code, response.json(), status, err_type, param)


def test_valid_pooling_requests_get_vllm_034s_answers(server):
    assert vllm.same_shape(raw(server, "/pooling", {"model": MODEL, "input": TEXTS}).json(), POOLING_034)
    for form in vllm.SCORE_REQUEST_FORMS:
        assert vllm.same_shape(raw(server, "/v1/score", form).json(), SCORE_034)
    answer = raw(server, "/v2/rerank", {**vllm.RERANK_REQUEST, "top_n": 0}).json()
    assert vllm.same_shape(answer, vllm.RERANK_RESPONSE) and len(answer["results"]) == 3
