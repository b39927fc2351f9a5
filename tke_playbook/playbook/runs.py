"""One record of what runs, shared by every kernel: local servers and downloads, checked for liveness on each read.

Notebooks run in separate kernels (JupyterLab keeps earlier ones running; nbclient starts one per notebook), so
what runs cannot live in a kernel's memory. Each running thing has one small JSON file under
``<state_dir>/runs/``: ``servers/<deployment>.json`` and ``downloads/<model slug>.json``. One file per record and
one temporary file per writer, so two kernels writing at once never lose each other's record.

A server record counts only while its process is alive, is not a zombie and runs ``tke_playbook.localserver``
(so a reused pid is never taken for our server); a dead one is deleted when read. A download record whose status
is ``running`` but whose owning kernel is gone reads as ``interrupted`` (its workers died with that kernel).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RUNS_DIR = "runs"
STOP_TIMEOUT_S = 10.0
SERVER_MARK = "tke_playbook.localserver"


# --- processes ---------------------------------------------------------------------------------------------


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is a child of this process (else nothing)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def process_alive(pid: Any) -> bool:
    """True when ``pid`` names a running process. A zombie (exited, not yet collected) counts as dead, and is
    collected here when it is a child of this process."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not _exists(pid):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:  # no /proc (macOS): collect it if it is our exited child, then look again
        _reap(pid)
        return _exists(pid)
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:
        _reap(pid)
        return False
    return True


def command_line(pid: int) -> str:
    """The command line of ``pid`` ('' when unknown)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        pass
    try:
        return subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True,
                              timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def is_local_server(pid: Any) -> bool:
    """True when ``pid`` is alive and runs the local embedding server."""
    return process_alive(pid) and SERVER_MARK in command_line(pid)


def stop_process(pid: int, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM ``pid``, then SIGKILL after ``timeout`` s; True once it is gone."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return True
            time.sleep(0.05)
    return not process_alive(pid)


# --- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerRecord:
    """A local server some kernel started: which deployment, where it answers, which process."""

    name: str                 # the deployment (vllm-<slug>)
    pid: int
    port: int
    url: str
    model: str                # catalog id
    served_model_name: str
    spec: dict                # the serving spec (ServingSpec.to_dict)
    model_dir: str
    log: str = ""
    key_file: str | None = None
    kernel_pid: int = 0       # the kernel that started it (the server outlives it; 99 or a redeploy stops it)
    started_at: float = 0.0

    def alive(self) -> bool:
        return is_local_server(self.pid)


@dataclass(frozen=True)
class DownloadRecord:
    """A download some kernel launched: its spec, its plan and how it stands."""

    slug: str
    model: str
    spec: dict                # the DownloadSpec (DownloadSpec.to_dict)
    plan_id: str
    shard_bytes: tuple[int, ...]
    folder: str
    status: str = "running"   # running | done | failed | interrupted
    kernel_pid: int | None = None  # the kernel whose threads run it (None on a cluster: the Job runs it)
    started_at: float = 0.0
    error: str = ""
    extra: dict = field(default_factory=dict)

    def current_status(self) -> str:
        """``status``, except that a running download whose kernel is gone is ``interrupted``."""
        if self.status == "running" and self.kernel_pid is not None and not process_alive(self.kernel_pid):
            return "interrupted"
        return self.status


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # one temporary file per writer
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunRegistry:
    """The records in ``folder`` (``<state_dir>/runs/<target>``): read them (live ones only), add, remove."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _server_path(self, name: str) -> Path:
        return self.folder / "servers" / f"{name}.json"

    def _download_path(self, slug: str) -> Path:
        return self.folder / "downloads" / f"{slug}.json"

    # servers

    def servers(self) -> list[ServerRecord]:
        """The recorded servers that still run (records of dead ones are deleted here)."""
        live = []
        for path in sorted((self.folder / "servers").glob("*.json")):
            data = _read_json(path)
            try:
                record = ServerRecord(**data) if data else None
            except TypeError:
                record = None
            if record is not None and record.alive():
                live.append(record)
            else:
                path.unlink(missing_ok=True)
        return live

    def server(self, name: str) -> ServerRecord | None:
        return next((s for s in self.servers() if s.name == name), None)

    def add_server(self, record: ServerRecord) -> None:
        _write_json(self._server_path(record.name), asdict(record))

    def remove_server(self, name: str) -> None:
        self._server_path(name).unlink(missing_ok=True)

    # downloads

    def downloads(self) -> list[DownloadRecord]:
        """Every recorded download, most recently started first."""
        found = []
        for path in (self.folder / "downloads").glob("*.json"):
            data = _read_json(path)
            try:
                found.append(DownloadRecord(**{**data, "shard_bytes": tuple(data.get("shard_bytes") or ())}))
            except TypeError:
                path.unlink(missing_ok=True)
        return sorted(found, key=lambda r: r.started_at, reverse=True)

    def download(self, slug: str | None = None) -> DownloadRecord | None:
        """The download of model ``slug``, else the latest one; None when nothing is recorded."""
        records = self.downloads()
        if slug is None:
            return records[0] if records else None
        return next((r for r in records if r.slug == slug), None)

    def put_download(self, record: DownloadRecord) -> None:
        _write_json(self._download_path(record.slug), asdict(record))

    def remove_download(self, slug: str) -> None:
        self._download_path(slug).unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every record (the processes are the caller's business)."""
        for path in list(self.folder.glob("*/*.json")):
            path.unlink(missing_ok=True)
