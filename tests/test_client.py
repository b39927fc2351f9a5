"""The embeddings clients against the fake server: batching, decoding, prompts, retries, timeouts and errors."""

from __future__ import annotations

import asyncio
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_embedding_server (importlib mode)
from fake_embedding_server import FakeEmbeddingServer, fake_vector  # noqa: E402

from tke_playbook.embed import api  # noqa: E402
from tke_playbook.embed.http import AsyncEmbeddingClient, EmbeddingClient  # noqa: E402
from tke_playbook.errors import InvalidSpecError  # noqa: E402
from tke_playbook.errors import AuthenticationError, BadRequestError, EmbeddingAPIError, RetriesExhaustedError
from tke_playbook.specs.catalog import get_model  # noqa: E402

FAST = {"backoff": 0.01, "max_backoff": 0.05}


@pytest.fixture
def server():
    with FakeEmbeddingServer() as srv:
        yield srv


def expected(texts, dim=8):
    return np.vstack([fake_vector(t, dim) for t in texts])


def test_embed_returns_float32_rows_in_order(server):
    texts = [f"text number {i}" for i in range(5)]
    with EmbeddingClient(server.url, model="fake-model") as client:
        vectors = client.embed(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (5, 8)
    np.testing.assert_allclose(vectors, expected(texts), rtol=1e-6)
    assert client.last_latency_s is not None and len(client.timings) == 1
    assert client.last_prompt_tokens == 15


def test_base64_decoding_equals_float(server):
    texts = ["alpha", "beta gamma"]
    with EmbeddingClient(server.url, model="fake-model") as client:
        as_float = client.embed(texts)
        as_b64 = client.embed(texts, encoding_format="base64")
    np.testing.assert_array_equal(as_float, as_b64)


def test_batches_split_at_max_batch_size_and_keep_order(server):
    texts = [f"t{i}" for i in range(23)]
    with EmbeddingClient(server.url, model="fake-model", max_batch_size=5) as client:
        vectors = client.embed(texts)
    assert [len(r["inputs"]) for r in server.requests] == [5, 5, 5, 5, 3]
    np.testing.assert_allclose(vectors, expected(texts), rtol=1e-6)


def test_async_batches_concurrently_and_keep_order(server):
    texts = [f"t{i}" for i in range(23)]

    async def go():
        async with AsyncEmbeddingClient(server.url, model="fake-model", max_batch_size=4) as client:
            return await client.embed(texts)

    vectors = asyncio.run(go())
    assert sorted(len(r["inputs"]) for r in server.requests) == [3, 4, 4, 4, 4, 4]
    np.testing.assert_allclose(vectors, expected(texts), rtol=1e-6)


def test_model_resolved_from_server_when_not_given(server):
    with EmbeddingClient(server.url) as client:
        client.embed(["x"])
        assert client.name == "fake-model" and client.models() == ["fake-model"]
    assert server.requests[0]["model"] == "fake-model"


@pytest.mark.parametrize("model,query,document", [
    pytest.param("intfloat/e5-mistral-7b-instruct",
                 "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: 猫",
                 "猫", id="e5-instruction"),
    pytest.param("BAAI/bge-large-zh-v1.5", "为这个句子生成表示以用于检索相关文章：猫", "猫", id="bge-zh-prefix"),
    pytest.param("BAAI/bge-m3", "猫", "猫", id="bge-m3-no-prompt"),
])
def test_prompts_applied_from_catalog(server, model, query, document):
    with EmbeddingClient(server.url, model=model) as client:
        client.embed_queries(["猫"])
        client.embed_documents(["猫"])
    assert server.requests[0]["inputs"] == [query]
    assert server.requests[1]["inputs"] == [document]


def test_query_task_overrides_default(server):
    with EmbeddingClient(server.url, model="intfloat/e5-mistral-7b-instruct") as client:
        client.embed_queries(["q"], task="Find the answer")
    assert server.requests[0]["inputs"] == ["Instruct: Find the answer\nQuery: q"]


def test_unknown_model_sends_no_prompt_and_warns_once(server):
    with EmbeddingClient(server.url, model="my-served-name") as client:
        with pytest.warns(UserWarning, match="not in the catalog"):
            client.embed_queries(["q"])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            client.embed_queries(["q2"])
    assert [r["inputs"] for r in server.requests] == [["q"], ["q2"]]


def test_catalog_model_chooses_prompts_for_a_served_alias(server):
    with EmbeddingClient(server.url, model="embed", catalog_model="e5-mistral-7b-instruct") as client:
        client.embed_queries(["q"])
    assert server.requests[0]["inputs"][0] == get_model("e5-mistral-7b-instruct").format_query("q")


def test_retries_429_then_succeeds():
    with FakeEmbeddingServer(script=["429", "429"]) as srv, EmbeddingClient(srv.url, model="m", **FAST) as client:
        vectors = client.embed(["a"])
    assert srv.faults == ["429", "429", "ok"]
    np.testing.assert_allclose(vectors, expected(["a"]), rtol=1e-6)


def test_503_every_time_exhausts_retries():
    with FakeEmbeddingServer(script=["503"] * 10) as srv, \
            EmbeddingClient(srv.url, model="m", retries=3, **FAST) as client:
        with pytest.raises(RetriesExhaustedError, match="after 4 attempts.*503") as info:
            client.embed(["a"])
    assert info.value.status == 503 and len(srv.faults) == 4


def test_slow_response_times_out_then_retry_succeeds():
    with FakeEmbeddingServer(script=["slow"], slow_s=3.0) as srv, \
            EmbeddingClient(srv.url, model="m", timeout=0.8, **FAST) as client:
        vectors = client.embed(["a"])
    assert srv.faults == ["slow", "ok"] and vectors.shape == (1, 8)


def test_timeouts_exhausted_name_the_timeout():
    with FakeEmbeddingServer(script=["slow"] * 3, slow_s=2.0) as srv, \
            EmbeddingClient(srv.url, model="m", timeout=0.2, retries=2, **FAST) as client:
        with pytest.raises(RetriesExhaustedError, match="Timeout") as info:
            client.embed(["a"])
    assert info.value.status is None and info.value.cause is not None


def test_dropped_connection_is_retried():
    with FakeEmbeddingServer(script=["close", "500"]) as srv, EmbeddingClient(srv.url, model="m", **FAST) as client:
        assert client.embed(["a"]).shape == (1, 8)
    assert srv.faults == ["close", "500", "ok"]


def test_async_retries_and_exhaustion():
    async def go(srv):
        async with AsyncEmbeddingClient(srv.url, model="m", retries=2, **FAST) as client:
            return await client.embed(["a"])

    with FakeEmbeddingServer(script=["429", "503"]) as srv:
        assert asyncio.run(go(srv)).shape == (1, 8)
    with FakeEmbeddingServer(script=["503"] * 5) as srv:
        with pytest.raises(RetriesExhaustedError):
            asyncio.run(go(srv))
        assert len(srv.faults) == 3


def test_400_carries_vllms_message_and_is_not_retried():
    with FakeEmbeddingServer(max_tokens=3) as srv, EmbeddingClient(srv.url, model="m", **FAST) as client:
        with pytest.raises(BadRequestError, match="maximum context length is 3 tokens") as info:
            client.embed(["one two three four"])
    assert info.value.status == 400 and len(srv.requests) == 1


def test_401_says_what_to_do_and_hides_the_key():
    with FakeEmbeddingServer(api_key="right-key") as srv, \
            EmbeddingClient(srv.url, model="m", api_key="wrong-key-123") as client:
        with pytest.raises(AuthenticationError, match="API key is missing or wrong") as info:
            client.embed(["a"])
        assert "wrong-key-123" not in str(info.value) and "wrong-key-123" not in repr(client)
        assert "api_key=***" in repr(client)
    with FakeEmbeddingServer(api_key="right-key") as srv, \
            EmbeddingClient(srv.url, model="m", api_key="right-key") as client:
        assert client.embed(["a"]).shape == (1, 8)


def test_health_models_and_metrics(server):
    with EmbeddingClient(server.url + "/v1/") as client:
        assert client.health() is True
        assert client.models() == ["fake-model"]
        assert "vllm:e2e_request_latency_seconds_bucket" in client.metrics_text()


def test_nothing_listening_health_false_and_embed_says_so():
    with FakeEmbeddingServer() as srv:
        url = srv.url
    with EmbeddingClient(url, model="m", timeout=1, retries=1, **FAST) as client:
        assert client.health() is False
        with pytest.raises(RetriesExhaustedError, match="nothing answered at that address"):
            client.embed(["a"])


@pytest.mark.parametrize("kwargs,match", [
    pytest.param({"base_url": "localhost:8000"}, "not an HTTP URL", id="url-without-scheme"),
    pytest.param({"base_url": "http://x", "max_batch_size": 0}, "at least 1", id="batch-size-zero"),
])
def test_bad_configuration_is_refused(kwargs, match):
    with pytest.raises(InvalidSpecError, match=match):
        EmbeddingClient(**kwargs)


def test_bad_inputs_are_refused_before_sending(server):
    with EmbeddingClient(server.url, model="m") as client:
        with pytest.raises(InvalidSpecError, match="not a string"):
            client.embed(["ok", 3])
        with pytest.raises(InvalidSpecError, match="encoding_format"):
            client.embed(["ok"], encoding_format="int8")
        assert client.embed("one text").shape == (1, 8)
        assert client.embed([]).shape == (0, 0)
    assert len(server.requests) == 1


def test_404_names_the_model_hint():
    with FakeEmbeddingServer() as srv, EmbeddingClient(srv.url + "/nope", model="m") as client:
        with pytest.raises(EmbeddingAPIError, match="404.*served model name"):
            client.embed(["a"])


@pytest.mark.parametrize("given", ["http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"])
def test_base_url_forms(given):
    assert api.root_url(given) == "http://h:1"


def test_retry_delay_grows_caps_and_honours_retry_after():
    assert 0.25 <= api.retry_delay(0, 0.5, 8.0) <= 0.5
    assert 1.0 <= api.retry_delay(2, 0.5, 8.0) <= 2.0
    assert 4.0 <= api.retry_delay(10, 0.5, 8.0) <= 8.0
    assert api.retry_delay(0, 0.5, 8.0, retry_after="3") == 3.0
    assert api.retry_delay(0, 0.5, 8.0, retry_after="600") == 8.0


def test_error_messages_from_vllm_and_openai_bodies():
    assert api.error_message({"object": "error", "message": "too long", "code": 400}) == "too long"
    assert api.error_message({"error": {"message": "bad key", "type": "invalid"}}) == "bad key"
    assert api.error_message("") == "no details in the answer"


def test_malformed_answer_is_an_api_error():
    with pytest.raises(EmbeddingAPIError, match="not an embeddings response"):
        api.parse_embeddings({"data": [{"index": 0}]}, 1)
    with pytest.raises(EmbeddingAPIError, match="asked for 2 embeddings, got 1"):
        api.parse_embeddings({"data": [{"index": 0, "embedding": [1.0]}]}, 2)


@pytest.mark.parametrize("payload", [
    pytest.param("<html>proxy error</html>", id="not-json"),
    pytest.param({"data": ["not-an-item"]}, id="items-not-objects"),
    pytest.param({"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [1.0]}]},
                 id="ragged-dimensions"),
])
def test_unusable_success_answers_are_api_errors(payload):
    with pytest.raises(EmbeddingAPIError, match="not an embeddings response"):
        api.parse_embeddings(payload, 2 if isinstance(payload, dict) and len(payload["data"]) == 2 else 1)


def test_async_failure_of_one_batch_cancels_the_others():
    # one batch is refused (400) while the others hang: the call raises at once and leaves no request running
    import json

    import httpx

    async def handler(request):
        if json.loads(request.content)["input"] == ["bad"]:
            return httpx.Response(400, json={"object": "error", "message": "refused"})
        await asyncio.Event().wait()  # never answers

    async def go():
        client = AsyncEmbeddingClient("http://fake", model="m", max_batch_size=1, max_concurrency=4)
        client._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with client:
            with pytest.raises(BadRequestError, match="refused"):
                await client.embed(["a", "bad", "b", "c"])
            await asyncio.sleep(0)  # let the cancelled batches unwind
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(go()) == []
