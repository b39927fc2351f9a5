"""Issue 20 item 1 (blocker): every long cell stops cleanly on an interrupt, in a real kernel.

One kernel (jupyter_client, as JupyterLab and nbclient drive it) and one local server. Each long cell of the
notebooks - 02's download wait, 04's latency run, 05's scorecard, 06's sweep, rate search, mixed workload, replay
and tuning - is run from the notebook's own source on the local target and interrupted mid-run with the kernel's
interrupt (SIGINT, the stop button). Each must then: stop (the cell's reply comes back), show one line saying what
stopped and what was kept - no traceback, no ``KeyboardInterrupt`` - still count as stopped (an error reply, so
Run All stops there), leave no request going to the server, and leave the kernel working: a trivial cell answers
within 30 s. Before the fix the interrupted load generator kept sending and a rerun could hang for good (tqdm's
lock, held by a thread that died drawing a widget).

The bounds here are hang detectors, not timings (those are in benchmarks/): a cell that has not stopped 20 s after
its interrupt has not stopped.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import sys
import time
import urllib.request
from pathlib import Path

import jupytext
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
STOP_BOUND_S = 20.0     # an interrupted cell must have answered by then (the requirement is 2 s: see the benchmark)
TRIVIAL_TIMEOUT_S = 30.0

pytestmark = pytest.mark.slow


def _cell(notebook: str, needle: str) -> str:
    """The source of the first code cell of ``notebook`` containing ``needle`` (the notebook's own code)."""
    nb = jupytext.read(NOTEBOOKS / f"{notebook}.py", fmt="py:percent")
    for cell in nb.cells:
        if cell.cell_type == "code" and needle in cell.source:
            return cell.source
    raise AssertionError(f"{notebook} has no cell with {needle!r}")


def _cells(notebook: str, *needles: str) -> str:
    return "\n".join(_cell(notebook, n) for n in needles)


class Kernel:
    """One IPython kernel; :meth:`run` executes code, optionally interrupting it after ``interrupt_after`` s."""

    def __init__(self, env: dict, cwd: Path):
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, *, timeout: float = 300.0, interrupt_after: float | None = None,
            interrupt_when=None) -> dict:
        """Execute ``code``; interrupt it ``interrupt_after`` s after the kernel began executing it (its ``busy``
        status: on a loaded machine the request may wait before that), or as soon as ``interrupt_when(outputs)``
        says the cell has got far enough (an event, whatever the machine's speed)."""
        msg_id = self.kc.execute(code)
        began = time.monotonic()
        started = None  # when the kernel said it is busy with this request
        interrupted_at = None
        outputs: list[dict] = []
        while True:
            now = time.monotonic()
            due = (interrupt_after is not None and started is not None and now - started >= interrupt_after) or \
                (interrupt_when is not None and interrupt_when(outputs))
            if due and interrupted_at is None:
                self.km.interrupt_kernel()
                interrupted_at = now
            limit = (interrupted_at + STOP_BOUND_S) if interrupted_at is not None else began + timeout
            if now > limit:
                return {"status": "hung", "outputs": outputs, "stopped_s": None}
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "busy" and started is None:
                started = time.monotonic()
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind in ("stream", "error", "display_data", "execute_result"):
                outputs.append({"type": kind, **content})
            elif kind == "update_display_data":
                outputs.append({"type": "update", **content})
        reply = self.kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:  # a stale reply (kernel_info from the start)
            reply = self.kc.get_shell_msg(timeout=10)
        stopped = None if interrupted_at is None else time.monotonic() - interrupted_at
        return {"status": reply["content"]["status"], "outputs": outputs, "stopped_s": stopped,
                "ename": reply["content"].get("ename")}

    def ok(self, code: str, timeout: float = 300.0) -> dict:
        result = self.run(code, timeout=timeout)
        assert result["status"] == "ok", _describe(result)
        return result

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _text(output: dict) -> str:
    if output["type"] == "stream":
        return output.get("text", "")
    if output["type"] == "error":
        return "\n".join(output.get("traceback", []))
    return str(output.get("data", {}).get("text/plain", ""))


def _describe(result: dict) -> str:
    return f"status {result['status']}: " + " | ".join(_text(o)[-400:] for o in result["outputs"])


def _level_done(outputs: list[dict]) -> bool:
    """The progress line has moved past the first level (``level 2 of 4``)."""
    return any(re.search(r"level [2-9]\d* of \d+", _text(o)) for o in outputs[-3:])


