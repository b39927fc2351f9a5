"""The real server over HTTP (one subprocess for the module): API conformance with vLLM 0.33 (the official
``openai`` client and raw requests built from vLLM's request models), exactness, auth, metrics."""

from __future__ import annotations

import base64
import json
import os

import httpx
import numpy as np
import openai
import pytest

from tke_playbook.hostenv import offline_model_dir
from tke_playbook.loadgen import promtext
from tke_playbook.localserver import start_server, surface

from . import vllm_examples as vllm

KEY = "test-key-0123456789"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["The cluster serves embeddings.", "A GPU node runs vLLM.", "短いテキスト", "", "x " * 40]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("localserver") / "server.log"
    with start_server(api_key=KEY, timeout=240, log_path=log) as running:
        yield running


@pytest.fixture(scope="module")
def reference():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(offline_model_dir()), device="cpu")


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        yield client


def vectors(body) -> np.ndarray:
    rows = []
    for item in sorted(body["data"], key=lambda d: d["index"]):
        value = item["embedding"]
        rows.append(np.frombuffer(base64.b64decode(value), dtype="<f4") if isinstance(value, str) else value)
    return np.asarray(rows, dtype=np.float32)


def test_embeddings_equal_sentence_transformers(http, reference):
    response = http.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("embd-") and body["object"] == "list" and body["model"] == MODEL
    assert isinstance(body["created"], int)
    assert [(d["index"], d["object"]) for d in body["data"]] == [(i, "embedding") for i in range(len(TEXTS))]
    expected = reference.encode(TEXTS)
    assert np.abs(vectors(body) - expected).max() < 1e-5
    tokens = sum(len(ids) for ids in reference.tokenizer(TEXTS)["input_ids"])
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0,
                             "prompt_tokens_details": None, "completion_tokens_details": None}
    assert vllm.same_shape(body, vllm.EMBEDDING_RESPONSE)


def test_a_single_string_and_base64(http, reference):
    floats = http.post("/v1/embeddings", json={"input": TEXTS[0]}).json()
    packed = http.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"}).json()
    assert isinstance(packed["data"][0]["embedding"], str)
    assert np.array_equal(vectors(packed), vectors(floats))
    assert np.abs(vectors(packed)[0] - reference.encode(TEXTS[0])).max() < 1e-5


def test_token_ids_are_encoded_without_decoding(http, reference):
    ids = reference.tokenizer(TEXTS[:2])["input_ids"]
    one = http.post("/v1/embeddings", json={"input": ids[0]}).json()
    many = http.post("/v1/embeddings", json={"input": ids}).json()
    assert one["usage"]["prompt_tokens"] == len(ids[0])
    assert np.abs(vectors(many) - reference.encode(TEXTS[:2])).max() < 1e-5
    assert np.abs(vectors(one)[0] - vectors(many)[0]).max() < 1e-5


def test_add_special_tokens_false_leaves_out_cls_and_sep(http, reference):
    plain = reference.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    body = http.post("/v1/embeddings", json={"input": TEXTS[0], "add_special_tokens": False, "user": "u1"}).json()
    assert body["usage"]["prompt_tokens"] == len(plain)
    same = http.post("/v1/embeddings", json={"input": plain}).json()  # the same ids sent as tokens
    assert np.abs(vectors(body) - vectors(same)).max() < 1e-6


def test_over_length_input_gets_400_with_the_limit(http):
    response = http.post("/v1/embeddings", json={"input": "word " * 300})
    assert response.status_code == 400
    assert response.json() == vllm.TOO_LONG  # vLLM's message, to the token count


def test_use_activation_false_returns_the_pooled_vector_unnormalised(http, reference):
    raw = vectors(http.post("/v1/embeddings", json={"input": TEXTS[0], "use_activation": False}).json())[0]
    # The mean-pooled vector before the model's Normalize step: same direction, not unit length.
    assert np.abs(raw / np.linalg.norm(raw) - reference.encode(TEXTS[0])).max() < 1e-5
    assert abs(np.linalg.norm(raw) - 1) > 1e-3
    normed = vectors(http.post("/v1/embeddings", json={"input": TEXTS[0], "normalize": True}).json())[0]
    assert np.abs(normed - reference.encode(TEXTS[0])).max() < 1e-5


def test_truncation_side_left_keeps_the_end_of_a_text(http, reference):
    text = "alpha " * 20 + "omega"
    body = http.post("/v1/embeddings", json={"input": text, "truncate_prompt_tokens": 4,
                                             "truncation_side": "left"}).json()
    ids = reference.tokenizer(text)["input_ids"]
    kept = ids[:1] + ids[-3:]  # [CLS] + the last two words' tokens + [SEP]
    same = http.post("/v1/embeddings", json={"input": kept}).json()
    assert body["usage"]["prompt_tokens"] == 4 and np.abs(vectors(body) - vectors(same)).max() < 1e-6


