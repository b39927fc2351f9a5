"""Benchmark: files verified per second when a repository has many small files (issue 21, item 7).

A 20,013-file listing once crawled at ~15 files/s: each progress poll re-read one verification record per file
(twice a second, in the command line and the notebook), and each finished piece rewrote a state file listing every
piece of its shard. This downloads N small files (default 20,013, 200-1,200 bytes each) from a local hub mirror with
3 workers, exactly as ``tke-playbook download`` does (the same worker code the Job's pods run, polled twice a second
with the command line's progress line), and measures, in the same run:

* ``verify_files_per_s`` - files downloaded and verified per second, end to end (target: >= 500);
* ``hash_only_files_per_s`` - the ideal: the same files only read and hashed (sha256 + git sha1), in-process;
* ``rehash_files_per_s`` - ``tke-playbook verify`` re-hashing the finished folder;
* ``poll_ms`` - one progress poll now, against ``poll_ms_every_record``, a poll that reads every file's record as
  the old one did (the per-poll cost the CLI paid 5 CPU-minutes for).

Ends with ``RESULT verify_files_per_s=... files=... ...``.
Usage: python benchmarks/bench_verify.py [--files 20013] [--workers 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tke_playbook.download import plan_download, run_local_download, verify_model
from tke_playbook.podworker import progress
from tke_playbook.podworker.modelfolder import completeness_problem, hash_file, is_complete
from tke_playbook.specs.download import DownloadSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fakes.hub import FakeHub  # noqa: E402 - the hub mirror (a test double)

MODEL = "BAAI/bge-small-en-v1.5"


def make_repo(root: Path, files: int) -> Path:
    """``files`` small JSON-like files in 50 folders, 200-1,200 bytes each, reproducible."""
    for i in range(files):
        path = root / f"d{i % 50}" / f"f{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((b'{"i": %d}' % i).ljust(200 + i % 1000, b" "))
    return root


def poll_reading_every_record(folder: Path) -> int:
    """The old poll, as a baseline: the plan, each shard's state, one verification record per file, and the
    completion check of every file."""
    plan = json.loads(progress.plan_file(folder).read_text(encoding="utf-8"))
    for index in range(len(plan["shards"])):
        progress.read_json(progress.shard_file(folder, index))
    verified = sum(bool(progress.record_matches(progress.verification(folder, f["path"]), f)) for f in plan["files"])
    completeness_problem(folder)
    return verified


def timed(call, repeat: int = 1) -> float:
    began = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - began) / repeat


def hardware() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU") \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}, {os.cpu_count()} cores, load average {load:.1f} at the start"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_013, help="files in the repository (default 20,013)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes, as the CLI's default (3)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        print(f"measured on {hardware()}")
        repo = make_repo(work / "hub", args.files)
        paths = sorted(p for p in repo.rglob("*") if p.is_file())
        ideal = len(paths) / timed(lambda: [hash_file(p) for p in paths])
        polls = []

        def show(summary):  # the command line's progress line, minus the printing
            polls.append(summary["files_verified"])

        with FakeHub({MODEL: repo}) as hub:
            spec = DownloadSpec(model=MODEL, source="huggingface", endpoint=hub.url, completions=args.workers,
                                parallelism=args.workers)
            plan = plan_download(spec)
            began = time.perf_counter()
            folder = run_local_download(spec, plan, work / "pvc", workers=args.workers, on_progress=show,
                                        poll_s=0.5)
            elapsed = time.perf_counter() - began
        if not is_complete(folder) or progress.read_progress(folder)["files_verified"] != len(plan.files):
            raise SystemExit("the download did not complete with every file verified")
        rate = len(plan.files) / elapsed
        rehash = len(plan.files) / timed(lambda: verify_model(folder))
        poll_new = timed(lambda: progress.read_progress(folder), repeat=20) * 1e3
        poll_old = timed(lambda: poll_reading_every_record(folder), repeat=2) * 1e3
        print(f"{len(plan.files)} files, {plan.total_bytes / 1e6:.1f} MB, {args.workers} workers, "
              f"{len(polls)} progress polls")
        print(f"{'what':<44}{'files/s':>10}")
        print(f"{'download + verify (tke-playbook download)':<44}{rate:>10.0f}")
        print(f"{'re-hash a finished folder (tke-playbook verify)':<44}{rehash:>10.0f}")
        print(f"{'hash only, in-process (the ideal)':<44}{ideal:>10.0f}")
        print(f"one progress poll: {poll_new:.2f} ms now, {poll_old:.0f} ms reading every file's record "
              f"({poll_old / max(poll_new, 1e-6):.0f}x)")
        print(f"RESULT verify_files_per_s={rate:.0f} files={len(plan.files)} hash_only_files_per_s={ideal:.0f} "
              f"rehash_files_per_s={rehash:.0f} poll_ms={poll_new:.2f} poll_ms_every_record={poll_old:.0f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
