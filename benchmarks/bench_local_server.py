"""Throughput of the local embedding server against direct in-process encoding, measured in one run.

    python benchmarks/bench_local_server.py [--sentences 512] [--rounds 5] [--per-worker 4] [--model PATH]

Baseline: ``SentenceTransformer.encode`` of the same sentences in this process (best of batch sizes 32 and 64).
Then the server (a subprocess started with ``start_server``) under a closed loop at concurrency 1, 16 and 64
with 1 and 10 sentences per request; the client parses and counts every answer. Each server measurement sends
at least ``--per-worker`` requests per concurrent client (cycling through the sentences), so concurrency 64
with 10 sentences per request really keeps 64 requests in flight rather than one short wave. On a shared machine speed
drifts by a factor of several within minutes, so every server measurement in the table is paired with a direct
measurement taken just before it, and the RESULT comes from ``--rounds`` rounds alternating direct encoding and
the server at concurrency 64 (1 and 10 sentences per request). The last line is ``RESULT server_vs_direct=X``:
the server's best median sentences/s at concurrency 64 over the median direct sentences/s.

Fairness is measured in the same run: the p99 latency of small (one-sentence) requests from ``--small-clients``
clients, first alone (``small_p99_ms``, the baseline) and then while other clients keep sending maximal requests
(2,048 inputs each, the server's cap) and one client keeps sending 60 MB bodies (``small_p99_ms_under_flood``);
``health_p99_ms_under_flood`` is /health's p99 meanwhile (the goal: under 100 ms). ``BENCH_FLOOD=maximal`` or
``BENCH_FLOOD=huge`` runs one kind of flood alone (to see which costs what). The machine's load average at the
end goes in the RESULT (``load_avg_1m``): on a shared machine every figure depends on it. The flood runs in its own
process and /health is polled from another one (plain ``http.client``), so the figures are the server's: on one
event loop, the sender's own 60 MB writes and 2,048-row JSON parses delayed the poller by up to a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = ("cluster node storage model vector query document embedding server request latency token batch "
         "kubernetes tencent cloud notebook download volume replica service endpoint metric answer search "
         "the a of to and in for with on is are was be by this that from quickly slowly every many").split()


def make_sentences(n: int, seed: int = 7) -> list[str]:
    """Deterministic sentences of 6-40 words (about 8-50 tokens), like short passages and queries."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 40))) + f" (item {i})" for i in range(n)]


def load_direct(model_dir: str):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(os.cpu_count() or 1)
    model = SentenceTransformer(model_dir, device="cpu")
    model.encode(make_sentences(64, seed=1), batch_size=32)  # warm-up
    return model


def direct_rate(model, sentences: list[str]) -> float:
    """Best sentences/s of ``model.encode`` with batch sizes 32 and 64."""
    best = 0.0
    for batch_size in (32, 64):
        start = time.perf_counter()
        model.encode(sentences, batch_size=batch_size)
        best = max(best, len(sentences) / (time.perf_counter() - start))
    return best


