"""The local target: run the same worker as N OS processes writing into a local folder that plays the PVC.

The worker's files are laid out exactly as the Job's ConfigMap ships them (``.tke-playbook/worker/``), so the
local processes run what the pods run.

:func:`run_local_download` runs a plan (at most ``workers`` processes at a time, like the Job's parallelism) and
returns the verified model folder, or raises the worker's error (a ``VerificationError`` or ``HubError`` naming the
file). :func:`download_local` lists and plans first; offline it serves the bundled all-MiniLM-L6-v2 through a local
hub mirror so the real download path runs. :func:`progress_frame` shows progress as a table.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import DownloadError, HubError, VerificationError
from ..modelfolder import is_complete, read_manifest
from . import progress
from .manifests import PLAN_KEY, build_worker_configmap
from .planner import DownloadPlan
from .spec import DownloadSpec
from .tokens import TOKEN_ENV_IN_POD, reveal

_KINDS = {"verification": VerificationError, "hub": HubError}


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ship_worker(spec: DownloadSpec, plan: DownloadPlan, where: Path) -> Path:
    """Lay out the worker ConfigMap's files, so local processes run exactly what the Job's pods run."""
    where.mkdir(parents=True, exist_ok=True)
    for key, text in build_worker_configmap(spec, plan)["data"].items():
        (where / key).write_text(text, encoding="utf-8")
    return where


def _failure(folder: Path, plan: DownloadPlan, codes: dict[int, int], logs: dict[int, Path]) -> DownloadError:
    states = progress.shard_states(folder, plan.plan_id, len(plan.shards))
    for index, code in sorted(codes.items()):
        state = states.get(index, {})
        if code and state.get("error"):
            cls = _KINDS.get(state.get("kind"), DownloadError)
            return cls(f"Shard {index} failed: {state['error']}", obj=state.get("file") or index)
    index, code = next((i, c) for i, c in sorted(codes.items()) if c)
    return DownloadError(f"Download worker {index} exited with code {code}:\n{_tail(logs[index])}", obj=index)


def run_local_download(spec: DownloadSpec, plan: DownloadPlan, pvc_dir=None, workers: int | None = None,
                       on_progress=None, *, token=None, poll_s: float = 0.5, timeout_s: float | None = None,
                       worker_args=()) -> Path:
    """Download ``plan`` into ``pvc_dir/<model>`` with worker processes; return the complete model folder."""
    from ..target import local_pvc_dir

    root = Path(pvc_dir) if pvc_dir is not None else local_pvc_dir(spec.pvc)
    folder = root / plan.model_path
    workers = workers or spec.parallelism
    shipped = _ship_worker(spec, plan, progress.state_dir(folder) / "worker")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if reveal(token):
        env[TOKEN_ENV_IN_POD] = reveal(token)
    pending, running, codes, logs = list(range(len(plan.shards))), {}, {}, {}
    deadline = time.monotonic() + timeout_s if timeout_s else None
    try:
        while pending or running:
            while pending and len(running) < workers:
                index = pending.pop(0)
                logs[index] = progress.state_dir(folder) / "logs" / f"{index}.log"
                logs[index].parent.mkdir(parents=True, exist_ok=True)
                with open(logs[index], "ab") as log:
                    running[index] = subprocess.Popen(
                        [sys.executable, str(shipped / "worker.py"), "--plan", str(shipped / PLAN_KEY),
                         "--root", str(root), "--index", str(index), *worker_args],
                        stdout=log, stderr=subprocess.STDOUT, env=env)
            time.sleep(poll_s)
            for index, proc in list(running.items()):
                if proc.poll() is not None:
                    codes[index] = proc.returncode
                    del running[index]
            if on_progress is not None:
                on_progress(progress.read_progress(folder))
            if deadline and time.monotonic() > deadline:
                raise DownloadError(f"The download of {plan.model_path} did not finish within {timeout_s:.0f} s; "
                                    f"run it again - it resumes", obj=plan.model_path)
    finally:
        for proc in running.values():
            proc.kill()
            proc.wait()
    if any(codes.values()):
        raise _failure(folder, plan, codes, logs)
    if not (is_complete(folder) and read_manifest(folder).get("plan_id") == plan.plan_id):
        _finish_here(plan, folder)  # the final verify step, should the last worker have stopped before it
    return folder


def _finish_here(plan: DownloadPlan, folder: Path) -> None:
    import argparse

    import httpx

    from . import worker

    opts = argparse.Namespace(folder=folder, index="final", retries=3, backoff=0.5, max_backoff=5.0)
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        if not worker.finish(client, plan.to_dict(), opts):
            raise DownloadError(f"The download of {plan.model_path} is incomplete: some shards did not finish; run "
                                f"it again - it resumes", obj=plan.model_path)


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout_s``."""
    import socket

    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=timeout_s):
            return True
    except OSError:
        return False


def download_local(spec: DownloadSpec, *, pvc_dir=None, token=None, on_progress=None,
                   offline: bool | None = None, timeout_s: float | None = None) -> Path:
    """List, plan and download on this machine. Offline (no route to the hub) the bundled all-MiniLM-L6-v2 is
    served by a local mirror the toolkit starts; other models need the internet."""
    from ..catalog import OFFLINE_MODEL
    from .listing import plan_download, resolve_endpoint
    from .mirror import offline_mirror

    endpoint = resolve_endpoint(spec.source, spec.endpoint)
    if offline is None:
        offline = os.environ.get("TKE_PLAYBOOK_OFFLINE") == "1" or not hub_reachable(endpoint)
    if not offline:
        plan = plan_download(spec, token=token)
        return run_local_download(spec, plan, pvc_dir, on_progress=on_progress, token=token, timeout_s=timeout_s)
    if spec.model != OFFLINE_MODEL:
        raise HubError(f"{endpoint} cannot be reached and only {OFFLINE_MODEL} ships with the toolkit: connect to "
                       f"the internet (or set {spec.source.endpoint_env} to a reachable mirror) to download "
                       f"{spec.model}", obj=spec.model)
    with offline_mirror() as hub:
        plan = plan_download(spec, endpoint=hub.url)
        return run_local_download(spec, plan, pvc_dir, on_progress=on_progress, timeout_s=timeout_s)


def progress_frame(folder):
    """Per-shard progress as a DataFrame: status, bytes done/total, percent, error."""
    import pandas as pd

    summary = progress.read_progress(folder)
    frame = pd.DataFrame(summary["shards"], columns=["shard", "status", "bytes_done", "bytes_total", "error"])
    frame["percent"] = (100 * frame["bytes_done"] / frame["bytes_total"].clip(lower=1)).round(1)
    return frame
