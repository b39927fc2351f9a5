"""Downloads on the local target: plan from the hub (or, offline, from a local mirror of the packaged
all-MiniLM-L6-v2), run the workers in the background, show progress, wait, verify.

The download runs in a background thread of the kernel that launched it; what it is and how it stands is in the
shared run record (:mod:`~tke_playbook.playbook.runs`), so any kernel can show its progress, wait for it, or -
when the kernel that ran it is gone - resume it (the workers skip what is already on disk and verified). Deleting
the record (cleanup) makes the running thread stop its workers at its next progress check.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pandas as pd

from .. import errors
from ..download import require_finished
from ..download.listing import plan_download
from ..download.local import hub_offline, run_local_download
from ..download.mirror import offline_mirror
from ..errors import DownloadError, NoDownloadError
from ..loadgen.sync import interruptible
from ..podworker import progress
from ..podworker.modelfolder import read_manifest, require_complete
from ..podworker.rules import CHECK_SHA1, CHECK_SHA256
from ..specs.catalog import OFFLINE_MODEL
from .base import PlanMemory, Records
from .display import error_text, progress_bar
from .folders import PvcFolders
from .runs import DownloadRecord


class _Cancelled(Exception):
    """The download's record was deleted (cleanup) or replaced (a relaunch): stop the workers."""


def _error_from(record: DownloadRecord) -> DownloadError:
    kind = getattr(errors, record.extra.get("kind", ""), None)
    cls = kind if isinstance(kind, type) and issubclass(kind, DownloadError) else DownloadError
    return cls(record.error or f"The download of {record.model} failed: launch it again - it resumes",
               obj=record.model)


def _this_launch(record: DownloadRecord) -> dict[int, dict]:
    """The shard states written by this launch's workers (same plan, updated since it was launched)."""
    states = progress.shard_states(Path(record.folder), record.plan_id, len(record.shard_bytes))
    return {i: s for i, s in states.items() if float(s.get("updated") or 0) >= record.started_at}


def _verified_row(entry: dict) -> dict:
    check = entry.get("check") or "not recorded"
    algorithm = CHECK_SHA1 if check == CHECK_SHA1 else CHECK_SHA256
    value = entry.get("git_sha1" if algorithm == CHECK_SHA1 else "sha256") or ""
    return {"file": entry["path"], "bytes": entry["size"], "check": check,
            "algorithm": algorithm if value else "not recorded", "hash": value[:16]}


