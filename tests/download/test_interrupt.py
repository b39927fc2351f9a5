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


def _synced_spans(pvc: Path) -> dict[str, list[tuple[int, int]]]:
    """What the shards' piece records (``parts/<index>.pieces.json``) say is synced on disk: file -> [start, end)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for record in pvc.rglob("*.pieces.json"):
        try:
            pieces = json.loads(record.read_text())["pieces"]
        except (ValueError, KeyError, OSError):  # being rewritten at this moment: read it next time
            continue
        for path, start, _, done in pieces:
            if done:
                spans.setdefault(path, []).append((start, start + done))
    return spans


def _size(synced: dict[str, list[tuple[int, int]]]) -> int:
    return sum(end - start for spans in synced.values() for start, end in spans)


def _lost(before: dict[str, list[tuple[int, int]]], after: dict[str, list[tuple[int, int]]]) -> list:
    """The spans recorded synced ``before`` that the records ``after`` no longer cover."""
    return [(path, first, last) for path, spans in before.items() for first, last in spans
            if not any(start <= first and last <= end for start, end in after.get(path, ()))]


def _asked(header: str) -> tuple[int, float]:
    """The [start, end) a Range header asks for (no header: the whole file)."""
    first, _, last = header.removeprefix("bytes=").partition("-")
    return int(first or 0), int(last) + 1 if last else float("inf")


def _fetched_again(served, synced: dict[str, list[tuple[int, int]]]) -> list[tuple[str, str]]:
    """The requests in ``served`` that ask for bytes the records say were synced."""
    again = []
    for request in served:
        first, last = _asked(request.range)
        if any(first < end and start < last for start, end in synced.get(request.path, ())):
            again.append((request.path, request.range))
    return again


def _as_a_terminal_starts_it() -> None:
    """SIGINT back to its default before the CLI starts, as a shell does for a foreground job: a process that
    inherits SIGINT ignored (a pytest-xdist worker ignores it) keeps it ignored, and Python then never raises
    KeyboardInterrupt - the download would simply run to its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _download(hub, pvc, **popen):
    return subprocess.Popen([sys.executable, "-m", "tke_playbook.cli", "download", "--model", REPO, "--source",
                             "huggingface", "--endpoint", hub.url, "--pvc-dir", str(pvc), "--workers", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _started_with_a_record(hub, pvc: Path):
    """The CLI started in its own group, as a terminal's job, once its 3 workers run and some bytes are synced and
    recorded (what a rerun resumes from): (cli, workers, the spans recorded then). A fixed sleep raced the workers'
    start on a loaded machine and interrupted them before their first record."""
    cli = _download(hub, pvc, start_new_session=True, preexec_fn=_as_a_terminal_starts_it)
    deadline, workers = time.monotonic() + 60, set()
    while time.monotonic() < deadline and len(workers) < 3:
        workers = _children(cli.pid)
        time.sleep(0.1)
    assert len(workers) == 3, "the CLI started its worker processes"
    deadline, seen = time.monotonic() + 60, {}
    while time.monotonic() < deadline and not (seen := _synced_spans(pvc)):
        time.sleep(0.2)
    assert seen, "the workers recorded no synced bytes within 60 s"
    return cli, workers, seen


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="needs Linux /proc/<pid>/task/<tid>/children")
def test_ctrl_c_stops_in_one_line_with_status_130_and_the_rerun_resumes(repo_dir, tmp_path):
    with FakeHub({REPO: repo_dir}, rate=10_000) as hub:  # slow (~40 s): still downloading when Ctrl-C comes
        cli, workers, seen = _started_with_a_record(hub, tmp_path / "pvc")
        os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        _, err = cli.communicate(timeout=60)
        assert cli.returncode == 130
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("tke-playbook download: stopped (Ctrl-C)") and "again to resume" in lines[0]
        assert not any(_alive(w) for w in workers)
        folder = tmp_path / "pvc" / REPO
        assert not is_complete(folder)
        total = plan_download(DownloadSpec(model=REPO, source="huggingface", endpoint=hub.url)).total_bytes
        synced = _synced_spans(tmp_path / "pvc")  # the workers are gone: what the rerun must not fetch again
        assert not _lost(seen, synced), (seen, synced)  # the interrupt kept every record of synced bytes
        hub.rate, asked_before = None, len(hub.served)
        rerun = _download(hub, tmp_path / "pvc")
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert is_complete(folder) and "complete:" in out
        # Only the rerun's own requests: the hub's bytes_sent also counts the last block that each throttled response
        # of the stopped run, asleep at Ctrl-C, still writes into its dead connection - seconds later, mid-rerun.
        served = hub.served[asked_before:]
        assert not _fetched_again(served, synced), (synced, _fetched_again(served, synced))
        assert sum(r.sent for r in served) <= total - _size(synced), (synced, served)
