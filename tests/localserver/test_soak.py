"""Soak: 2,000 small requests from 64 clients while one client sends a maximal request and another leaves in the
middle of its own. Every small request is answered 200 within its timeout with its own embeddings, the maximal
one is served, the one that left is counted as aborted, a 60 MB body is refused, and the server's memory stays
bounded. (Latency under this load is measured in benchmarks/bench_local_server.py, not asserted here.)"""

from __future__ import annotations

import asyncio
import base64
import json
import os

import aiohttp
import numpy as np
import pytest

from tke_playbook.hostenv import offline_model_dir
from tke_playbook.loadgen import promtext
from tke_playbook.localserver import start_server, surface

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SMALL, CLIENTS = 2000, 64
MAX_TOKENS = 8192  # the soak server's token cap per request: the maximal request holds 2,048 inputs of 4 tokens
DISTINCT = 250  # distinct small texts (request i sends text i % DISTINCT): a swapped answer shows
TIMEOUT = aiohttp.ClientTimeout(total=120)
pytestmark = pytest.mark.slow


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def vectors(body) -> np.ndarray:
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
                     for d in sorted(body["data"], key=lambda d: d["index"])])


@pytest.fixture(scope="module")
def reference():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(offline_model_dir()), device="cpu")


def test_small_requests_are_all_served_beside_a_maximal_one_and_a_client_that_leaves(tmp_path, reference):
    distinct = [f"request {i}: node {i * 7919 % 10007} serves vectors" for i in range(DISTINCT)]
    texts = [distinct[i % DISTINCT] for i in range(SMALL)]
    expected = reference.encode(distinct, batch_size=64)[[i % DISTINCT for i in range(SMALL)]]
    maximal = ["node node"] * surface.MAX_INPUTS_PER_REQUEST  # 2 words + [CLS]/[SEP] = 4 tokens each
    assert len(reference.tokenizer(maximal[0])["input_ids"]) * len(maximal) == MAX_TOKENS

    with start_server(timeout=240, log_path=tmp_path / "server.log", max_tokens_per_request=MAX_TOKENS) as server:
        url = server.url + "/v1/embeddings"
        idle_rss = rss_bytes(server.pid)

        async def main():
            peak = [idle_rss]
            done = asyncio.Event()

            async def watch_memory():
                while not done.is_set():
                    peak[0] = max(peak[0], rss_bytes(server.pid))
                    await asyncio.sleep(0.1)

            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                async def scrape():
                    async with session.get(server.url + "/metrics") as response:
                        return promtext.parse(await response.text())

                before = await scrape()
                watcher = asyncio.ensure_future(watch_memory())
                # The client that leaves: its maximal request reaches the batcher, then it closes the connection.
                body = json.dumps({"input": maximal}).encode()
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                while True:
                    metrics = await scrape()
                    if metrics.value("vllm:num_requests_running") + metrics.value("vllm:num_requests_waiting"):
                        break
                    await asyncio.sleep(0.02)

                async def post(payload):
                    async with session.post(url, json=payload, timeout=TIMEOUT) as response:
                        return response.status, await response.read()

                big = asyncio.ensure_future(post({"input": maximal, "encoding_format": "base64"}))
                queue = list(range(SMALL))
                answers: dict[int, tuple[int, bytes]] = {}

                async def client():
                    while queue:
                        i = queue.pop()
                        answers[i] = await post({"input": texts[i], "encoding_format": "base64"})

                clients = asyncio.gather(*(client() for _ in range(CLIENTS)))
                await asyncio.sleep(0.2)
                writer.close()  # leaves mid-request
                huge_status, huge_body = await post_huge(session, url)
                await clients
                big_status, big_body = await big
                after = await scrape()
                done.set()
                await watcher
            return answers, (big_status, big_body), (huge_status, huge_body), promtext.diff(before, after), peak[0]

        answers, (big_status, big_body), (huge_status, huge_body), delta, peak = asyncio.run(main())
        assert server.healthy()

    assert sorted(answers) == list(range(SMALL))  # nothing lost
    assert [status for status, _ in answers.values()] == [200] * SMALL
    got = np.stack([vectors(json.loads(answers[i][1]))[0] for i in range(SMALL)])
    assert np.abs(got - expected).max() < 1e-5  # nothing mismatched: each answer is its own input's embedding
    assert big_status == 200 and len(json.loads(big_body)["data"]) == len(maximal)
    assert huge_status == 400 and b"limit of" in huge_body
    assert delta.value("vllm:request_success_total", finished_reason="abort") >= 1
    assert delta.value("vllm:request_success_total", finished_reason="stop") == SMALL + 1
    assert peak - idle_rss < 1024 ** 3, f"RSS grew by {(peak - idle_rss) / 2 ** 20:.0f} MiB"


async def post_huge(session, url):
    """A 60 MB body of tiny inputs: refused with a 400 that states the limit, without reading it all."""
    body = b'{"input": [' + b'"a",' * 15_000_000 + b'"a"]}'
    async with session.post(url, data=body, headers={"Content-Type": "application/json"},
                            timeout=TIMEOUT) as response:
        return response.status, await response.read()