def test_truncate_prompt_tokens_cuts_to_the_limit(http, reference):
    long_text = "kubernetes " * 100 + "words " * 300
    full = http.post("/v1/embeddings", json={"input": long_text, "truncate_prompt_tokens": -1}).json()
    assert full["usage"]["prompt_tokens"] == 256
    # sentence-transformers also keeps the first 256 tokens
    assert np.abs(vectors(full)[0] - reference.encode(long_text)).max() < 1e-5
    short = http.post("/v1/embeddings", json={"input": long_text, "truncate_prompt_tokens": 10}).json()
    assert short["usage"]["prompt_tokens"] == 10


@pytest.mark.parametrize("body, status, phrase", [
    pytest.param(b"{oops", 400, "JSON decode error", id="bad-json"),
    pytest.param(b'{"input": "x", "dimensions": 64}', 400, "Matryoshka", id="dimensions"),
    pytest.param(b'{"input": "x", "model": "nope"}', 404, "does not exist", id="unknown-model"),
    pytest.param(b'{"input": "x", "truncate_prompt_tokens": 1000}', 400, "greater than max_model_len",
                 id="truncate-too-large"),
    pytest.param(b'{"input": "x", "encoding_format": null}', 400, "encoding_format", id="encoding-null"),
    pytest.param(b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "chat template", id="chat-no-template"),
])
def test_bad_requests_get_vllm_errors(http, body, status, phrase):
    response = http.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()
    assert vllm.error_shape(error) and error["error"]["code"] == status
    assert phrase in error["error"]["message"]


@pytest.mark.parametrize("method, path, headers, status", [
    pytest.param("POST", "/v1/embeddings", {}, 401, id="embeddings-without-key"),
    pytest.param("POST", "/v1/embeddings", {"Authorization": "Bearer wrong"}, 401, id="embeddings-wrong-key"),
    pytest.param("POST", "/v1/embeddings", {"Authorization": KEY}, 401, id="embeddings-key-without-bearer"),
    pytest.param("POST", "/v1/embeddings", {"Authorization": f"bearer {KEY}"}, 200, id="lower-case-bearer"),
    pytest.param("GET", "/v1/models", {}, 401, id="models-without-key"),
    pytest.param("GET", "/v1/models", {"Authorization": f"Bearer {KEY}"}, 200, id="models-with-key"),
    pytest.param("POST", "/v2/embed", {}, 401, id="v2-without-key"),
    pytest.param("POST", "/inference/v1/generate", {}, 401, id="inference-without-key"),
    pytest.param("POST", "/cohere/v2/embed", {}, 401, id="cohere-without-key"),
    pytest.param("GET", "/health", {}, 200, id="health-is-open"),
    pytest.param("GET", "/metrics", {}, 200, id="metrics-is-open"),
    pytest.param("GET", "/ping", {}, 200, id="ping-is-open"),
    pytest.param("GET", "/version", {}, 200, id="version-is-open"),
])
def test_the_guarded_paths_need_the_key(server, method, path, headers, status):
    body = {"input": "x"} if method == "POST" else None
    response = httpx.request(method, server.url + path, headers=headers, json=body, timeout=30)
    assert response.status_code == status
    if status == 401:
        assert response.json() == vllm.UNAUTHORIZED


def test_version_is_the_vllm_version_the_surface_follows(server):
    assert httpx.get(server.url + "/version", timeout=30).json() == vllm.VERSION_033
    assert surface.VLLM_VERSION == vllm.VERSION_033["version"]


# --- acceptance: the official openai client and raw vLLM 0.33 requests get vLLM's statuses and body shapes ----


def openai_call(server, key=KEY, **kwargs):
    """(status, body) of ``client.embeddings.create(**kwargs)`` with the official client."""
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)
    try:
        created = client.embeddings.with_raw_response.create(**kwargs)
        return created.status_code, json.loads(created.content)
    except openai.APIStatusError as exc:
        return exc.status_code, exc.response.json()


@pytest.mark.parametrize("case, kwargs, status, example", [
    pytest.param("valid", {"input": ["a GPU node", "a CPU node"], "encoding_format": "float"}, 200,
                 vllm.EMBEDDING_RESPONSE, id="valid"),
    pytest.param("base64", {"input": "a GPU node"}, 200, vllm.EMBEDDING_RESPONSE_BASE64, id="base64-default"),
    pytest.param("too-long", {"input": "word " * 300}, 400, vllm.TOO_LONG, id="too-long"),
    pytest.param("unknown-model", {"input": "x", "model": "nope"}, 404, vllm.UNKNOWN_MODEL, id="unknown-model"),
    pytest.param("dimensions", {"input": "x", "dimensions": 64}, 400, vllm.DIMENSIONS, id="dimensions"),
    pytest.param("missing-key", {"input": "x"}, 401, vllm.UNAUTHORIZED, id="missing-key"),
])
def test_the_openai_client_gets_vllms_answers(server, case, kwargs, status, example):
    kwargs = {"model": MODEL, **kwargs}
    got_status, body = openai_call(server, key="not-the-key" if case == "missing-key" else KEY, **kwargs)
    assert got_status == status and vllm.same_shape(body, example)
    if status != 200:
        assert body.get("error") == example["error"] or body["error"]["type"] == example["error"]["type"]


