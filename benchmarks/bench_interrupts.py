"""How fast an interrupted run stops (issue 20 item 1: requests and threads stopped within 2 s).

Each long run - closed-loop sweep, open-loop level, mixed workload, rate search - is started against a test server
whose every answer takes 0.5 s (so requests are always in flight), and interrupted with SIGINT to this process's
main thread after 1 s, as the notebook's stop button does to a kernel. Measured: seconds from the signal to the
RunInterrupted line, whether any worker thread is left, and whether the server still receives requests after. The
baseline, in the same run: the same server answering one request (the floor of any stop).

    PYTHONPATH=$PWD python benchmarks/bench_interrupts.py

Ends with ``RESULT stop_s_max=... threads_left=... requests_after_stop=...`` (target: stop_s_max <= 2).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_embedding_server import FakeEmbeddingServer  # noqa: E402

from tke_playbook import capacity, loadgen  # noqa: E402
from tke_playbook.errors import RunInterrupted  # noqa: E402

DELAY_S = 0.5
INTERRUPT_AFTER_S = 1.0


def _interrupt_later(delay: float, fired: list) -> None:
    def fire():
        fired.append(time.perf_counter())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Timer(delay, fire).start()


def _stop_time(run) -> tuple[float, str]:
    fired: list[float] = []
    _interrupt_later(INTERRUPT_AFTER_S, fired)
    try:
        run()
    except RunInterrupted as exc:
        return time.perf_counter() - fired[0], str(exc)
    raise AssertionError("the run finished before the interrupt: make it longer")


def main() -> int:
    os.environ.setdefault("TKE_PLAYBOOK_HOME", str(Path("build/bench/interrupts-home").resolve()))
    runs = {
        "closed loop": lambda url: loadgen.run_closed_loop(url, "m", [4, 16], None, [8], max_duration_s=5),
        "open loop": lambda url: loadgen.run_open_loop(url, "m", [40.0], duration_s=5, input_tokens=[8]),
        "mixed workload": lambda url: loadgen.run_mixed(url, "m", loadgen.default_streams(4.0), duration_s=5),
        "rate search": lambda url: capacity.find_sustainable_rate(url, "m", 60_000, input_tokens=8,
                                                                  concurrency=(4, 16), ceiling_level_s=3),
    }
    results, worst, threads_left, after = [], 0.0, 0, 0
    with FakeEmbeddingServer(delay_s=DELAY_S) as server:
        began = time.perf_counter()
        loadgen.run_closed_loop(server.url, "m", [1], 1, [8])
        baseline = time.perf_counter() - began
        for name, run in runs.items():
            seconds, line = _stop_time(lambda: run(server.url))
            served = len(server.requests)
            time.sleep(1.0)
            after += len(server.requests) - served
            left = [t.name for t in threading.enumerate() if t.name.startswith("tke-playbook")]
            threads_left += len(left)
            worst = max(worst, seconds)
            results.append(f"{name}: stopped {seconds:.2f} s after the signal; {line!r}; threads left {left}")
    print("\n".join(results))
    print(f"RESULT stop_s_max={worst:.2f} threads_left={threads_left} requests_after_stop={after} "
          f"baseline_one_request_s={baseline:.2f}")
    return 0 if worst <= 2.0 and not threads_left and not after else 1


if __name__ == "__main__":
    sys.exit(main())
