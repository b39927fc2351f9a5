"""Benchmark of the capacity plan on the local target (issue 16).

In one run, against the local server serving the offline all-MiniLM-L6-v2 (single 32-token queries):
1. the tuning loop: the server's sustainable rate at the p99 target with its default batching settings, then with
   the candidates that run suggests (each a fresh server); tuned_vs_default = best / default sustainable rate;
2. the capacity plan for one replica carrying the best sustainable rate (the predicted rate);
3. the replay: that rate offered open-loop to a server with the best settings for --replay-s seconds. The plan
   holds when p99 <= target and the achieved rate is within ±15% of the prediction.
The replay is also written in the JSON layout of `vllm bench serve` and read back.
Timings depend on what else runs on the machine (the generator shares the cores with the server).

    python benchmarks/bench_capacity.py [--target-ms 500] [--input-tokens 32] [--replay-s 15] [--nice -10]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from tke_playbook.capacity import QueryLoad, plan_capacity, replay, tune_local
from tke_playbook.loadgen import VLLM_BENCH_KEYS, write_vllm_bench_json
from tke_playbook.localserver.process import start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-ms", type=float, default=500.0, help="p99 latency target (default 500 ms: a CPU "
                        "server sharing 2 cores with its load generator - and other work - has a tail of 100-200 ms "
                        "even when idle)")
    parser.add_argument("--input-tokens", type=int, default=32)
    parser.add_argument("--level-s", type=float, default=4.0, help="seconds per open-loop level of the search")
    parser.add_argument("--replay-s", type=float, default=15.0)
    parser.add_argument("--nice", type=int, default=0, help="change this run's (and its servers') CPU priority, "
                        "e.g. -10 on a machine busy with other work (negative values need root)")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)
    began = time.monotonic()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus at the start; niceness "
          f"{os.nice(0)}", flush=True)
    search = {"input_tokens": args.input_tokens, "level_s": args.level_s, "min_requests": 80, "max_level_s": 10.0,
              "ceiling_requests": 120}

    tuning = tune_local(args.target_ms, **search)
    print(tuning.table().to_string(index=False))
    settings, best = tuning.best
    if best.sustainable is None:
        raise SystemExit(f"no setting kept p99 <= {args.target_ms:g} ms: raise --target-ms")
    print(f"best settings: {settings.flags}; {best.sustainable}")

    plan = plan_capacity(QueryLoad(best.sustainable.rate, args.target_ms), best.sustainable, "PNV5b.8XLARGE96")
    print(plan.table().to_string(index=False))

    # at least ~300 requests (the achieved rate of a short Poisson run is noisy), within 15-45 s
    duration = min(45.0, max(args.replay_s, 300 / plan.needed))
    with start_server(max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                      workers=settings.workers) as server:
        report, result = replay(server.url, server.served_model_name, plan.needed, args.target_ms,
                                input_tokens=args.input_tokens, duration_s=duration)
    print(report)
    slow = result.records[result.records["latency_s"] * 1000 > args.target_ms]
    if len(slow):
        print(f"{len(slow)} of {len(result.records)} requests over the target, sent between "
              f"{slow['start_s'].min() - result.records['start_s'].min():.1f} s and "
              f"{slow['start_s'].max() - result.records['start_s'].min():.1f} s into the replay "
              f"(clustered = a stall of the machine, spread = the server's own tail)")
    with tempfile.TemporaryDirectory() as folder:
        paths = write_vllm_bench_json(result.records, server.served_model_name, folder, label="replay")
        loaded = json.loads(paths[0].read_text())
    missing = [k for k in VLLM_BENCH_KEYS if k not in loaded]
    print(f"vllm bench serve JSON: {paths[0].name}: request_throughput {loaded['request_throughput']:.1f}, "
          f"total_token_throughput {loaded['total_token_throughput']:.0f}, p99_e2el_ms {loaded['p99_e2el_ms']:.1f}"
          f"; missing keys: {missing or 'none'}")
    print(f"total time {time.monotonic() - began:.0f} s; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cpus (other work on the machine shows as latency)")
    print(f"RESULT predicted_rps={report.predicted_rps:.1f} achieved_rps={report.achieved_rps:.1f} "
          f"p99_ms={report.p99_ms:.1f} target_ms={report.target_ms:.0f} tuned_vs_default={tuning.tuned_vs_default:.2f}")


if __name__ == "__main__":
    main()
