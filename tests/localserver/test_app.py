"""The aiohttp app in-process with a fake encoder: overload answers 503 and loses nothing; faults answer 500."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tke_playbook.errors import InvalidSpecError
from tke_playbook.localserver.app import METRICS_KEY, ServerConfig, bind_socket, build_app, serve
from tke_playbook.localserver.encoder import ModelFacts


class FakeEncoder:
    """Token id = word length; embedding = (sum of ids, count); ``delay`` seconds per batch; 'boom' fails."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.facts = ModelFacts(path="/fake", dim=2, max_model_len=16, vocab_size=1000)
        self.threads = set()

    def tokenize(self, texts, *, add_special_tokens=True, max_length=None):
        if "tokenizer-bug" in texts:
            raise RuntimeError("tokenizer exploded")
        return [[len(w) for w in t.split()] or [1] for t in texts]

    def encode_ids(self, ids):
        self.threads.add(threading.get_ident())
        if any(row == [4] and self.delay < 0 for row in ids):
            raise RuntimeError("kernel crashed")
        time.sleep(abs(self.delay))
        return np.array([[sum(r), len(r)] for r in ids], dtype=np.float32)


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


def test_overload_answers_503_and_every_accepted_request_is_answered_right():
    requests = [{"input": [f"{'w' * (1 + i % 9)} {'v' * (i % 5 + 1)}"]} for i in range(120)]
    config = ServerConfig("fake", max_batch=2, max_wait_ms=0, max_queue=6)
    results, healthy, after, all_headers = asyncio.run(call_app(FakeEncoder(delay=0.01), config, requests))
    statuses = [status for status, _ in results]
    assert set(statuses) == {200, 503}
    for (status, body), headers, request in zip(results, all_headers, requests):
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert body["object"] == "error" and body["code"] == 503 and "overloaded" in body["message"]
        else:
            assert body["id"].startswith("embd-")
            words = request["input"][0].split()
            assert body["data"][0]["embedding"] == [sum(len(w) for w in words), len(words)]
    assert healthy == 200 and after == (200, after[1]) and after[1]["data"][0]["embedding"] == [12, 3]


def test_a_failing_batch_answers_500_and_the_server_carries_on():
    config = ServerConfig("fake", max_batch=1, max_wait_ms=0)
    results, healthy, after, _ = asyncio.run(call_app(FakeEncoder(delay=-0.001), config,
                                                      [{"input": "four"}, {"input": "ok fine"},
                                                       {"input": "tokenizer-bug"}]))
    (failed, error), (ok, body), (bug, bug_error) = results
    assert failed == 500 and error["object"] == "error" and "kernel crashed" in error["message"]
    assert ok == 200 and body["data"][0]["embedding"] == [6, 2]
    assert bug == 500 and bug_error["object"] == "error" and bug_error["code"] == 500
    assert "RuntimeError: tokenizer exploded" in bug_error["message"]
    assert healthy == 200


def test_two_workers_encode_side_by_side():
    encoder = FakeEncoder(delay=0.005)
    config = ServerConfig("fake", max_batch=4, max_wait_ms=0, workers=2)
    results, _, _, _ = asyncio.run(call_app(encoder, config, [{"input": f"w{i}"} for i in range(64)]))
    assert all(status == 200 for status, _ in results)
    assert len(encoder.threads) == 2


@pytest.mark.parametrize("kwargs", [
    pytest.param({"served_model_name": ""}, id="empty-name"),
    pytest.param({"served_model_name": "m", "max_batch": 0}, id="zero-batch"),
    pytest.param({"served_model_name": "m", "workers": 0}, id="zero-workers"),
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
