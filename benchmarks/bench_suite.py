"""Where the test suite's time goes (issue 22: `make test` in at most 5 minutes of suite time on this machine).

Runs the suite as `make test` does (``python -m pytest -n 3``; other pytest arguments after ``--``) while sampling
every process on the machine twice a second from /proc, and adds up the CPU seconds each kind of process used:
the local embedding servers, pytest's workers, Chromium, notebook kernels, JupyterLab, CLI runs and the rest.
A process belongs to the suite when it carries the run's marker in its environment (every process the suite starts
inherits it: servers that outlive their kernel, Chromium, kernels); anything else on the machine - other work,
the sandbox - is reported apart, as ``outside the suite``.

The baseline, in the same run: the machine's own load, measured for a few seconds before the suite starts (what
the suite's CPU work competes with), and the floor that the suite's CPU work sets on this machine's cores - the
wall time the suite could not beat however its tests were spread over workers:
``cpu_floor_s = suite_cpu_s / cores``.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_suite.py            # the whole suite (about 12 min)
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_suite.py -- tests/test_plan.py   # a quick look

Ends with ``RESULT suite_s=... suite_cpu_s=... cores=... cpu_floor_s=... server_starts=... target_s=300``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 300  # issue 22's goal
IDLE_S = 5.0
EVERY_S = 0.5
TICKS = os.sysconf("SC_CLK_TCK")
OUTSIDE = "outside the suite"
MARKER_ENV = "TKE_BENCH_SUITE_RUN"
KINDS = (  # (kind, what its command line contains): the first that matches
    ("local server", "-m tke_playbook.localserver"), ("notebook kernel", "ipykernel"), ("chromium", "chrom"),
    ("playwright", "playwright"), ("jupyterlab", "jupyter-lab"), ("jupyterlab", "jupyter lab"),
    ("vllm parser check", "check_vllm_parsers"), ("nbval run", "--nbval"), ("pytest worker", "exec(eval(sys.stdin"),
    ("pytest", "pytest"), ("cli", "tke-playbook"), ("cli", "tke_playbook"),
)


def _kind(cmdline: str) -> str:
    return next((kind for kind, mark in KINDS if mark in cmdline), "other")


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _snapshot() -> dict[tuple[str, str], tuple[int, str]]:
    """(pid, start time) -> (CPU ticks so far, parent pid), for every process that can be read (kernel threads
    included)."""
    seen = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = _read(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        seen[(pid, fields[19].decode())] = (int(fields[11]) + int(fields[12]), fields[1].decode())
    return seen


def _describe(pid: str, marker: bytes, parent_in_suite: bool) -> str:
    """The kind of a process of the suite (by its command line), or OUTSIDE: a process is the suite's when it
    carries the run's marker, or when its parent is the suite's (Chromium starts its zygote, renderers and GPU
    process with an environment of its own)."""
    try:
        if not parent_in_suite and marker not in _read(f"/proc/{pid}/environ").split(b"\0"):
            return OUTSIDE
        return _kind(_read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace"))
    except OSError:
        return OUTSIDE


class Sampler(threading.Thread):
    """CPU seconds per kind of process, from /proc, every ``EVERY_S`` until stopped; a process counts from the
    moment the sampler first sees it (what ran before the suite only for its use during it)."""

    def __init__(self, marker: bytes):
        super().__init__(daemon=True)
        self.marker = marker
        self.last = {key: ticks for key, (ticks, _) in _snapshot().items()}
        self.kinds: dict[tuple[str, str], str] = {}
        self.suite_pids: set[str] = set()
        self.cpu: Counter = Counter()
        self.server_starts = 0
        self.halt = threading.Event()

    def sample(self) -> None:
        for key, (ticks, parent) in sorted(_snapshot().items(), key=lambda item: int(item[0][0])):
            if key not in self.kinds:  # parents first, mostly: lower pids (a wrapped-around pid is seen next time)
                self.kinds[key] = _describe(key[0], self.marker, parent in self.suite_pids)
                self.server_starts += self.kinds[key] == "local server"
                if self.kinds[key] != OUTSIDE:
                    self.suite_pids.add(key[0])
            self.cpu[self.kinds[key]] += (ticks - self.last.get(key, 0)) / TICKS
            self.last[key] = ticks

    def run(self) -> None:
        while not self.halt.wait(EVERY_S):
            self.sample()


def machine_load(seconds: float) -> float:
    """Cores busy on this machine before the suite (all processes, kernel threads included), from /proc/stat."""
    def busy_total():
        with open("/proc/stat", encoding="utf-8") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return sum(values) - values[3] - values[4], sum(values)  # idle and iowait are not busy
    busy0, total0 = busy_total()
    time.sleep(seconds)
    busy1, total1 = busy_total()
    return (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    command = [sys.executable, "-m", "pytest", "-n", os.environ.get("TEST_WORKERS", "3"), "-q", *extra]
    idle_cores = machine_load(IDLE_S)
    token = f"{os.getpid()}-{time.time_ns()}"
    sampler = Sampler(f"{MARKER_ENV}={token}".encode())
    sampler.start()
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, MARKER_ENV: token})
    wall = time.monotonic() - started
    sampler.halt.set()
    sampler.join()
    sampler.sample()
    tail = done.stdout.strip().splitlines()[-1:] or [""]
    reported = re.search(r" in ([0-9.]+)s", tail[0])
    suite_s = float(reported.group(1)) if reported else wall
    cores = os.cpu_count() or 1
    suite_cpu = sum(v for k, v in sampler.cpu.items() if k != OUTSIDE)
    print(f"suite: {tail[0]} (exit {done.returncode}); {wall:.0f} s of wall time with collection")
    print(f"machine before the suite: {idle_cores:.2f} of {cores} cores busy")
    for kind, seconds in sampler.cpu.most_common():
        if kind != OUTSIDE:
            print(f"  {kind:<18} {seconds:8.1f} CPU s")
    print(f"  {'all':<18} {suite_cpu:8.1f} CPU s = {suite_cpu / wall:.2f} cores busy on average; "
          f"{sampler.server_starts} local server starts")
    print(f"  ({OUTSIDE}: {sampler.cpu[OUTSIDE]:.1f} CPU s, not counted)")
    print(f"floor on {cores} cores: {suite_cpu / cores:.0f} s; {TARGET_S} s would need at most "
          f"{TARGET_S * cores:.0f} CPU s")
    print(f"RESULT suite_s={suite_s:.1f} suite_cpu_s={suite_cpu:.0f} cores={cores} cpu_floor_s={suite_cpu / cores:.0f} "
          f"server_starts={sampler.server_starts} server_cpu_s={sampler.cpu['local server']:.0f} "
          f"chromium_cpu_s={sampler.cpu['chromium']:.0f} idle_cores_before={idle_cores:.2f} target_s={TARGET_S}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
