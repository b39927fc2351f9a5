"""The aiohttp app in-process with a fake encoder: overload answers 503 and loses nothing; faults answer 500."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from tke_playbook.localserver.app import ServerConfig, build_app
from tke_playbook.localserver.encoder import ModelFacts


class FakeEncoder:
    """Token id = word length; embedding = (sum of ids, count); ``delay`` seconds per batch; 'boom' fails."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.facts = ModelFacts(path="/fake", dim=2, max_model_len=16, vocab_size=1000)
        self.threads = set()

    def tokenize(self, texts, *, add_special_tokens=True, max_length=None):
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
                    return response.status, await response.json()
            results = await asyncio.gather(*(one(b) for b in requests))
            async with session.get(server.make_url("/health")) as health:
                healthy = health.status
            after = await one({"input": "four four four"})
        return results, healthy, after
    finally:
        await server.close()


def test_overload_answers_503_and_every_accepted_request_is_answered_right():
    requests = [{"input": [f"{'w' * (1 + i % 9)} {'v' * (i % 5 + 1)}"]} for i in range(120)]
    config = ServerConfig("fake", max_batch=2, max_wait_ms=0, max_queue=6)
    results, healthy, after = asyncio.run(call_app(FakeEncoder(delay=0.01), config, requests))
    statuses = [status for status, _ in results]
    assert set(statuses) == {200, 503}
    for (status, body), request in zip(results, requests):
        if status == 503:
            assert body["object"] == "error" and body["code"] == 503 and "overloaded" in body["message"]
        else:
            words = request["input"][0].split()
            assert body["data"][0]["embedding"] == [sum(len(w) for w in words), len(words)]
    assert healthy == 200 and after == (200, after[1]) and after[1]["data"][0]["embedding"] == [12, 3]


def test_a_failing_batch_answers_500_and_the_server_carries_on():
    config = ServerConfig("fake", max_batch=1, max_wait_ms=0)
    results, healthy, after = asyncio.run(call_app(FakeEncoder(delay=-0.001), config,
                                                   [{"input": "four"}, {"input": "ok fine"}]))
    (failed, error), (ok, body) = results
    assert failed == 500 and error["object"] == "error" and "kernel crashed" in error["message"]
    assert ok == 200 and body["data"][0]["embedding"] == [6, 2]
    assert healthy == 200


def test_two_workers_encode_side_by_side():
    encoder = FakeEncoder(delay=0.005)
    config = ServerConfig("fake", max_batch=4, max_wait_ms=0, workers=2)
    results, _, _ = asyncio.run(call_app(encoder, config, [{"input": f"w{i}"} for i in range(64)]))
    assert all(status == 200 for status, _ in results)
    assert len(encoder.threads) == 2


@pytest.mark.parametrize("kwargs", [
    pytest.param({"served_model_name": ""}, id="empty-name"),
    pytest.param({"served_model_name": "m", "max_batch": 0}, id="zero-batch"),
    pytest.param({"served_model_name": "m", "workers": 0}, id="zero-workers"),
])
def test_bad_server_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        ServerConfig(**kwargs)
