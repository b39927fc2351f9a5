"""The real server over HTTP (one subprocess for the module): API conformance, exactness, auth, concurrency."""

from __future__ import annotations

import asyncio
import base64
import os

import httpx
import numpy as np
import pytest

from tke_playbook.localserver import start_server
from tke_playbook.target import offline_model_dir

KEY = "test-key-123"
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
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}


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
    body = response.json()
    assert body["object"] == "error" and body["type"] == "BadRequestError" and body["code"] == 400
    assert body["message"].startswith("This model's maximum context length is 256 tokens. However, you "
                                      "requested 302 tokens")


def test_truncate_prompt_tokens_cuts_to_the_limit(http, reference):
    long_text = "kubernetes " * 100 + "words " * 300
    full = http.post("/v1/embeddings", json={"input": long_text, "truncate_prompt_tokens": -1}).json()
    assert full["usage"]["prompt_tokens"] == 256
    # sentence-transformers also keeps the first 256 tokens
    assert np.abs(vectors(full)[0] - reference.encode(long_text)).max() < 1e-5
    short = http.post("/v1/embeddings", json={"input": long_text, "truncate_prompt_tokens": 10}).json()
    assert short["usage"]["prompt_tokens"] == 10


@pytest.mark.parametrize("body, status, phrase", [
    pytest.param(b"{oops", 400, "Invalid JSON", id="bad-json"),
    pytest.param(b'{"input": "x", "dimensions": 64}', 400, "matryoshka", id="dimensions"),
    pytest.param(b'{"input": "x", "model": "nope"}', 404, "does not exist", id="unknown-model"),
    pytest.param(b'{"input": "x", "truncate_prompt_tokens": 1000}', 400, "greater than max_model_len",
                 id="truncate-too-large"),
])
def test_bad_requests_get_vllm_errors(http, body, status, phrase):
    response = http.post("/v1/embeddings", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"object", "message", "type", "param", "code"} and error["code"] == status
    assert phrase in error["message"]


@pytest.mark.parametrize("method, path, headers, status", [
    pytest.param("POST", "/v1/embeddings", {}, 401, id="embeddings-without-key"),
    pytest.param("POST", "/v1/embeddings", {"Authorization": "Bearer wrong"}, 401, id="embeddings-wrong-key"),
    pytest.param("POST", "/v1/embeddings", {"Authorization": KEY}, 401, id="embeddings-key-without-bearer"),
    pytest.param("GET", "/v1/models", {}, 401, id="models-without-key"),
    pytest.param("GET", "/v1/models", {"Authorization": f"Bearer {KEY}"}, 200, id="models-with-key"),
    pytest.param("GET", "/health", {}, 200, id="health-is-open"),
    pytest.param("GET", "/metrics", {}, 200, id="metrics-is-open"),
    pytest.param("GET", "/ping", {}, 200, id="ping-is-open"),
    pytest.param("GET", "/version", {}, 200, id="version-is-open"),
])
def test_only_v1_paths_need_the_key(server, method, path, headers, status):
    body = {"input": "x"} if method == "POST" else None
    response = httpx.request(method, server.url + path, headers=headers, json=body, timeout=30)
    assert response.status_code == status
    if status == 401:
        assert response.json() == {"error": "Unauthorized"}


def test_models_lists_the_served_model(http):
    body = http.get("/v1/models").json()
    assert [m["id"] for m in body["data"]] == [MODEL]
    assert body["data"][0]["max_model_len"] == 256


def test_unknown_path_is_404_json(server):
    response = httpx.get(server.url + "/v2/nothing", timeout=30)
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


def test_metrics_count_requests_and_tokens(http, server):
    def scrape():
        text = httpx.get(server.url + "/metrics", timeout=30).text
        labels = f'model_name="{MODEL}",engine="0"'
        values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                  for line in text.splitlines() if line and not line.startswith("#")}
        assert values[f"vllm:num_requests_running{{{labels}}}"] == 0  # nothing in flight between requests
        assert values[f"vllm:num_requests_waiting{{{labels}}}"] == 0
        return (values[f'vllm:request_success_total{{{labels},finished_reason="stop"}}'],
                values[f"vllm:prompt_tokens_total{{{labels}}}"],
                values[f"vllm:e2e_request_latency_seconds_count{{{labels}}}"],
                values[f"vllm:request_queue_time_seconds_count{{{labels}}}"])

    before = scrape()
    usage = http.post("/v1/embeddings", json={"input": ["one", "two three"]}).json()["usage"]
    after = scrape()
    assert after[0] == before[0] + 1
    assert after[1] == before[1] + usage["prompt_tokens"]
    assert after[2] == before[2] + 1
    assert after[3] == before[3] + 1


def test_2000_concurrent_requests_all_answered_and_matched(server, reference):
    """All 2,000 requests are in flight at once (no client-side limit); every fourth carries two sentences, so
    rows must also stay in order within a request."""
    import aiohttp

    words = "alpha beta gamma delta".split()
    inputs = [[f"request {i}: {words[i % 4]} number {i * 7919 % 10007}"] + (
        [f"second sentence of request {i}"] if i % 4 == 0 else []) for i in range(2000)]
    flat = [text for texts in inputs for text in texts]
    expected = reference.encode(flat, batch_size=64)

    async def main():
        headers = {"Authorization": f"Bearer {KEY}"}
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
            async def one(i):
                async with session.post(server.url + "/v1/embeddings",
                                        json={"input": inputs[i], "encoding_format": "base64"},
                                        timeout=aiohttp.ClientTimeout(total=300)) as response:
                    return response.status, await response.json()
            return await asyncio.gather(*(one(i) for i in range(len(inputs))))

    results = asyncio.run(main())
    assert len(results) == 2000
    statuses = [status for status, _ in results]
    assert statuses == [200] * 2000
    assert [len(body["data"]) for _, body in results] == [len(texts) for texts in inputs]
    got = np.concatenate([vectors(body) for _, body in results])
    assert np.abs(got - expected).max() < 1e-5  # every answer belongs to its own request, rows in order
    assert server.healthy()
