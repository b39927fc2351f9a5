"""Ctrl-C during `tke-playbook download` (issue 21, item 8): one line saying it stopped and that running it again
resumes, the status shells give SIGINT (130), no worker left behind - and the rerun does resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakes.hub import FakeHub
from hubfiles import REPO

from tke_playbook.download import plan_download
from tke_playbook.podworker.modelfolder import is_complete
from tke_playbook.specs.download import DownloadSpec


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _recorded_bytes(pvc: Path) -> int:
    """The bytes the shards' piece records say are synced on disk (``parts/<index>.pieces.json``)."""
    total = 0
    for record in pvc.rglob("*.pieces.json"):
        try:
            total += sum(piece[3] for piece in json.loads(record.read_text())["pieces"])
        except (ValueError, KeyError, OSError):  # being rewritten at this moment: read it next time
            continue
    return total


def _as_a_terminal_starts_it() -> None:
    """SIGINT back to its default before the CLI starts, as a shell does for a foreground job: a process that
    inherits SIGINT ignored (a pytest-xdist worker ignores it) keeps it ignored, and Python then never raises
    KeyboardInterrupt - the download would simply run to its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _download(hub, pvc, **popen):
    return subprocess.Popen([sys.executable, "-m", "tke_playbook.cli", "download", "--model", REPO, "--source",
                             "huggingface", "--endpoint", hub.url, "--pvc-dir", str(pvc), "--workers", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="needs Linux /proc/<pid>/task/<tid>/children")
def test_ctrl_c_stops_in_one_line_with_status_130_and_the_rerun_resumes(repo_dir, tmp_path):
    with FakeHub({REPO: repo_dir}, rate=10_000) as hub:  # slow (~40 s): still downloading when Ctrl-C comes
        cli = _download(hub, tmp_path / "pvc", start_new_session=True,  # its own group, as a terminal's job
                        preexec_fn=_as_a_terminal_starts_it)
        deadline, workers = time.monotonic() + 60, set()
        while time.monotonic() < deadline and len(workers) < 3:
            workers = _children(cli.pid)
            time.sleep(0.1)
        assert len(workers) == 3, "the CLI started its worker processes"
        deadline = time.monotonic() + 60  # until some bytes are synced and recorded (what a rerun resumes from):
        while time.monotonic() < deadline and not _recorded_bytes(tmp_path / "pvc"):  # a fixed sleep raced the
            time.sleep(0.2)  # workers' start on a loaded machine and interrupted them before their first record
        assert _recorded_bytes(tmp_path / "pvc"), "the workers recorded no synced bytes within 60 s"
        os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        _, err = cli.communicate(timeout=60)
        assert cli.returncode == 130
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("tke-playbook download: stopped (Ctrl-C)") and "again to resume" in lines[0]
        assert not any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
                       for w in workers)
        folder = tmp_path / "pvc" / REPO
        assert not is_complete(folder)
        total = plan_download(DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url)).total_bytes
        hub.rate, before = None, hub.bytes_sent
        rerun = _download(hub, tmp_path / "pvc")
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert is_complete(folder) and "complete:" in out
        assert hub.bytes_sent - before < total, hub.ranges
