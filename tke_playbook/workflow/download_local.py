"""Downloads on the local target: plan from the hub (or, offline, from a local mirror of the packaged
all-MiniLM-L6-v2), run the workers in the background, show progress, wait, verify.

The download runs in a background thread of the kernel so the notebook can show progress while it goes. If the
kernel that started it is gone (another notebook, a restart), :meth:`wait_for_download` resumes it from the
recorded spec: the workers skip what is already on disk and verified.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..catalog import OFFLINE_MODEL
from ..errors import DownloadError
from ..modelfolder import is_complete, read_manifest, require_complete
from ..target import local_pvc_dir
from .base import spec_to_dict

OFFLINE_ENV = "TKE_PLAYBOOK_OFFLINE"
_RUNS: dict[str, "_Run"] = {}  # state file -> the download this kernel runs


class _Run:
    """One background download: the thread, its mirror (offline) and its outcome."""

    def __init__(self, spec, plan, mirror=None):
        self.spec, self.plan, self.mirror = spec, plan, mirror
        self.error: BaseException | None = None
        self.folder: Path | None = None
        self.thread = threading.Thread(target=self._run, name=f"download-{spec.slug}", daemon=True)

    def _run(self) -> None:
        from ..download.local import run_local_download

        try:
            self.folder = run_local_download(self.spec, self.plan)
        except BaseException as exc:  # reported by wait_for_download
            self.error = exc
        finally:
            if self.mirror is not None:
                self.mirror.stop()


class LocalDownloads:
    """The download half of :class:`~tke_playbook.workflow.local.LocalPlaybook`."""

    def _offline(self, spec) -> bool:
        from ..download.listing import resolve_endpoint
        from ..download.local import hub_reachable

        if os.environ.get(OFFLINE_ENV) == "1":
            return True
        return not hub_reachable(resolve_endpoint(spec.source, spec.endpoint), timeout_s=2.0)

    def plan_download(self, spec, mirror=None):
        """List the repository and split it into shards. Offline, the packaged model is listed from a local
        mirror (started here and kept for :meth:`start_download`)."""
        from ..download.listing import plan_download

        if mirror is None and spec.model == OFFLINE_MODEL and self._offline(spec):
            from ..download.mirror import offline_mirror

            mirror = offline_mirror().start()
            self._mirror = mirror
        elif mirror is None and self._offline(spec):
            raise DownloadError(f"The hub for {spec.source.value} cannot be reached from here and only "
                                f"{OFFLINE_MODEL} ships with the toolkit: connect to the internet, set "
                                f"{spec.source.endpoint_env} to a mirror, or choose {OFFLINE_MODEL}.", obj=spec.model)
        return plan_download(spec, endpoint=mirror.url if mirror is not None else None)

    def start_download(self, spec, plan=None) -> pd.DataFrame:
        """Start the worker processes in the background (``parallelism`` at a time); returns at once."""
        current = _RUNS.get(str(self.state.path))
        if current is not None and current.thread.is_alive():
            raise DownloadError(f"A download of {current.spec.model} is still running: wait for it "
                                "(wait_for_download) before starting another.", obj=current.spec.model)
        if plan is None:
            plan = self.plan_download(spec)
        mirror = getattr(self, "_mirror", None)
        self._mirror = None
        run = _Run(spec, plan, mirror)
        _RUNS[str(self.state.path)] = run
        self.state.put("download", {"spec": spec_to_dict(spec), "folder": str(self.download_folder(spec)),
                                    "shard_bytes": [int(b) for b in plan.bytes_per_shard]})
        run.thread.start()
        return pd.DataFrame([{"model": spec.model, "shards": len(plan.shards), "workers at once": spec.parallelism,
                              "bytes": plan.total_bytes, "into": str(self.download_folder(spec))}])

    def download_folder(self, spec=None) -> Path:
        """The model folder on the local PVC (``<pvc>/<model id>``) of ``spec`` or the recorded download."""
        if spec is None:
            spec = self._recorded_download()
        return local_pvc_dir(spec.pvc) / spec.model_path

    def download_progress(self) -> pd.DataFrame:
        """Per-shard status, bytes done and percent (what `kubectl get pods` shows for the Job); shards whose
        worker has not reported yet are listed as ``pending``."""
        from ..download.local import progress_frame

        frame = progress_frame(self.download_folder())
        planned = (self.state.get("download") or {}).get("shard_bytes") or []
        missing = [{"shard": i, "status": "pending", "bytes_done": 0, "bytes_total": size, "error": None,
                    "percent": 0.0} for i, size in enumerate(planned) if i not in set(frame["shard"])]
        if missing:
            frame = pd.DataFrame(frame.to_dict("records") + missing, columns=frame.columns)
            frame = frame.sort_values("shard", ignore_index=True)
        if frame["error"].isna().all():
            frame = frame.drop(columns="error")
        return frame

    def wait_for_download(self, timeout: float = 1800.0, every: float = 2.0, echo=print) -> pd.DataFrame:
        """Wait until the download is complete, printing progress; resume it if no worker runs in this kernel."""
        from ..download import read_progress

        spec = self._recorded_download()
        folder = self.download_folder(spec)
        run = _RUNS.get(str(self.state.path))
        if run is None and not is_complete(folder):
            echo("No download runs in this kernel: resuming it from the recorded spec.")
            self.start_download(spec)
            run = _RUNS[str(self.state.path)]
        deadline, last = time.monotonic() + timeout, None
        while run is not None and run.thread.is_alive():
            run.thread.join(every)
            summary = read_progress(folder)
            line = f"{summary['bytes_done'] / 1e6:8.1f} of {summary['bytes_total'] / 1e6:.1f} MB, " \
                   f"{summary['files_verified']}/{summary['files_total']} files verified"
            if line != last:
                echo(line)
                last = line
            if time.monotonic() > deadline:
                raise DownloadError(f"The download of {spec.model} did not finish within {timeout:.0f} s: wait "
                                    "again - it keeps going in the background.", obj=spec.model)
        if run is not None and run.error is not None:
            _RUNS.pop(str(self.state.path), None)
            raise run.error
        return self.download_progress()

    def verify_download(self) -> pd.DataFrame:
        """The completion manifest: every file with its size and sha256 as checked against the hub."""
        folder = require_complete(self.download_folder())
        manifest = read_manifest(folder)
        rows = [{"file": f["path"], "bytes": f["size"], "sha256": (f.get("sha256") or "")[:16],
                 "checked": f.get("check", "")} for f in manifest.get("files", [])]
        return pd.DataFrame(rows, columns=["file", "bytes", "sha256", "checked"])

    def stop_downloads(self) -> None:
        """Forget this kernel's finished download (a running one stops with the kernel)."""
        run = _RUNS.get(str(self.state.path))
        if run is not None and not run.thread.is_alive():
            _RUNS.pop(str(self.state.path), None)

    def _download_spec_dict(self) -> dict[str, Any]:
        return (self.state.get("download") or {}).get("spec") or {}
