"""The aiohttp app in-process with a fake encoder: vLLM's surface (auth, errors, ids), bounds (body size, gzip,
inputs), fairness between requests, cancellation of abandoned work, and an event loop that stays free.

Expectations come from ``surface`` (the vLLM version the server follows) and recorded vLLM bodies."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import threading
import time
import zlib

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tke_playbook.errors import InvalidSpecError
from tke_playbook.localserver import surface
from tke_playbook.localserver.app import METRICS_KEY, ServerConfig, bind_socket, build_app, serve
from tke_playbook.localserver.encoder import ModelFacts, NoChatTemplate

from . import vllm_examples as vllm

KEY = "sekret-key"
FAKE_TEMPLATE = "{% for m in messages %}<{{ m.role }}> {{ m.content }} {% endfor %}"


class FakeEncoder:
    """Token id = word length; embedding = (sum of ids, count), not normalised; ``delay`` seconds per batch;
    'boom' fails; ``tokenize_gate`` (an Event) holds tokenising until set."""

    def __init__(self, delay: float = 0.0, chat_template: bool = True, tokenize_gate: threading.Event | None = None):
        self.delay = delay
        self.facts = ModelFacts(path="/fake", dim=2, max_model_len=16, vocab_size=1000, normalize=False,
                                has_chat_template=chat_template)
        self.threads = set()
        self.encoded = 0
        self.tokenize_gate = tokenize_gate
        self.tokenizing = threading.Event()
        self.gate_timed_out = False

    def tokenize(self, texts, *, add_special_tokens=True, max_length=None, truncation_side="right"):
        self.tokenizing.set()
        if self.tokenize_gate is not None and not self.tokenize_gate.wait(5):
            self.gate_timed_out = True  # nobody opened the gate: the event loop was blocked in here
        if "tokenizer-bug" in texts:
            raise RuntimeError("tokenizer exploded")
        return [[len(w) for w in t.split()] or [1] for t in texts]

    def chat_template(self, requested=None, tools=None):
        if requested is None and not self.facts.has_chat_template:
            raise NoChatTemplate("no chat template")
        return requested or FAKE_TEMPLATE

    special_tokens = {"bos_token": "<s>"}
    special_token_count = 0

    def encode_ids(self, ids):
        self.threads.add(threading.current_thread().name)
        if any(row == [4] and self.delay < 0 for row in ids):
            raise RuntimeError("kernel crashed")
        time.sleep(abs(self.delay))
        self.encoded += len(ids)
        return np.array([[sum(r), len(r)] for r in ids], dtype=np.float32)


def expected(text: str) -> list[float]:
    words = text.split()
    return [float(sum(len(w) for w in words)), float(len(words))]


async def call_app(encoder, config, requests):
    server = TestServer(build_app(encoder, config))
    await server.start_server()
    try:
        async with ClientSession() as session:
            async def one(body):
                async with session.post(server.make_url("/v1/embeddings"), json=body) as response:
                    return response.status, await response.json(), response.headers
            results = await asyncio.gather(*(one(b) for b in requests))
            async with session.get(server.make_url("/health")) as health:
                healthy = health.status
            after = (await one({"input": "four four four"}))[:2]
        return [r[:2] for r in results], healthy, after, [r[2] for r in results]
    finally:
        await server.close()


async def with_server(encoder, config, work):
    """Run ``work(server, session)`` against the app on a TestServer (handler cancellation on, as in serve())."""
    server = TestServer(build_app(encoder, config))
    await server.start_server()
    try:
        async with ClientSession() as session:
            return await work(server, session)
    finally:
        await server.close()


def run(encoder, config, work):
    return asyncio.run(with_server(encoder, config, work))


async def post(session, url, data=None, *, json_body=None, headers=None):
    async with session.post(url, data=data, json=json_body, headers=headers) as response:
        text = await response.read()
        try:
            body = json.loads(text)
        except ValueError:
            body = text
        return response.status, body, response.headers


# --- overload, faults, workers, config ------------------------------------------------------------------------


def test_overload_answers_503_and_every_accepted_request_is_answered_right():
    requests = [{"input": [f"{'w' * (1 + i % 9)} {'v' * (i % 5 + 1)}"]} for i in range(120)]
    config = ServerConfig("fake", max_batch=2, max_wait_ms=0, max_queue=6)
    results, healthy, after, all_headers = asyncio.run(call_app(FakeEncoder(delay=0.01), config, requests))
    statuses = [status for status, _ in results]
    assert set(statuses) == {200, 503}
    for (status, body), headers, request in zip(results, all_headers, requests):
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert vllm.error_shape(body) and body["error"]["code"] == 503
            assert "overloaded" in body["error"]["message"]
        else:
            assert body["id"].startswith("embd-")
            assert body["data"][0]["embedding"] == expected(request["input"][0])
    assert healthy == 200 and after == (200, after[1]) and after[1]["data"][0]["embedding"] == [12, 3]


def test_a_failing_batch_answers_500_and_the_server_carries_on():
    config = ServerConfig("fake", max_batch=1, max_wait_ms=0)
    results, healthy, after, _ = asyncio.run(call_app(FakeEncoder(delay=-0.001), config,
                                                      [{"input": "four"}, {"input": "ok fine"},
                                                       {"input": "tokenizer-bug"}]))
    (failed, error), (ok, body), (bug, bug_error) = results
    assert failed == 500 and error["error"]["code"] == 500 and "kernel crashed" in error["error"]["message"]
    assert ok == 200 and body["data"][0]["embedding"] == [6, 2]
    assert bug == 500 and vllm.error_shape(bug_error)
    assert "RuntimeError: tokenizer exploded" in bug_error["error"]["message"]
    assert healthy == 200


def test_two_workers_encode_side_by_side():
    encoder = FakeEncoder(delay=0.005)
    config = ServerConfig("fake", max_batch=4, max_wait_ms=0, workers=2)
    results, _, _, _ = asyncio.run(call_app(encoder, config, [{"input": f"w{i}"} for i in range(64)]))
    assert all(status == 200 for status, _ in results)
    assert {name for name in encoder.threads if name.startswith("encoder")} == {"encoder_0", "encoder_1"}


@pytest.mark.parametrize("kwargs", [
    pytest.param({"served_model_name": ""}, id="empty-name"),
    pytest.param({"served_model_name": "m", "max_batch": 0}, id="zero-batch"),
    pytest.param({"served_model_name": "m", "workers": 0}, id="zero-workers"),
    pytest.param({"served_model_name": "m", "workers": 10 ** 30}, id="absurd-workers"),
    pytest.param({"served_model_name": "m", "max_wait_ms": math.nan}, id="nan-wait"),
    pytest.param({"served_model_name": "m", "max_wait_ms": math.inf}, id="inf-wait"),
    pytest.param({"served_model_name": "m", "max_inputs": 0}, id="zero-inputs"),
    pytest.param({"served_model_name": "m", "max_body_bytes": 10}, id="tiny-body"),
])
def test_bad_server_config_is_refused(kwargs):
    with pytest.raises(InvalidSpecError):
        ServerConfig(**kwargs)


def test_stopping_answers_the_requests_already_taken_then_refuses_new_ones():
    """A clean shutdown: requests queued or encoding when the stop comes are answered; then the port closes."""
    encoder = FakeEncoder(delay=0.2)
    app = build_app(encoder, ServerConfig("fake", max_batch=2, max_wait_ms=0))

    async def main():
        sock = bind_socket("127.0.0.1", 0)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/embeddings"
        stop, ready = asyncio.Event(), asyncio.Event()
        server = asyncio.ensure_future(serve(app, sock, stop=stop, on_ready=lambda port: ready.set()))
        await ready.wait()
        async with ClientSession() as session:
            async def one(i):
                async with session.post(url, json={"input": "w" * (i + 1)}) as response:
                    return response.status, (await response.json())["data"][0]["embedding"]

            calls = [asyncio.ensure_future(one(i)) for i in range(6)]
            metrics = app[METRICS_KEY]
            while metrics.waiting + metrics.running < 6:  # all six are inside the server
                await asyncio.sleep(0.01)
            stop.set()
            answers = await asyncio.gather(*calls)
            await asyncio.wait_for(server, 10)
            try:
                async with session.post(url, json={"input": "late"}) as late:
                    refused = late.status
            except OSError as exc:  # aiohttp.ClientConnectorError: nothing listens any more
                refused = type(exc).__name__
        return answers, refused

    answers, refused = asyncio.run(main())
    assert answers == [(200, [i + 1, 1]) for i in range(6)]
    assert refused == "ClientConnectorError"


# --- vLLM's surface over HTTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/models", "/v2/embed", "/v2/rerank", "/inference/v1/x",
                                  "/cohere/embed", "/v1"])
def test_every_guarded_prefix_needs_the_key(path):
    assert path.startswith(surface.AUTH_PREFIXES)

    async def work(server, session):
        async with session.post(server.make_url(path), json={"input": "x"}) as response:
            return response.status, await response.json()

    status, body = run(FakeEncoder(), ServerConfig("fake", api_key=KEY), work)
    assert (status, body) == (401, vllm.UNAUTHORIZED)


@pytest.mark.parametrize("header, status", [
    pytest.param(f"Bearer {KEY}", 200, id="bearer"),
    pytest.param(f"bearer {KEY}", 200, id="lower-case-bearer"),
    pytest.param(f"BEARER {KEY}", 200, id="upper-case-bearer"),
    pytest.param(f"Basic {KEY}", 401, id="other-scheme"),
    pytest.param(KEY, 401, id="no-scheme"),
    pytest.param(f"Bearer {KEY}x", 401, id="wrong-key"),
    pytest.param("Bearer ключ", 401, id="non-latin1"),
    pytest.param(b"Bearer \xff\xfe\xfa", 401, id="undecodable-bytes"),
])
def test_the_key_check_follows_vllm(header, status):
    async def work(server, session):
        raw = header if isinstance(header, bytes) else header.encode("utf-8")
        reader, writer = await asyncio.open_connection(server.host, server.port)
        body = b'{"input": "four"}'
        writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: " + raw + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
                     b"Connection: close\r\n\r\n" + body)
        answer = await reader.read()
        writer.close()
        return int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1]

    got, body = run(FakeEncoder(), ServerConfig("fake", api_key=KEY), work)
    assert got == status
    if status == 401:
        assert json.loads(body) == vllm.UNAUTHORIZED


@pytest.mark.parametrize("path", surface.OPEN_PATHS)
def test_open_paths_need_no_key(path):
    async def work(server, session):
        async with session.get(server.make_url(path)) as response:
            return response.status, await response.read()

    status, body = run(FakeEncoder(), ServerConfig("fake", api_key=KEY), work)
    assert status == 200
    if path == "/version":
        assert json.loads(body) == vllm.VERSION_033 == {"version": surface.VLLM_VERSION}


@pytest.mark.parametrize("headers", [
    pytest.param({"Content-Type": "text/plain"}, id="text-plain"),
    pytest.param({"Content-Type": "application/x-www-form-urlencoded"}, id="form"),
    pytest.param({"Content-Type": ""}, id="empty"),
])
def test_a_body_that_is_not_declared_json_gets_400(headers):
    async def work(server, session):
        return await post(session, server.make_url("/v1/embeddings"), b'{"input": "four"}', headers=headers)

    status, body, _ = run(FakeEncoder(), ServerConfig("fake"), work)
    assert status == 400 and vllm.same_shape(body, vllm.UNSUPPORTED_MEDIA_TYPE)
    assert body["error"]["type"] == surface.VALIDATION_ERROR_TYPE
    assert surface.UNSUPPORTED_MEDIA_TYPE in body["error"]["message"]


@pytest.mark.parametrize("raw, phrase", [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-nesting"),
    pytest.param(b'{"input": "\\ud800"}', "not valid Unicode", id="lone-surrogate"),
    pytest.param(b'{"input": "x", "encoding_format": null}', "encoding_format", id="encoding-null"),
    pytest.param(b'{"input": "x", "encoding_format": []}', "encoding_format", id="encoding-list"),
    pytest.param(b'{oops', "JSON decode error", id="bad-json"),
])
def test_hostile_bodies_get_400_not_500(raw, phrase):
    async def work(server, session):
        return await post(session, server.make_url("/v1/embeddings"), raw,
                          headers={"Content-Type": "application/json"})

    status, body, _ = run(FakeEncoder(), ServerConfig("fake"), work)
    assert status == 400 and vllm.error_shape(body) and phrase in body["error"]["message"]


def test_the_response_id_carries_the_request_id_header_or_field():
    async def work(server, session):
        url = server.make_url("/v1/embeddings")
        header = await post(session, url, json_body={"input": "four", "request_id": "body"},
                            headers={"X-Request-Id": "from-header"})
        field = await post(session, url, json_body={"input": "four", "request_id": "from-body"})
        none = await post(session, url, json_body={"input": "four"})
        return header[1]["id"], field[1]["id"], none[1]

    header_id, field_id, plain = run(FakeEncoder(), ServerConfig("fake"), work)
    assert (header_id, field_id) == ("embd-from-header", "embd-from-body")
    assert vllm.same_shape(plain, vllm.EMBEDDING_RESPONSE) and plain["id"].startswith("embd-")


def test_use_activation_dimensions_and_bytes_over_http():
    async def work(server, session):
        url = server.make_url("/v1/embeddings")
        normalised = await post(session, url, json_body={"input": "abc defg", "use_activation": True})
        legacy = await post(session, url, json_body={"input": "abc defg", "normalize": True})
        raw = await post(session, url, json_body={"input": "abc defg", "encoding_format": "bytes"})
        return normalised[1], legacy[1], raw

    normalised, legacy, (status, body, headers) = run(FakeEncoder(), ServerConfig("fake"), work)
    assert np.allclose(normalised["data"][0]["embedding"], np.array([7, 2]) / np.hypot(7, 2))
    assert legacy["data"] == normalised["data"]  # 0.10.1's `normalize` is the same switch
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert vllm.same_shape(json.loads(headers["metadata"]), {**vllm.BYTES_METADATA, "data": [
        {**vllm.BYTES_METADATA["data"][0], "shape": [2]}]})
    assert np.array_equal(np.frombuffer(body, dtype=np.float32), [7, 2])


def test_chat_requests_use_the_template_or_get_a_clear_400():
    chat = {"messages": [{"role": "user", "content": "hello there"}]}

    async def work(server, session):
        return await post(session, server.make_url("/v1/embeddings"), json_body=chat)

    status, body, _ = run(FakeEncoder(), ServerConfig("fake"), work)
    assert status == 200 and body["data"][0]["embedding"] == expected("<user> hello there")
    status, body, _ = run(FakeEncoder(chat_template=False), ServerConfig("fake"), work)
    assert status == 400 and body["error"]["type"] == surface.BAD_REQUEST_TYPE
    assert "chat template" in body["error"]["message"] and "`input`" in body["error"]["message"]


# --- bounds ---------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_the_limit_without_reading_it_all():
    config = ServerConfig("fake", max_body_bytes=4096)

    async def work(server, session):
        url = server.make_url("/v1/embeddings")
        declared = await post(session, url, json.dumps({"input": ["word"] * 2000}).encode(),
                              headers={"Content-Type": "application/json"})

        async def stream():  # no Content-Length: the limit applies while reading
            yield b'{"input": ['
            for _ in range(10_000):
                yield b'"word",'
            yield b'"end"]}'
        chunked = await post(session, url, stream(), headers={"Content-Type": "application/json"})
        return declared, chunked

    for status, body, _ in run(FakeEncoder(), config, work):
        assert status == 400 and vllm.same_shape(body, vllm.UNTRUSTED_CHAT_TEMPLATE)
        assert "limit of 4096 bytes" in body["error"]["message"]


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies_are_decoded_within_the_limit(encoding, compress):
    config = ServerConfig("fake", max_body_bytes=4096)

    async def work(server, session):
        url = server.make_url("/v1/embeddings")
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        small = await post(session, url, compress(b'{"input": "four four"}'), headers=headers)
        bomb = await post(session, url, compress(b'{"input": "' + b"a" * 50_000_000 + b'"}'), headers=headers)
        broken = await post(session, url, b"\x1f\x8b\x08\x00 this is not gzip at all", headers=headers)
        return small, bomb, broken

    small, bomb, broken = run(FakeEncoder(), config, work)
    assert small[0] == 200 and small[1]["data"][0]["embedding"] == [8, 2]
    # Refused for the limit as it decompresses (or, when aiohttp's bounded decoding gives up first, as unreadable)
    assert bomb[0] == 400 and vllm.error_shape(bomb[1])
    assert "limit of 4096 bytes" in bomb[1]["error"]["message"] or "could not be read" in bomb[1]["error"]["message"]
    assert broken[0] == 400 and vllm.error_shape(broken[1])
    assert "could not be read" in broken[1]["error"]["message"]


def test_inputs_and_tokens_per_request_are_capped_with_the_limit():
    config = ServerConfig("fake", max_inputs=5, max_tokens=6)

    async def work(server, session):
        url = server.make_url("/v1/embeddings")
        many = await post(session, url, json_body={"input": ["a"] * 6})
        long = await post(session, url, json_body={"input": ["a b c", "d e f g"]})
        fine = await post(session, url, json_body={"input": ["a b c", "d e f"]})
        return many, long, fine

    many, long, fine = run(FakeEncoder(), config, work)
    assert many[0] == 400 and "at most 5 inputs per request" in many[1]["error"]["message"]
    assert long[0] == 400 and "at most 6 tokens per request; the request has 7" in long[1]["error"]["message"]
    assert fine[0] == 200


# --- fairness, cancellation, a free event loop ----------------------------------------------------------------


def test_a_large_request_does_not_hold_back_small_ones():
    """Small requests sent after a 300-input request finish before it: the batcher shares each batch."""
    encoder = FakeEncoder(delay=0.003)
    config = ServerConfig("fake", max_batch=8, max_wait_ms=0, max_queue=4096)
    finished = []

    async def work(server, session):
        url = server.make_url("/v1/embeddings")

        async def one(name, body):
            status, answer, _ = await post(session, url, json_body=body)
            finished.append(name)
            return status, answer

        large = asyncio.ensure_future(one("large", {"input": [f"w{i % 7} x" for i in range(300)]}))
        while encoder.encoded == 0:  # the large request is being encoded
            await asyncio.sleep(0.001)
        small = [one(f"small{i}", {"input": f"{'s' * (i + 1)} t"}) for i in range(10)]
        return await asyncio.gather(large, *small)

    results = run(encoder, config, work)
    assert all(status == 200 for status, _ in results)
    assert [r["data"][0]["embedding"] for _, r in results[1:]] == [expected(f"{'s' * (i + 1)} t") for i in range(10)]
    assert finished[-1] == "large"
    assert len(results[0][1]["data"]) == 300


def test_a_client_that_leaves_cancels_its_work_and_is_counted_as_aborted():
    encoder = FakeEncoder(delay=0.01)
    config = ServerConfig("fake", max_batch=2, max_wait_ms=0)
    app_metrics = {}

    async def work(server, session):
        url = server.make_url("/v1/embeddings")
        app_metrics["m"] = server.app[METRICS_KEY]
        body = json.dumps({"input": [f"w{i}" for i in range(200)]}).encode()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        while encoder.encoded == 0:  # its rows are being encoded
            await asyncio.sleep(0.001)
        writer.close()  # the client leaves
        deadline = time.monotonic() + 10
        while app_metrics["m"].aborted == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        after = await post(session, url, json_body={"input": "four"})
        return after, app_metrics["m"].render()

    (status, body, _), text = run(encoder, config, work)
    metrics = app_metrics["m"]
    assert metrics.aborted == 1 and metrics.success == 1 and status == 200
    assert encoder.encoded < 200  # the abandoned request's remaining rows were dropped
    assert 'vllm:request_success_total{engine="0",finished_reason="abort",model_name="fake"} 1.0' in text
    assert metrics.waiting == 0 and metrics.running == 0


class SteppedEncoder(FakeEncoder):
    """Encodes a step row by row, calling the checkpoint before each row (the real encoder: before each chunk and
    layer); after ``hold_after`` rows it waits for ``hold``. ``rows_done`` counts the rows it encoded."""

    def __init__(self, hold_after: int):
        super().__init__()
        self.hold, self.hold_after, self.rows_done = threading.Event(), hold_after, 0

    def encode_ids(self, ids, checkpoint=None):
        for _ in ids:
            if checkpoint is not None:
                checkpoint()
            self.rows_done += 1
            if self.rows_done > self.hold_after:
                self.hold.wait(10)
        return np.array([[sum(r), len(r)] for r in ids], dtype=np.float32)


def test_a_client_that_leaves_mid_step_stops_the_step_and_metrics_show_the_work_was_abandoned():
    """Issue 20: an interrupted load generator left ~17 s of batches behind. As vLLM aborts a request on
    disconnect, the step already running for it stops at its next checkpoint; /metrics counts the rows dropped
    (tke_playbook:abandoned_rows_total) and the next small request is answered."""
    encoder = SteppedEncoder(hold_after=3)
    config = ServerConfig("fake", max_batch=64, max_wait_ms=0)

    async def work(server, session):
        metrics = server.app[METRICS_KEY]
        body = json.dumps({"input": [f"w{i}" for i in range(200)]}).encode()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        while encoder.rows_done <= 3:  # its first step is running, held after three rows
            await asyncio.sleep(0.001)
        writer.close()  # the client leaves
        deadline = time.monotonic() + 30
        while metrics.aborted == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        encoder.hold.set()
        after = await post(session, server.make_url("/v1/embeddings"), json_body={"input": "four"})
        while metrics.abandoned_rows < 200 and time.monotonic() < deadline:  # the stopped step is counted
            await asyncio.sleep(0.01)
        return after, metrics.render()

    (status, body, _), text = run(encoder, config, work)
    assert status == 200 and body["data"][0]["embedding"] == expected("four")
    assert encoder.rows_done == 4 + 1  # four rows of the abandoned 64-row step, then the small request's row
    assert 'tke_playbook:abandoned_rows_total{engine="0",model_name="fake"} 200.0' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="abort",model_name="fake"} 1.0' in text


def test_health_answers_while_a_request_is_being_tokenised():
    """Tokenising runs in a thread: /health answers while it is stuck, and the client (on the same event loop)
    then opens the gate. Tokenising in the event loop would block both until the gate times out."""
    gate = threading.Event()
    encoder = FakeEncoder(tokenize_gate=gate)

    async def work(server, session):
        inputs = {"input": [f"sentence number {i}" for i in range(1000)]}  # over INLINE_PREPARE_BYTES
        big = asyncio.ensure_future(post(session, server.make_url("/v1/embeddings"), json_body=inputs))
        while not encoder.tokenizing.is_set():
            await asyncio.sleep(0.001)
        async with session.get(server.make_url("/health")) as health:
            during = (health.status, big.done())
        gate.set()
        return during, (await big)[0]

    (health_status, big_done), big_status = run(encoder, ServerConfig("fake"), work)
    assert health_status == 200 and not big_done and big_status == 200
    assert not encoder.gate_timed_out


# --- chat templates: vLLM's trust rule, bounded rendering, a free event loop -------------------------------------

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}
# Three nested loops of range(100000) (Jinja's sandbox allows each): hours of CPU in one ~200-byte body.
NESTED_LOOPS = ("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
                "{% endfor %}{% endfor %}{% endfor %}x")
MEMORY_HOG = "{{ 'ab ' * 400000000 }}"  # 1.2 GB of text from 24 bytes


@pytest.mark.parametrize("body", [
    pytest.param({**CHAT, "chat_template": FAKE_TEMPLATE}, id="top-level"),
    pytest.param({**CHAT, "chat_template_kwargs": {"chat_template": NESTED_LOOPS}}, id="in-chat-template-kwargs"),
])
def test_a_request_template_is_refused_unless_trusted_as_in_vllm(body):
    async def work(server, session):
        return await post(session, server.make_url("/v1/embeddings"), json_body=body)

    status, error, _ = run(FakeEncoder(), ServerConfig("fake"), work)
    assert status == 400 and vllm.same_shape(error, vllm.UNTRUSTED_CHAT_TEMPLATE)
    assert error["error"] == vllm.UNTRUSTED_CHAT_TEMPLATE["error"]


def test_a_trusted_request_template_is_rendered():
    body = {**CHAT, "chat_template": "{% for m in messages %}[{{ m.content }}]{% endfor %}"}

    async def work(server, session):
        return await post(session, server.make_url("/v1/embeddings"), json_body=body)

    status, answer, _ = run(FakeEncoder(), ServerConfig("fake", trust_request_chat_template=True), work)
    assert status == 200 and answer["data"][0]["embedding"] == expected("[hello there]")


@pytest.mark.parametrize("template, phrase", [
    pytest.param(NESTED_LOOPS, "timed out", id="endless-loops"),
    pytest.param(MEMORY_HOG, "", id="memory"),
])
def test_a_hostile_template_is_bounded_while_health_answers(template, phrase):
    """The render runs in a worker process that is stopped at the time bound (or refused at the memory/output
    bound): /health answers throughout, the client gets a 400, and chat requests work afterwards."""
    config = ServerConfig("fake", trust_request_chat_template=True, chat_template_timeout_s=2.0)

    async def work(server, session):
        url = server.make_url("/v1/embeddings")
        hostile = asyncio.ensure_future(post(session, url, json_body={
            **CHAT, "chat_template_kwargs": {"chat_template": template}}))
        probes = []
        while not hostile.done():
            start = time.perf_counter()
            async with session.get(server.make_url("/health")) as health:
                probes.append((health.status, time.perf_counter() - start))
            await asyncio.sleep(0.1)
        after = await post(session, url, json_body=CHAT)
        return await hostile, probes, after

    (status, error, _), probes, after = run(FakeEncoder(), config, work)
    assert status == 400 and vllm.same_shape(error, vllm.UNTRUSTED_CHAT_TEMPLATE) and phrase in error["error"]["message"]
    assert probes and all(code == 200 and took < 1.0 for code, took in probes)
    assert after[0] == 200 and after[1]["data"][0]["embedding"] == expected("<user> hello there")


def test_a_template_error_is_the_clients_400():
    body = {**CHAT, "chat_template": "{{ raise_exception('roles must alternate') }}"}

    async def work(server, session):
        return await post(session, server.make_url("/v1/embeddings"), json_body=body)

    status, error, _ = run(FakeEncoder(), ServerConfig("fake", trust_request_chat_template=True), work)
    assert status == 400 and error["error"]["type"] == surface.BAD_REQUEST_TYPE
    assert "roles must alternate" in error["error"]["message"]


def test_slow_header_and_slow_body_connections_are_closed():
    """A client trickling its headers is disconnected after the header timeout; one trickling its body gets a
    408 and is disconnected. (Production servers bound both; without it 300 such sockets stayed open.)"""
    app = build_app(FakeEncoder(), ServerConfig("fake", header_timeout_s=0.5, body_timeout_s=0.5))

    async def trickle(port, head: bytes, drip: bytes):
        """Send ``head``, then ``drip`` every 0.1 s; what came back and when the server closed the connection."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        start, answer = time.monotonic(), b""
        try:
            while time.monotonic() - start < 15:
                writer.write(drip)
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(65536), 0.1)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    return answer, time.monotonic() - start
                answer += data
        except (ConnectionError, OSError):
            return answer, time.monotonic() - start
        finally:
            writer.close()
        return answer, None  # still open

    async def main():
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        stop, ready = asyncio.Event(), asyncio.Event()
        server = asyncio.ensure_future(serve(app, sock, stop=stop, on_ready=lambda port: ready.set()))
        await ready.wait()
        head = await trickle(port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n", b"X-a: b\r\n")
        body = await trickle(port, b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                   b"\r\nContent-Length: 100000\r\n\r\n{", b" ")
        stop.set()
        await asyncio.wait_for(server, 20)
        return head, body

    (head_answer, head_closed), (body_answer, body_closed) = asyncio.run(main())
    assert head_answer == b"" and head_closed is not None and head_closed < 5
    assert body_answer.startswith(b"HTTP/1.1 408") and body_closed is not None and body_closed < 5