def test_the_openai_client_decodes_our_base64_and_floats_alike(server):
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)
    packed = client.embeddings.create(model=MODEL, input=TEXTS[:2])  # the client asks for base64 and decodes it
    floats = client.embeddings.create(model=MODEL, input=TEXTS[:2], encoding_format="float")
    assert np.allclose([d.embedding for d in packed.data], [d.embedding for d in floats.data], atol=0)
    assert packed.usage.prompt_tokens == floats.usage.prompt_tokens > 0


RAW_CASES = [
    pytest.param({**vllm.COMPLETION_REQUEST_033}, {}, 200, vllm.EMBEDDING_RESPONSE, id="valid"),
    pytest.param({**vllm.COMPLETION_REQUEST_033, "encoding_format": "base64"}, {}, 200,
                 vllm.EMBEDDING_RESPONSE_BASE64, id="base64"),
    pytest.param({**vllm.COMPLETION_REQUEST_033, "input": "word " * 300}, {}, 400, vllm.TOO_LONG, id="too-long"),
    pytest.param({**vllm.COMPLETION_REQUEST_033, "model": "nope"}, {}, 404, vllm.UNKNOWN_MODEL, id="unknown-model"),
    pytest.param({**vllm.COMPLETION_REQUEST_033, "dimensions": 64}, {}, 400, vllm.DIMENSIONS, id="dimensions"),
    pytest.param({**vllm.COMPLETION_REQUEST_033}, {"Authorization": ""}, 401, vllm.UNAUTHORIZED, id="missing-key"),
    pytest.param(b'{"input": "x",', {}, 400, vllm.VALIDATION_ERROR, id="malformed-json"),
    pytest.param({**vllm.COMPLETION_REQUEST_033}, {"Content-Type": "text/plain"}, 400, vllm.UNSUPPORTED_MEDIA_TYPE,
                 id="wrong-content-type"),
]


@pytest.mark.parametrize("request_body, headers, status, example", RAW_CASES)
def test_raw_vllm_033_requests_get_vllms_answers(server, request_body, headers, status, example):
    content = request_body if isinstance(request_body, bytes) else json.dumps(request_body).encode()
    sent = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **headers}
    response = httpx.post(server.url + "/v1/embeddings", content=content, headers=sent, timeout=60)
    body = response.json()
    assert response.status_code == status and vllm.same_shape(body, example)
    if isinstance(example.get("error"), dict):
        assert body["error"]["type"] == example["error"]["type"] and body["error"]["code"] == status
    if status == 200:  # the response id carries the request's request_id, as vLLM's does
        assert body["id"] == f"embd-{request_body['request_id']}"


def test_models_lists_the_served_model(http):
    body = http.get("/v1/models").json()
    assert [m["id"] for m in body["data"]] == [MODEL]
    assert body["data"][0]["max_model_len"] == 256


def test_unknown_path_is_404_json(server):
    response = httpx.get(server.url + "/v2/nothing", timeout=30, headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 404 and response.json() == vllm.NOT_FOUND_ROUTE
    assert httpx.get(server.url + "/nothing", timeout=30).json() == vllm.NOT_FOUND_ROUTE


def test_metrics_count_requests_and_tokens(http, server):
    def scrape():
        metrics = promtext.parse(httpx.get(server.url + "/metrics", timeout=30).text)
        assert metrics.value("vllm:num_requests_running", model_name=MODEL) == 0  # nothing in flight
        assert metrics.value("vllm:num_requests_waiting", model_name=MODEL) == 0
        return metrics

    before = scrape()
    usage = http.post("/v1/embeddings", json={"input": ["one", "two three"]}).json()["usage"]
    delta = promtext.diff(before, scrape())
    assert delta.value("vllm:request_success_total", model_name=MODEL, finished_reason="stop") == 1
    assert delta.value("vllm:prompt_tokens_total", model_name=MODEL) == usage["prompt_tokens"]
    assert delta.value("vllm:e2e_request_latency_seconds_count", model_name=MODEL) == 1
    assert delta.value("vllm:request_queue_time_seconds_count", model_name=MODEL) == 1
