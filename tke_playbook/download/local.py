"""The local target: run the same worker as OS processes writing into a local folder that plays the PVC.

The worker's files are laid out exactly as the Job's ConfigMap ships them, in a private temporary folder (never
on the PVC, where hub content lands), so the local processes run what the pods run.

:func:`run_local_download` runs a plan (at most ``workers`` processes at a time, bounded by the shards and the
machine's cores; each dies with this process) and returns the verified model folder, or raises the worker's
error (a ``VerificationError`` or ``HubError`` naming the file). :func:`plan_local` lists and plans on this
machine - offline (:func:`hub_offline`) from a local hub mirror serving the bundled all-MiniLM-L6-v2, so the real
download path runs; :func:`download_local` plans and runs in one call.
:func:`progress_frame` shows progress as a table; :func:`require_finished` says whether a download really ended.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import DownloadError, HubError, InvalidSpecError, VerificationError
from ..manifests.download import PLAN_KEY, build_worker_configmap
from ..podworker import progress
from ..podworker.modelfolder import completeness_problem
from ..podworker.planner import MAX_SHARDS, DownloadPlan, require_plan_for
from ..podworker.worker import complete
from ..specs.catalog import OFFLINE_MODEL
from ..specs.download import DownloadSpec
from ..specs.tokens import TOKEN_ENV_IN_POD, reveal
from .listing import plan_download, resolve_endpoint
from .mirror import HubMirror, offline_mirror


_KINDS = {"verification": VerificationError, "hub": HubError}
_SYSTEM_TREES = ("/proc", "/sys", "/dev")


def max_local_workers() -> int:
    """Worker processes at once on this machine: 4 per core (downloads wait on the network), at most 64."""
    return max(2, min(MAX_SHARDS, 4 * (os.cpu_count() or 1)))


def system_tree(path, trees=_SYSTEM_TREES) -> str | None:
    """The system tree ``path`` is in, as typed or once symlinks are resolved (``/proc/self/cwd``), or None."""
    for where in (os.path.abspath(path), os.path.realpath(path)):
        tree = next((t for t in trees if where == t or where.startswith(t.rstrip("/") + "/")), None)
        if tree:
            return tree
    return None


def validate_pvc_dir(pvc_dir) -> Path:
    """The folder playing the PVC: a writable directory (created if missing), never a file or a system tree."""
    text = os.fspath(pvc_dir) if isinstance(pvc_dir, (str, os.PathLike)) else None
    if not text or not text.strip():
        raise InvalidSpecError("The PVC folder is empty: give a directory such as ~/models (or leave it out for the "
                               "toolkit's own folder)", field="pvc_dir", value=pvc_dir)
    path = Path(text).expanduser()
    tree = system_tree(path)
    if tree:
        raise InvalidSpecError(f"The PVC folder {text} is inside {tree}, a system tree: give a directory of your own "
                               f"such as ~/models", field="pvc_dir", value=text)
    try:
        os.stat(path)
    except FileNotFoundError:
        pass  # created below
    except OSError as exc:  # a name too long, a file on the way, no permission
        raise InvalidSpecError(f"The PVC folder {text} cannot be used ({exc.strerror}): give a writable directory "
                               f"such as ~/models", field="pvc_dir", value=text) from None
    if path.exists() and not path.is_dir():
        raise InvalidSpecError(f"The PVC folder {text} is a file, not a directory: give a directory such as ~/models",
                               field="pvc_dir", value=text)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidSpecError(f"The PVC folder {text} cannot be created ({exc.strerror}): give a writable directory",
                               field="pvc_dir", value=text) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidSpecError(f"The PVC folder {text} is not writable: give a directory you can write to",
                               field="pvc_dir", value=text)
    return path


def _tail(path: Path, lines: int = 5, since: int = 0) -> str:
    """The last lines a worker wrote to its log from byte ``since`` on (this run's, not an earlier run's)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(since)
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:]) or "(it wrote nothing)"


def _ship_worker(spec: DownloadSpec, plan: DownloadPlan, where: Path) -> Path:
    """Lay out the worker ConfigMap's files, so local processes run exactly what the Job's pods run."""
    for key, text in build_worker_configmap(spec, plan)["data"].items():
        (where / key).write_text(text, encoding="utf-8")
    return where


