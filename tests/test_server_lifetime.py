"""Issue 20 (minor): one lifetime for the local server. 03 starts it; it outlives the kernel that started it, as a
Deployment outlives the ``kubectl`` that applied it, until 99 (or a redeploy) stops it; 04-06 never start one but say
in one line to run 03; and a server stopped from another kernel never lingers as a ``<defunct>`` child."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from fakes.localtarget import free_port, link_offline_model
from tke_playbook.errors import NotDeployedError

KERNEL = textwrap.dedent("""
    import sys
    from tke_playbook.playbook import open_target

    pb = open_target("local")
    if sys.argv[1] == "deploy":
        print(pb.serving.deploy(pb.serving.defaults().replace(service_port=int(sys.argv[2]))).url, flush=True)
    elif sys.argv[1] == "endpoint":
        print(pb.serving.endpoint().url, flush=True)
    else:
        print(len(pb.teardown()), flush=True)
    sys.stdin.read()  # alive, like a JupyterLab kernel, until the test lets it go
""")


class Kernel:
    """Another notebook's kernel: a Python process running one facade call, alive until closed."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen([sys.executable, "-c", KERNEL, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.answer = self.process.stdout.readline().strip()
        if not self.answer:
            raise AssertionError(self.process.stderr.read())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=3) as answer:
            return answer.status == 200
    except OSError:
        return False


def _state(pid: int) -> str | None:
    """The process state letter from /proc (``Z`` for a zombie), None once the pid is gone. Read directly: the
    toolkit's own liveness check collects its zombie children, which would hide the defect."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def test_a_gone_server_is_reported_never_started_again(pb):
    """04-06 call pb.serving.endpoint(): with 03's server gone they say to run 03, in one line, and start nothing."""
    link_offline_model(pb)
    pb.records.record_serving(pb.serving.defaults().replace(service_port=free_port()))  # 03 ran; its server is gone
    with pytest.raises(NotDeployedError, match="no longer running") as gone:
        pb.serving.endpoint()
    assert str(gone.value).endswith("run 03_deploy_vllm again") and "\n" not in str(gone.value)
    assert pb.running().empty and pb.records.runs.servers() == []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_the_server_outlives_its_kernel_serves_the_next_and_99_stops_it(pb):
    link_offline_model(pb)
    port = free_port()
    deploy = Kernel("deploy", str(port))  # 03's kernel
    deploy.close()  # the kernel shuts down (JupyterLab "Shut Down Kernel", or papermill's end)
    time.sleep(3)  # the old server watched its parent once a second and left with it
    record = pb.records.runs.server(pb.serving.defaults().name)
    assert record is not None and record.url == deploy.answer and _healthy(record.url)
    notebook_04 = Kernel("endpoint")
    try:
        assert notebook_04.answer == record.url and [s.pid for s in pb.records.runs.servers()] == [record.pid]
    finally:
        notebook_04.close()
    Kernel("teardown").close()  # 99
    assert not _healthy(record.url) and pb.running().empty


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_server_stopped_from_another_kernel_leaves_no_defunct_child(pb):
    link_offline_model(pb)
    endpoint = pb.serving.deploy(pb.serving.defaults().replace(service_port=free_port()))
    pid = pb.records.runs.server(pb.serving.defaults().name).pid
    Kernel("teardown").close()  # 99 in another kernel kills our child
    deadline = time.monotonic() + 10
    while _state(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _state(pid) is None, f"pid {pid} lingers in state {_state(pid)} (Z: <defunct>)"
    assert not _healthy(endpoint.url)