def make_requests(sentences: list[str], concurrency: int, per_request: int, per_worker: int) -> list[list[str]]:
    """Requests of ``per_request`` sentences: all the sentences once, and at least ``per_worker`` per client."""
    count = max(-(-len(sentences) // per_request), concurrency * per_worker)
    return [[sentences[(r * per_request + j) % len(sentences)] for j in range(per_request)] for r in range(count)]


async def server_rate(url: str, sentences: list[str], concurrency: int, per_request: int,
                      per_worker: int = 4) -> tuple[float, int]:
    """Sentences/s of the server under a closed loop of ``concurrency`` clients, and how many answers were wrong."""
    import aiohttp

    chunks = make_requests(sentences, concurrency, per_request, per_worker)
    queue = list(reversed(chunks[:8]))  # warm-up: open connections
    errors = 0

    async def worker(session):
        nonlocal errors
        while queue:
            chunk = queue.pop()
            try:
                async with session.post(url + "/v1/embeddings", json={"input": chunk}) as response:
                    body = json.loads(await response.read())
                    if response.status != 200 or len(body.get("data", ())) != len(chunk):
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):  # counted, not fatal
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(min(concurrency, 8))))
        queue[:] = list(reversed(chunks))
        errors = 0
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return sum(len(chunk) for chunk in chunks) / elapsed, errors


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def flood(url: str, sentences: list[str], stop, statuses) -> None:
    """Another process: two clients sending maximal requests (2,048 inputs) and one sending 60 MB bodies, until
    ``stop`` is set. Its own process, so building, sending and parsing these bodies never delays the measuring
    clients (on one event loop a 60 MB write and a 2,048-row JSON parse would show up as server latency)."""
    import aiohttp

    maximal = {"input": [sentences[i % len(sentences)] for i in range(2048)]}
    huge = b'{"input": [' + b'"a",' * 15_000_000 + b'"a"]}'
    answers: list[int] = []

    async def flooder(session, **kwargs):
        while not stop.is_set():
            try:
                async with session.post(url + "/v1/embeddings", **kwargs) as response:
                    await response.read()
                    answers.append(response.status)
            except aiohttp.ClientError as exc:  # reported, not fatal: the flood is not what is measured
                answers.append(type(exc).__name__)

    async def run():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            kinds = os.environ.get("BENCH_FLOOD", "maximal,huge").split(",")
            tasks = [asyncio.ensure_future(flooder(session, json=maximal)) for _ in range(2 * ("maximal" in kinds))]
            tasks += [asyncio.ensure_future(flooder(session, data=huge, headers={"Content-Type": "application/json"}))
                      for _ in range("huge" in kinds)]
            while not stop.is_set():
                await asyncio.sleep(0.05)
            for task in tasks:  # a maximal request still running is abandoned (the server aborts its work)
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    statuses.put(sorted({str(answer) for answer in answers}))


