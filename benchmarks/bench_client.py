"""Benchmark of the load generator's HTTP engine (issue 6).

In one run, with the generator pinned to one core and a null server (tke_playbook.loadgen.nullserver) in a child
process pinned to the other:
1. against a server with a fixed 20 ms delay, the generator's p50 at concurrency 64 -> p50_error_ms = p50 - 20 ms;
2. against a zero-delay server, the generator's ceiling in req/s at concurrency 64 (ceiling_rps);
3. the same measurement with one shared httpx.AsyncClient pool (the baseline) -> vs_httpx = ceiling / httpx.
Each is repeated ``--rounds`` times (ceiling and baseline interleaved) and RESULT reports the medians.
Targets: p50_error_ms <= 2, ceiling_rps >= 5000, vs_httpx >= 10. Timings depend on what else runs on the machine:
p50_error_ms also holds the null server's own timer slack (asyncio wakes up to 1 ms late).

    python benchmarks/bench_client.py [--rounds 3] [--requests 20000] [--httpx-requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

from tke_playbook import loadgen
from tke_playbook.loadgen.inputs import encoded_bodies

CONCURRENCY = 64
DELAY_MS = 20.0


async def httpx_shared_pool_rps(url: str, requests: int, warmup: int) -> float:
    """req/s of one httpx.AsyncClient (one pool) driven by CONCURRENCY workers, measured like the generator."""
    bodies = encoded_bodies("null", 16)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        async def run(count: int) -> int:
            issued, ok = 0, 0

            async def worker() -> None:
                nonlocal issued, ok
                while issued < count:
                    i = issued
                    issued += 1
                    response = await client.post(url + "/v1/embeddings", content=bodies[i % len(bodies)],
                                                 headers=headers)
                    ok += response.status_code == 200

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return ok

        await run(warmup)
        began = time.perf_counter()
        ok = await run(requests)
        return ok / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per ceiling measurement")
    parser.add_argument("--delay-requests", type=int, default=5000, help="requests per run against the 20 ms server")
    parser.add_argument("--httpx-requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="repetitions; the RESULT line reports medians")
    args = parser.parse_args()

    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_cpu = cpus[1] if len(cpus) > 1 else None
    if cpus:
        os.sched_setaffinity(0, {cpus[0]})
    print(f"generator on cpu {cpus[0] if cpus else '?'}, servers on cpu {server_cpu}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")

    p50_errors = []
    with loadgen.start_null_server(DELAY_MS, cpu=server_cpu) as server:
        loadgen.run_closed_loop(server.url, "null", [CONCURRENCY], 500, [16], scrape_metrics=False)  # warm-up
        for n in range(args.rounds):
            result = loadgen.run_closed_loop(server.url, "null", [CONCURRENCY], args.delay_requests, [16],
                                             scrape_metrics=False)
            row = result.summary.iloc[0]
            p50_errors.append(row["p50_ms"] - DELAY_MS)
            print(f"round {n + 1}: 20 ms server, concurrency {CONCURRENCY}: p50 {row['p50_ms']:.2f} ms, "
                  f"p90 {row['p90_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, {row['req_per_s']:.0f} req/s, "
                  f"errors {int(row['errors'])}")

    ceilings, baselines = [], []
    with loadgen.start_null_server(0.0, cpu=server_cpu) as server:
        for n in range(args.rounds):
            ceilings.append(loadgen.run_sync(loadgen.measure_ceiling_async(server.url, CONCURRENCY,
                                                                           args.requests)))
            aiohttp_rps = loadgen.run_sync(loadgen.measure_ceiling_async(server.url, CONCURRENCY,
                                                                         args.requests // 4, engine="aiohttp"))
            baselines.append(asyncio.run(httpx_shared_pool_rps(server.url, args.httpx_requests, warmup=200)))
            print(f"round {n + 1}: zero-delay server, concurrency {CONCURRENCY}: generator (raw engine) "
                  f"{ceilings[-1]:.0f} req/s, aiohttp engine {aiohttp_rps:.0f} req/s, "
                  f"httpx.AsyncClient shared pool {baselines[-1]:.0f} req/s")
    ceiling, baseline = statistics.median(ceilings), statistics.median(baselines)
    print(f"RESULT p50_error_ms={statistics.median(p50_errors):.2f} ceiling_rps={ceiling:.0f} "
          f"vs_httpx={ceiling / baseline:.1f}")


if __name__ == "__main__":
    main()