def _failure(folder: Path, plan: DownloadPlan, codes: dict[int, int], logs: dict[int, tuple]) -> DownloadError:
    states = progress.shard_states(folder, plan.plan_id, len(plan.shards))
    for index, code in sorted(codes.items()):
        state = states.get(index, {})
        if code and state.get("error"):
            cls = _KINDS.get(state.get("kind"), DownloadError)
            return cls(f"Shard {index} failed: {state['error']}", obj=state.get("file") or index)
    index, code = next((i, c) for i, c in sorted(codes.items()) if c)
    path, since = logs[index]
    return DownloadError(f"Download worker {index} exited with code {code}:\n{_tail(path, since=since)}", obj=index)


def _start(shipped: Path, root: Path, index: int, log: Path, env: dict, worker_args) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, str(shipped / "worker.py"), "--plan", str(shipped / PLAN_KEY),
                                 "--root", str(root), "--index", str(index), *worker_args],
                                stdout=out, stderr=subprocess.STDOUT, env=env)


def _run_processes(plan, shipped, root, folder, workers, env, on_progress, poll_s, timeout_s, worker_args):
    deadline = time.monotonic() + timeout_s if timeout_s else None
    pending, running, codes, logs = list(range(len(plan.shards))), {}, {}, {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                index = pending.pop(0)
                log = progress.tracking_dir(folder) / "logs" / f"{index}.log"
                logs[index] = (log, log.stat().st_size if log.exists() else 0)  # the log grows run after run
                running[index] = _start(shipped, root, index, log, env, worker_args)
            time.sleep(poll_s)
            for index, proc in list(running.items()):
                if proc.poll() is not None:
                    codes[index] = proc.returncode
                    del running[index]
            if on_progress is not None:
                on_progress(progress.read_progress(folder))
            if deadline and time.monotonic() > deadline:
                raise DownloadError(f"The download of {plan.model_path} did not finish within {timeout_s:.0f} s; run "
                                    f"it again - it resumes", obj=plan.model_path)
    finally:
        for proc in running.values():
            proc.kill()
            proc.wait()
    return codes, logs


def run_local_download(spec: DownloadSpec, plan: DownloadPlan, pvc_dir, workers: int | None = None,
                       on_progress=None, *, token=None, poll_s: float = 0.5, timeout_s: float | None = None,
                       worker_args=()) -> Path:
    """Download ``plan`` into ``pvc_dir/<model>`` with worker processes; return the complete model folder.
    The plan must have been made for ``spec`` (else InvalidSpecError)."""
    require_plan_for(spec, plan)
    root = validate_pvc_dir(pvc_dir)
    folder = root / plan.model_path
    workers = max(1, min(workers or spec.parallelism, len(plan.shards), max_local_workers()))
    env = dict(os.environ, PYTHONUNBUFFERED="1", TKE_PARENT_PID=str(os.getpid()))
    run_id = uuid.uuid4().hex  # shards report "done" anew in every run
    worker_args = ("--run-id", run_id, *worker_args)
    if reveal(token):
        env[TOKEN_ENV_IN_POD] = reveal(token)
    with tempfile.TemporaryDirectory(prefix="tke-worker-") as tmp:
        shipped = _ship_worker(spec, plan, Path(tmp))
        codes, logs = _run_processes(plan, shipped, root, folder, workers, env, on_progress, poll_s, timeout_s,
                                     worker_args)
    if any(codes.values()):
        raise _failure(folder, plan, codes, logs)
    if completeness_problem(folder) is not None:
        # the final step, should the last worker have stopped before it
        if not complete(plan.to_dict(), root, run_id=run_id, token=reveal(token), retries=3, max_backoff=5.0):
            raise DownloadError(f"The download of {plan.model_path} is incomplete: some shards did not finish; run "
                                f"it again - it resumes", obj=plan.model_path)
    return folder


def require_finished(folder) -> dict:
    """The progress summary of a download that really ended complete; else DownloadError saying what is left
    (no download state, a plan with no files, shards pending or failed, or an incomplete folder)."""
    summary = progress.read_progress(folder)
    if summary["plan_id"] is None:
        raise DownloadError(f"No download has run into {folder}: start it first (pb.download.start)", obj=str(folder))
    if summary["files_total"] == 0:
        raise DownloadError(f"The download plan for {folder} has no files: plan it again from the spec",
                            obj=str(folder))
    failed = [r for r in summary["shards"] if r["status"] == progress.FAILED]
    if failed:
        raise DownloadError(f"Shard {failed[0]['shard']} failed: {failed[0]['error']}", obj=str(folder))
    left = [r["shard"] for r in summary["shards"] if r["status"] != progress.DONE]
    if left:
        raise DownloadError(f"Shard(s) {left} of the download into {folder} have not finished: wait again or run "
                            f"the download again - it resumes", obj=str(folder))
    problem = completeness_problem(folder)
    if problem is not None:
        raise DownloadError(f"The download into {folder} is not complete: {problem}", obj=str(folder))
    return summary


def hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout_s``."""
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=timeout_s):
            return True
    except OSError:
        return False


def hub_offline(spec: DownloadSpec, timeout_s: float = 3.0, *, offline: bool = False) -> bool:
    """True when ``offline`` (the caller's setting, e.g. ``TKE_PLAYBOOK_OFFLINE=1`` read by the playbook's
    Settings) or the spec's hub (its endpoint, else the source's) cannot be reached within ``timeout_s``."""
    return offline or not hub_reachable(resolve_endpoint(spec.source, spec.endpoint), timeout_s)


def plan_local(spec: DownloadSpec, *, token=None, offline: bool | None = None,
               timeout_s: float = 3.0) -> tuple[DownloadPlan, HubMirror | None]:
    """List and plan a download on this machine: ``(plan, mirror)``. Offline (``offline``, or when None
    :func:`hub_offline`) the bundled all-MiniLM-L6-v2 is listed from a local mirror started here and returned
    running - the workers download from it and the caller stops it; other models raise HubError. Online the mirror
    is None."""
    if offline is None:
        offline = hub_offline(spec, timeout_s)
    if not offline:
        return plan_download(spec, token=token), None
    if spec.model != OFFLINE_MODEL:
        endpoint = resolve_endpoint(spec.source, spec.endpoint)
        raise HubError(f"{endpoint} cannot be reached and only {OFFLINE_MODEL} ships with the toolkit: connect to "
                       f"the internet (or set {spec.source.endpoint_env} to a reachable mirror) to download "
                       f"{spec.model}, or choose {OFFLINE_MODEL}", obj=spec.model)
    mirror = offline_mirror().start()
    try:
        return plan_download(spec, endpoint=mirror.url), mirror
    except BaseException:
        mirror.stop()
        raise


def download_local(spec: DownloadSpec, *, pvc_dir, token=None, on_progress=None,
                   offline: bool | None = None, timeout_s: float | None = None, workers: int | None = None) -> Path:
    """List, plan and download on this machine. Offline (no route to the hub) the bundled all-MiniLM-L6-v2 is
    served by a local mirror the toolkit starts; other models need the internet. ``pvc_dir`` is the folder that
    plays the PVC (:class:`~tke_playbook.download.folders.PvcFolders` names the toolkit's own)."""
    pvc_dir = validate_pvc_dir(pvc_dir)
    plan, mirror = plan_local(spec, token=token, offline=offline)
    try:
        return run_local_download(spec, plan, pvc_dir, workers, on_progress=on_progress,
                                  token=token if mirror is None else None, timeout_s=timeout_s)
    finally:
        if mirror is not None:
            mirror.stop()


def progress_frame(folder):
    """Per-shard progress as a DataFrame: status, bytes done/total, percent, error."""
    import pandas as pd  # late: the command line's download never needs pandas

    summary = progress.read_progress(folder)
    frame = pd.DataFrame(summary["shards"], columns=["shard", "status", "bytes_done", "bytes_total", "error"])
    frame["percent"] = (100 * frame["bytes_done"] / frame["bytes_total"].clip(lower=1)).round(1)
    return frame