class LocalDownloads:
    """The download steps of :class:`~tke_playbook.playbook.local.LocalBackend`: plan, launch in the background,
    progress, wait, verify, stop. Given the playbook's records and the PVC folders; keeps the plan cell's plan and
    the offline mirror of this kernel."""

    def __init__(self, records: Records, folders: PvcFolders):
        self.records = records
        self.folders = folders
        self.plans = PlanMemory()
        self._mirror = None  # the offline mirror the plan cell started, for the launch cell

    @property
    def runs(self):
        return self.records.runs

    def _take_mirror(self):
        mirror, self._mirror = self._mirror, None
        return mirror

    def _stop_mirror(self) -> None:
        mirror = self._take_mirror()
        if mirror is not None:
            mirror.stop()

    def plan_download(self, spec, mirror=None):
        """List the repository and split it into shards; the plan is kept for the launch cell. Offline, the
        packaged model is listed from a local mirror (started here and kept for :meth:`start_download`). A failed
        plan forgets the previous one, so the launch cell cannot run a stale plan."""
        def make():
            nonlocal mirror
            self._stop_mirror()
            if mirror is None and hub_offline(spec, timeout_s=2.0):
                if spec.model != OFFLINE_MODEL:
                    raise DownloadError(f"The hub for {spec.source.value} cannot be reached from here and only "
                                        f"{OFFLINE_MODEL} ships with the toolkit: connect to the internet, set "
                                        f"{spec.source.endpoint_env} to a mirror, or choose {OFFLINE_MODEL}",
                                        obj=spec.model)
                mirror = self._mirror = offline_mirror().start()
            return plan_download(spec, endpoint=mirror.url if mirror is not None else None)

        return self.plans.make(spec, make)

    def start_download(self, spec, plan=None) -> pd.DataFrame:
        """Start the worker processes in the background (``parallelism`` at a time); returns at once. ``plan``
        must be for ``spec`` (PlanMismatchError otherwise); None takes the plan the plan cell made for it."""
        plan = self.plans.planned(spec, plan)
        self.folders.require(spec.pvc)
        for record in self.runs.downloads():
            if record.current_status() == "running":
                raise DownloadError(f"A download of {record.model} is still running: wait for it "
                                    "(wait_for_download) before starting another.", obj=record.model)
        mirror = self._take_mirror()
        record = self.records.record_download(spec, plan, str(self.download_folder(spec)), kernel_pid=os.getpid())
        thread = threading.Thread(target=self._run, args=(spec, plan, mirror, record), daemon=True,
                                  name=f"download-{spec.slug}")
        thread.start()
        return pd.DataFrame([{"model": spec.model, "shards": len(plan.shards), "workers at once": spec.parallelism,
                              "bytes": plan.total_bytes, "into": str(self.download_folder(spec))}])

    def _still_current(self, record: DownloadRecord) -> None:
        now = self.runs.download(record.slug)
        if now is None or now.plan_id != record.plan_id or now.started_at != record.started_at:
            raise _Cancelled()

    def _run(self, spec, plan, mirror, record: DownloadRecord) -> None:
        outcome = {"status": "done", "error": "", "extra": {}}
        try:
            run_local_download(spec, plan, self.folders.path(spec.pvc),
                               on_progress=lambda _summary: self._still_current(record))
        except _Cancelled:
            return
        except BaseException as exc:  # reported by wait_for_download, in whichever kernel waits
            outcome = {"status": "failed", "error": str(exc) or error_text(exc),
                       "extra": {"kind": type(exc).__name__}}
        finally:
            if mirror is not None:
                mirror.stop()
        try:
            self._still_current(record)
        except _Cancelled:
            return
        self.runs.put_download(dataclasses.replace(record, **outcome))

    def download_folder(self, spec=None) -> Path:
        """The model folder on the local PVC (``<pvc>/<model id>``) of ``spec`` or the recorded download."""
        if spec is None:
            spec = self.records.recorded_download()
        return self.folders.path(spec.pvc) / spec.model_path

    def download_progress(self) -> pd.DataFrame:
        """Per-shard status, bytes done and percent for the download launched last (what `kubectl get pods`
        shows for the Job). Only that launch's shards count: right after a relaunch every shard is pending."""
        record = self.records.download_record()
        states = _this_launch(record)
        rows = []
        for index, total in enumerate(record.shard_bytes):
            state = states.get(index, {})
            done = int(state.get("bytes_done", 0))
            rows.append({"shard": index, "status": state.get("status", "pending"), "bytes_done": done,
                         "bytes_total": int(total), "percent": round(100 * done / max(int(total), 1), 1),
                         "error": state.get("error")})
        frame = pd.DataFrame(rows, columns=["shard", "status", "bytes_done", "bytes_total", "percent", "error"])
        return frame.drop(columns="error") if frame["error"].isna().all() else frame

    def _bytes_done(self, record: DownloadRecord) -> int:
        return sum(int(s.get("bytes_done", 0)) for s in _this_launch(record).values())

    def wait_for_download(self, timeout: float = 1800.0, every: float = 1.0) -> pd.DataFrame:
        """Wait until the download is complete, with a progress bar; resume it when the kernel that ran it is
        gone. Raises the download's error (naming the file) if it failed."""
        record = self.records.download_record()
        if record.current_status() == "interrupted":
            spec = self.records.recorded_download()
            self.start_download(spec, self.plan_download(spec))
            record = self.records.download_record()
        deadline = time.monotonic() + timeout
        total = sum(record.shard_bytes)
        with progress_bar(total, f"Downloading {record.model}") as bar, \
                interruptible(lambda: f"stopped watching the download of {record.model} at "
                                      f"{100 * bar.n / max(total, 1):.0f}%; it keeps going in the background: run "
                                      "this cell again to wait for it", bar=bar):
            while record.current_status() == "running":
                bar.update(self._bytes_done(record) - bar.n)
                if time.monotonic() > deadline:
                    raise DownloadError(f"The download of {record.model} did not finish within {timeout:.0f} s: "
                                        "wait again - it keeps going in the background", obj=record.model)
                time.sleep(every)
                record = self.runs.download(record.slug)
                if record is None:
                    raise NoDownloadError("The download was cancelled (cleanup ran): launch it again in "
                                          "02_download_model")
            bar.update(self._bytes_done(record) - bar.n)
        if record.current_status() == "failed":
            raise _error_from(record)
        require_finished(record.folder)  # never "0.0 of 0.0 MB" and no error
        return self.download_progress()

    def verify_download(self) -> pd.DataFrame:
        """The completion manifest: every file, its size, how it was checked against the hub (``check``: sha256,
        git-sha1, or size alone when the hub listed no hash) and the hash that check compared (``algorithm`` says
        which one ``hash`` holds: the git blob sha1 for git-sha1 files, else the sha256; its first 16 digits)."""
        folder = require_complete(self.download_folder())
        return pd.DataFrame([_verified_row(f) for f in read_manifest(folder).get("files", [])],
                            columns=["file", "bytes", "check", "algorithm", "hash"])

    def stop_downloads(self) -> list[DownloadRecord]:
        """Cancel the recorded downloads (the kernel running one stops its workers at its next check) and forget
        them; returns those that were running."""
        running = [r for r in self.runs.downloads() if r.current_status() == "running"]
        for record in self.runs.downloads():
            self.runs.remove_download(record.slug)
        self._stop_mirror()
        self.plans.forget()
        return running