def poll_health(url: str, stop, results) -> None:
    """Another process: GET /health every 20 ms with plain http.client until ``stop`` is set; seconds each."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    latencies = []
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    while not stop.is_set():
        start = time.perf_counter()
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        time.sleep(0.02)
    connection.close()
    results.put(latencies)


async def small_requests(url: str, sentences: list[str], clients: int, count: int) -> tuple[list[float], int]:
    """Seconds each of ``count`` one-sentence requests from ``clients`` clients, and how many answers were wrong."""
    import aiohttp

    latencies, errors = [], 0
    queue = [sentences[i % len(sentences)] for i in range(count)]

    async def small(session):
        nonlocal errors
        while queue:
            text = queue.pop()
            start = time.perf_counter()
            try:
                async with session.post(url + "/v1/embeddings", json={"input": text}) as response:
                    body = await response.read()
                    if response.status != 200 or len(json.loads(body)["data"]) != 1:
                        errors += 1
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
                errors += 1
            latencies.append(time.perf_counter() - start)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(small(session) for _ in range(clients)))
    return latencies, errors


def small_under_load(url: str, sentences: list[str], clients: int, count: int, with_flood: bool) -> dict:
    """p99 ms of ``count`` one-sentence requests from ``clients`` clients (this process) and of /health polled
    meanwhile (a second process), with or without the flood (a third process) running beside them."""
    context = multiprocessing.get_context("spawn")  # no fork after torch's threads started
    stop, health_out, flood_out = context.Event(), context.Queue(), context.Queue()
    helpers = [context.Process(target=poll_health, args=(url, stop, health_out))]
    if with_flood:
        helpers.append(context.Process(target=flood, args=(url, sentences, stop, flood_out)))
    for process in helpers:
        process.start()
    time.sleep(3.0 if with_flood else 1.0)  # the helpers started; the maximal requests are in the batcher
    latencies, errors = asyncio.run(small_requests(url, sentences, clients, count))
    stop.set()
    health = health_out.get(timeout=120)
    statuses = flood_out.get(timeout=120) if with_flood else []
    for process in helpers:
        process.join(timeout=60)
    return {"p99_ms": p99(latencies) * 1000, "health_p99_ms": p99(health) * 1000, "health_polls": len(health),
            "errors": errors, "flood_statuses": statuses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=512, help="sentences per measurement (default 512)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating direct/server rounds at concurrency "
                        "64 for the RESULT (default 5)")
    parser.add_argument("--per-worker", type=int, default=4, help="server requests per concurrent client at "
                        "least (default 4)")
    parser.add_argument("--model", default=None, help="model folder (default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--small-clients", type=int, default=16, help="clients sending small requests in the "
                        "fairness measurement (default 16)")
    parser.add_argument("--small-requests", type=int, default=400, help="small requests per fairness "
                        "measurement (default 400)")
    args = parser.parse_args(argv)

    from tke_playbook.hostenv import offline_model_dir
    from tke_playbook.localserver import start_server

    model_dir = str(args.model or offline_model_dir())
    sentences = make_sentences(args.sentences)
    model = load_direct(model_dir)
    rows, rounds = [], {"direct": [], 1: [], 10: []}
    with start_server(args.model, require_marker=args.model is not None) as server:
        for concurrency in (1, 16, 64):
            for per_request in (1, 10):
                direct = direct_rate(model, sentences)
                rate, errors = asyncio.run(server_rate(server.url, sentences, concurrency, per_request,
                                                      args.per_worker))
                rows.append((concurrency, per_request, direct, rate, errors))
                print(f"  measured c={concurrency} x{per_request}: direct {direct:.1f}, server {rate:.1f} "
                      f"sentences/s, {errors} errors", flush=True)
        # Speed drifts on a shared machine: alternate direct and the server at concurrency 64 and take medians.
        for _ in range(args.rounds):
            rounds["direct"].append(direct_rate(model, sentences))
            for per_request in (1, 10):
                rate, errors = asyncio.run(server_rate(server.url, sentences, 64, per_request, args.per_worker))
                rounds[per_request].append(rate if not errors else 0.0)
        print(f"  alternated rounds at c=64: direct {rounds['direct']}, x1 {rounds[1]}, x10 {rounds[10]}")
        alone = small_under_load(server.url, sentences, args.small_clients, args.small_requests, False)
        flooded = small_under_load(server.url, sentences, args.small_clients, args.small_requests, True)
        print(f"  small requests alone: {alone}; beside maximal requests and 60 MB bodies: {flooded}")
    print(f"{'setting':<28}{'server s/s':>12}{'direct s/s':>12}{'server/direct':>15}{'errors':>8}")
    for concurrency, per_request, direct, rate, errors in rows:
        label = f"c={concurrency} x{per_request}/request"
        print(f"{label:<28}{rate:>12.1f}{direct:>12.1f}{rate / direct:>15.2f}{errors:>8}")
    direct = statistics.median(rounds["direct"])
    best_k = max((1, 10), key=lambda k: statistics.median(rounds[k]))
    best = statistics.median(rounds[best_k])
    print(f"{'median of rounds, c=64':<28}{best:>12.1f}{direct:>12.1f}{best / direct:>15.2f}{'':>8}")
    print(f"RESULT server_vs_direct={best / direct:.3f} server_c64_sps={best:.1f} direct_sps={direct:.1f} "
          f"per_request={best_k} rounds={args.rounds} small_p99_ms={alone['p99_ms']:.1f} "
          f"small_p99_ms_under_flood={flooded['p99_ms']:.1f} health_p99_ms={alone['health_p99_ms']:.1f} "
          f"health_p99_ms_under_flood={flooded['health_p99_ms']:.1f} "
          f"small_errors_under_flood={flooded['errors']} load_avg_1m={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