def _final_lines(result: dict) -> list[str]:
    """What the cell shows at the end: each display's last update, and the streams."""
    shown: dict[str, str] = {}
    order: list[str] = []
    for n, output in enumerate(result["outputs"]):
        key = output.get("transient", {}).get("display_id") or f"#{n}"
        if key not in shown:
            order.append(key)
        shown[key] = _text(output)
    return [line for key in order for line in shown[key].splitlines() if line.strip()]


def _served(url: str) -> float:
    """Requests the server has finished (answered or aborted), from its /metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(v) for v in re.findall(r'^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$', text, re.M))


def _assert_stopped_cleanly(kernel: Kernel, result: dict, words: str, url: str | None = None) -> None:
    assert result["status"] != "hung", f"did not stop within {STOP_BOUND_S} s of the interrupt: {_describe(result)}"
    assert result["status"] == "error", f"an interrupted cell must still count as stopped: {_describe(result)}"
    assert not any(o["type"] == "error" for o in result["outputs"]), f"a traceback was shown: {_describe(result)}"
    lines = _final_lines(result)
    text = "\n".join(lines)
    assert "KeyboardInterrupt" not in text and "Traceback" not in text and "threading.py" not in text, text
    stops = [line for line in lines if re.search(r"stopped|interrupted", line)]
    assert len(stops) == 1 and re.search(words, stops[0]), f"want one line about {words!r}, got: {lines}"
    if url is not None:  # the load generator sent nothing more once the cell had stopped
        before = _served(url)
        time.sleep(1.0)
        assert _served(url) == before, "requests kept reaching the server after the interrupt"
    trivial = kernel.run("1 + 1", timeout=TRIVIAL_TIMEOUT_S)
    assert trivial["status"] == "ok", f"the next cell did not run normally: {_describe(trivial)}"


@pytest.fixture(scope="module")
def local_target(tmp_path_factory):
    """The local target deployed as 01-03 leave it (the server lives in this process), and one kernel."""
    home = tmp_path_factory.mktemp("interrupts-home")
    env = dict(os.environ, TKE_PLAYBOOK_HOME=str(home), TKE_PLAYBOOK_TARGET="local", TKE_PLAYBOOK_QUICK="1",
               TKE_PLAYBOOK_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("KUBECONFIG", None)
    saved = {k: os.environ.get(k) for k in ("TKE_PLAYBOOK_HOME", "TKE_PLAYBOOK_OFFLINE")}
    os.environ.update(TKE_PLAYBOOK_HOME=str(home), TKE_PLAYBOOK_OFFLINE="1")
    from tke_playbook.playbook import open_target

    from tke_playbook.reporting import QuietReporter

    pb = open_target("local", reporter=QuietReporter())
    pb.storage.create(pb.storage.defaults())
    download = pb.download.defaults()
    pb.download.start(download, pb.download.plan(download))
    pb.download.wait()
    with socket.socket() as sock:  # a port of its own: 60000 may serve the notebooks of another worker right now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = pb.serving.deploy(pb.serving.defaults().replace(service_port=port))
    kernel = Kernel(env, NOTEBOOKS)
    try:
        yield kernel, endpoint.url
    finally:
        kernel.close()
        pb.teardown(keep_pvc=False)
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def test_notebook_06_long_cells_stop_on_an_interrupt_and_the_kernel_goes_on(local_target):
    kernel, url = local_target
    kernel.ok(_cells("06_benchmark", "TKE_PLAYBOOK_TARGET", "import (DocumentLoad", "pb = open_target"))
    sweep = _cell("06_benchmark", "closed = run_closed_loop")
    result = kernel.run(sweep, interrupt_when=_level_done)  # mid-run, with a level's results to keep
    _assert_stopped_cleanly(kernel, result, r"closed loop: stopped after \d+ requests.*kept in", url)
    kernel.ok(sweep)  # the rerun after an interrupt: it froze before the fix
    result = kernel.run(_cell("06_benchmark", "search = find_sustainable_rate"), interrupt_after=1.0)
    _assert_stopped_cleanly(kernel, result, r"rate search: stopped after", url)
    # works after all that; a target no level misses, so the replay below has a rate to replay on a loaded machine
    kernel.ok("search = find_sustainable_rate(endpoint.url, endpoint.model, 60_000, ceiling_from=closed.summary,"
              " fractions=(0.25,), level_s=0.5, api_key=endpoint.api_key, progress=True)\n"
              "assert search.sustainable is not None, search.table()")
    for needle, words in (("mixed = run_mixed", r"mixed workload: stopped after"),
                          ("report, replayed = replay", r"replay: stopped after")):
        result = kernel.run(_cell("06_benchmark", needle), interrupt_after=1.0)
        _assert_stopped_cleanly(kernel, result, words, url)
    tuning = "QUICK = False\n" + _cell("06_benchmark", "tuning = pb.serving.tune(")  # tries another setting
    result = kernel.run(tuning, interrupt_after=2.0)
    _assert_stopped_cleanly(kernel, result, r"tuning: stopped after")


def test_notebook_06_plans_replays_and_scales_out_when_no_rate_holds_the_target(local_target):
    """A presenter's loaded laptop, or a target too tight: no level of the rate search holds p99, and every cell
    after the search still runs (from the best level measured, said not to hold) - no NameError, no traceback."""
    kernel, _ = local_target
    kernel.ok(_cells("06_benchmark", "TKE_PLAYBOOK_TARGET", "import (DocumentLoad", "pb = open_target",
                     "closed = run_closed_loop"))
    kernel.ok("P99_TARGET_MS = 0.001  # no server answers within a microsecond")
    for needle in ("search = find_sustainable_rate", "query_plan = plan_capacity", "project_gpu(",
                   "report, replayed = replay", "scale = ScaleOutSpec", "pb.serving.autoscaler_checks(scale)"):
        result = kernel.ok(_cell("06_benchmark", needle))
        assert "tke-playbook-error" not in str(result), f"{needle}: a red block\n{_describe(result)}"
    kernel.ok("assert search.sustainable is None and not search.planning_rate.held\n"
              "assert any('did not hold' in n for n in query_plan.notes), query_plan.notes")


def test_notebook_04_latency_and_05_scorecard_stop_on_an_interrupt(local_target):
    kernel, url = local_target
    kernel.ok(_cells("04_embeddings", "TKE_PLAYBOOK_TARGET", "from tke_playbook.loadgen import", "pb = open_target"))
    latency = "REQUESTS = 2000\n" + _cell("04_embeddings", "run_closed_loop(")
    result = kernel.run(latency, interrupt_after=1.0)
    _assert_stopped_cleanly(kernel, result, r"closed loop: stopped after", url)
    kernel.ok(_cells("05_compare_models", "TKE_PLAYBOOK_TARGET", "run_scorecard,", "pb = open_target"))
    result = kernel.run(_cell("05_compare_models", "result = run_scorecard("), interrupt_after=1.5)
    _assert_stopped_cleanly(kernel, result, r"scorecard: stopped.*kept in")


def test_notebook_02_download_wait_stops_on_an_interrupt(local_target):
    kernel, _ = local_target
    kernel.ok(_cells("02_download_model", "TKE_PLAYBOOK_TARGET", "import DownloadForm", "pb = open_target"))
    tests = str(Path(__file__).resolve().parent)
    kernel.ok(f"import shutil, sys\nsys.path.insert(0, {tests!r})\nfrom fakes.hub import FakeHub\n"
              "from tke_playbook.specs.catalog import OFFLINE_MODEL\n"
              "from tke_playbook.hostenv import offline_model_dir\n"
              "from tke_playbook.playbook.facade import LocalPlaybook\n"
              "hub = FakeHub({OFFLINE_MODEL: offline_model_dir()}, rate=2_000_000).start()\n"
              # the fake hub runs in this kernel: a worker that drops a connection (it retries on a slow machine)
              # must not print the server thread's traceback into the cell under test
              "hub._server.handle_error = lambda request, address: None\n"
              "pb = LocalPlaybook(pb.settings, mirror=hub)\n"
              "spec = pb.download.defaults()\nshutil.rmtree(pb.download.folder(spec), ignore_errors=True)\n"
              "pb.download.start(spec, pb.download.plan(spec))")  # a slow download to wait for
    result = kernel.run(_cell("02_download_model", "pb.download.wait()"), interrupt_after=1.0)
    _assert_stopped_cleanly(kernel, result, r"stopped watching the download.*keeps going in the background")
    kernel.ok("pb.download.stop()\nhub.stop()")
