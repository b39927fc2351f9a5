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
from ..download.folders import PvcFolders
from ..download.listing import plan_download
from ..download.local import hub_offline, plan_local, run_local_download
from ..download.mirror import HubMirror
from ..errors import DownloadError, NoDownloadError
from ..loadgen.sync import interruptible
from ..podworker import progress
from ..podworker.modelfolder import read_manifest, require_complete
from ..podworker.planner import DownloadPlan
from ..podworker.rules import CHECK_SHA1, CHECK_SHA256
from ..specs.catalog import OFFLINE_MODEL, list_models
from ..specs.download import DownloadSpec, Source
from .display import error_text
from .memory import PlanMemory
from .runs import DownloadRecord
from .shared import DownloadBase
from .steps import DownloadStatus, Row, Session

WAIT_TIMEOUT_S = 1800.0


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


class LocalDownloads(DownloadBase):
    """02 locally: plan, launch in the background, progress, wait, verify, stop. Given the session and the PVC
    folders, and ``mirror``: a running hub (e.g. a test's) to list and download from instead of the real one;
    keeps the plan cell's plan (and the offline mirror serving it) of this kernel."""

    default_source = Source.HUGGINGFACE.value

    def __init__(self, session: Session, default_model: str, folders: PvcFolders, *, mirror: HubMirror | None = None):
        super().__init__(session, default_model)
        self.records = session.records
        self.reporter = session.reporter
        self.offline = session.settings.offline  # act as if no hub can be reached (TKE_PLAYBOOK_OFFLINE)
        self.folders = folders
        self.mirror = mirror
        self.plans = PlanMemory()

    @property
    def runs(self):
        return self.records.runs

    def _hub_offline(self) -> bool:
        return hub_offline(DownloadSpec(model=OFFLINE_MODEL, source=self.default_source), timeout_s=2.0,
                           offline=self.offline)

    def source_note(self) -> str:
        """Offline, 'huggingface' is the packaged copy of the offline model behind a local mirror of its API."""
        return "offline: the packaged copy, through a local mirror of its API" if self._hub_offline() else ""

    def unavailable_models(self) -> dict[str, str]:
        """Offline, only the packaged model can be downloaded: every other model "needs a hub"."""
        if not self._hub_offline():
            return {}
        hub = (f"needs a hub: this machine cannot reach one and only {OFFLINE_MODEL} ships with the toolkit; choose "
               f"it, or connect to the internet (or a mirror) first")
        return {m.hf_id: hub for m in list_models() if m.hf_id != OFFLINE_MODEL}

    def _plan(self, spec):
        if self.mirror is not None:
            return plan_download(spec, endpoint=self.mirror.url), None
        return plan_local(spec, offline=hub_offline(spec, timeout_s=2.0, offline=self.offline))

    def plan(self, spec: DownloadSpec) -> DownloadPlan:
        """List the repository and split it into shards; the plan is kept for the launch cell. Offline, the
        packaged model is listed from a local mirror (started here and kept with the plan for :meth:`start`). A
        failed plan forgets the previous one, so the launch cell cannot run a stale plan."""
        self.session.forms.check(spec)
        return self.plans.make(spec, lambda: self._plan(spec))

    def start(self, spec: DownloadSpec, plan: DownloadPlan | None = None, *,
              token: str | None = None) -> pd.DataFrame:
        """Start the worker processes in the background (``parallelism`` at a time); returns at once. ``plan``
        must be for ``spec`` (PlanMismatchError otherwise); None takes the plan the plan cell made for it.
        ``token`` (a private repository) goes to the workers' environment only."""
        self.session.forms.check(spec)
        plan = self.plans.planned(spec, plan)
        self.folders.require(spec.pvc)
        for record in self.runs.downloads():
            if record.current_status() == "running":
                raise DownloadError(f"A download of {record.model} is still running: wait for it "
                                    "(pb.download.wait()) before starting another.", obj=record.model)
        mirror = self.plans.take_mirror()
        record = self.records.record_download(spec, plan, str(self.folder(spec)), kernel_pid=os.getpid())
        thread = threading.Thread(target=self._run, args=(spec, plan, mirror, record, token), daemon=True,
                                  name=f"download-{spec.slug}")
        thread.start()
        return pd.DataFrame([{"model": spec.model, "shards": len(plan.shards), "workers at once": spec.parallelism,
                              "bytes": plan.total_bytes, "into": str(self.folder(spec))}])

    def _still_current(self, record: DownloadRecord) -> None:
        now = self.runs.download(record.slug)
        if now is None or now.plan_id != record.plan_id or now.started_at != record.started_at:
            raise _Cancelled()

    def _run(self, spec, plan, mirror, record: DownloadRecord, token: str | None) -> None:
        outcome = {"status": "done", "error": "", "extra": {}}
        try:
            run_local_download(spec, plan, self.folders.path(spec.pvc), token=token,
                               on_progress=lambda _summary: self._still_current(record))
        except _Cancelled:
            return
        except BaseException as exc:  # reported by wait(), in whichever kernel waits
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

    def folder(self, spec: DownloadSpec | None = None) -> Path:
        """The model folder on the local PVC (``<pvc>/<model id>``) of ``spec`` or the recorded download."""
        if spec is None:
            spec = self.records.recorded_download()
        return self.folders.path(spec.pvc) / spec.model_path

    def progress(self) -> pd.DataFrame:
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

    def wait(self, *, timeout: float | None = None, every: float = 1.0) -> DownloadStatus:
        """Wait until the download is complete (at most ``timeout`` s, default 30 min), with a progress bar;
        resume it when the kernel that ran it is gone. Raises the download's error (naming the file) if it
        failed."""
        record = self.records.download_record()
        if record.current_status() == "interrupted":
            spec = self.records.recorded_download()
            self.start(spec, self.plan(spec))
            record = self.records.download_record()
        timeout = WAIT_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        total = sum(record.shard_bytes)
        with self.reporter.bar(total, f"Downloading {record.model}", unit="B") as bar, \
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
        summary = require_finished(record.folder)  # never "0.0 of 0.0 MB" and no error
        return DownloadStatus(record.model, True, f"{record.model}: {summary['files_verified']} files, "
                              f"{sum(record.shard_bytes) / 1e6:,.1f} MB in {len(record.shard_bytes)} shard(s), "
                              f"verified, in {record.folder}", self.progress())

    def verify(self) -> pd.DataFrame:
        """The completion manifest: every file, its size, how it was checked against the hub (``check``: sha256,
        git-sha1, or size alone when the hub listed no hash) and the hash that check compared (``algorithm`` says
        which one ``hash`` holds: the git blob sha1 for git-sha1 files, else the sha256; its first 16 digits)."""
        folder = require_complete(self.folder())
        return pd.DataFrame([_verified_row(f) for f in read_manifest(folder).get("files", [])],
                            columns=["file", "bytes", "check", "algorithm", "hash"])

    def stop(self) -> list[DownloadRecord]:
        """Cancel the recorded downloads (the kernel running one stops its workers at its next check) and forget
        them; returns those that were running."""
        running = [r for r in self.runs.downloads() if r.current_status() == "running"]
        for record in self.runs.downloads():
            self.runs.remove_download(record.slug)
        self.plans.forget()
        return running

    def remove(self) -> list[Row]:
        """Stop and forget every download (99); the downloads that were running, as rows."""
        return [{"object": "download", "name": f"{r.model} ({r.current_status()})"} for r in self.stop()]
