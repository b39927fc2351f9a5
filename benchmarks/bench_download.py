"""Benchmark: the tutorial's download split against ours, on a throttled local hub mirror.

The repository is shaped like intfloat/e5-mistral-7b-instruct, scaled down: safetensors shards of 9.9 and 4.5
units, duplicate .bin shards of 9.9 and 5.1 units, and small files. Every connection of the mirror is throttled to
the same rate, as a node's bandwidth would be. Three workers run each plan for real (the same worker code the
Job pods run):

* tutorial - safetensors split by count, every other file (both .bin shards included) on index 0;
* ours     - duplicate formats skipped, bytes balanced across the shards (large files cut into ranges);
* ideal    - the bytes needed (one weight format) divided by 3, at the per-connection rate measured in this run.

Ends with ``RESULT speedup_vs_tutorial=X ratio_to_ideal=Y`` (targets: X >= 4, Y <= 1.15).
Usage: python benchmarks/bench_download.py [--unit-mb 2.5] [--rate-mb 0.8]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tke_playbook.download.listing import plan_download
from tke_playbook.download.local import run_local_download
from tke_playbook.podworker.modelfolder import is_complete
from tke_playbook.specs import DownloadSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fakes.hub import FakeHub  # noqa: E402 - the mirror with a per-connection throttle (a test double)

MODEL = "intfloat/e5-mistral-7b-instruct"
SHAPE = {"model-00001-of-00002.safetensors": 9.9, "model-00002-of-00002.safetensors": 4.5,
         "pytorch_model-00001-of-00002.bin": 9.9, "pytorch_model-00002-of-00002.bin": 5.1}
# the real small files' sizes in bytes; scaled like the weights (1 unit stands for 1 GB)
SMALL = {"config.json": 650, "tokenizer.json": 1_795_000, "tokenizer.model": 493_443, "README.md": 60_000,
         "model.safetensors.index.json": 23_950, "tokenizer_config.json": 1_000, ".gitattributes": 1_519,
         "special_tokens_map.json": 400, "modules.json": 229, "1_Pooling/config.json": 270}


def make_repo(root: Path, unit: int) -> Path:
    rng = random.Random(3)
    sizes = {name: int(units * unit) for name, units in SHAPE.items()}
    sizes |= {name: max(1, int(size * unit / 1e9)) for name, size in SMALL.items()}
    for rel, size in sizes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            left = size
            while left:
                block = rng.randbytes(min(left, 1 << 22))
                fh.write(block)
                left -= len(block)
    return root


def measure_rate(hub: FakeHub, nbytes: int) -> float:
    """Bytes/s one connection gets from the mirror (a timed Range request)."""
    url = f"{hub.url}/api/v1/models/{MODEL}/repo?Revision=master&FilePath=model-00001-of-00002.safetensors"
    began = time.perf_counter()
    with httpx.Client(timeout=60) as client:
        got = len(client.get(url, headers={"Range": f"bytes=0-{nbytes - 1}"}).content)
    return got / (time.perf_counter() - began)


def timed_run(spec, plan, root: Path) -> float:
    began = time.perf_counter()
    folder = run_local_download(spec, plan, root, workers=3, poll_s=0.02)
    elapsed = time.perf_counter() - began
    if not is_complete(folder):
        raise SystemExit(f"{plan.strategy}: the download did not complete")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit-mb", type=float, default=2.5, help="size of one unit (MB)")
    parser.add_argument("--rate-mb", type=float, default=0.8, help="per-connection throttle (MB/s)")
    args = parser.parse_args(argv)
    unit, rate = int(args.unit_mb * 1e6), args.rate_mb * 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-download-"))
    try:
        repo = make_repo(work / "hub", unit)
        with FakeHub({MODEL: repo}, rate=rate) as hub:
            spec = DownloadSpec(model=MODEL, source="modelscope", endpoint=hub.url, completions=3, parallelism=3)
            plans = {"tutorial": plan_download(spec, strategy="tutorial"), "ours": plan_download(spec)}
            measured = measure_rate(hub, unit)
            times = {name: timed_run(spec, plan, work / f"pvc-{name}") for name, plan in plans.items()}
        needed = plans["ours"].total_bytes
        times["ideal"] = needed / 3 / measured
        loads = {"tutorial": plans["tutorial"].bytes_per_shard, "ours": plans["ours"].bytes_per_shard,
                 "ideal": (needed / 3,) * 3}
        print(f"unit {unit / 1e6:.1f} MB, per-connection rate {measured / 1e6:.2f} MB/s measured "
              f"({rate / 1e6:.2f} configured), 3 workers")
        print(f"{'split':<10}{'bytes':>10}{'max shard':>11}{'per shard (units)':>26}{'time s':>9}")
        for name in ("tutorial", "ours", "ideal"):
            shards = " / ".join(f"{b / unit:.1f}" for b in loads[name])
            print(f"{name:<10}{sum(loads[name]) / unit:>10.1f}{max(loads[name]) / unit:>11.1f}{shards:>26}"
                  f"{times[name]:>9.2f}")
        speedup, ratio = times["tutorial"] / times["ours"], times["ours"] / times["ideal"]
        print(f"(at the configured rate the ideal would be {needed / 3 / rate:.2f} s: ratio "
              f"{times['ours'] / (needed / 3 / rate):.3f})")
        print(f"RESULT speedup_vs_tutorial={speedup:.2f} ratio_to_ideal={ratio:.3f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
