"""Downloads on the cluster target: list and plan from here, run the shards as an Indexed Job on the PVC.

The worker ConfigMap carries the plan, so every pod fetches exactly its shard; each verifies size and sha256
and the last one writes the completion marker that serving waits for.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from ..download import plan_download
from ..errors import DownloadError, JobFailedError
from ..hostenv import token_from_env
from ..kube import Kube, ObjectRef, apply_all, get, job_progress, list_pods, wait_for_job
from ..loadgen.sync import interruptible
from ..manifests.download import build_download_objects
from ..specs.labels import Component, selector
from .base import PlanMemory, Records
from .connection import KubeConnection
from .display import progress_bar


def _job(spec) -> ObjectRef:
    return ObjectRef("batch/v1", "Job", spec.job_name, spec.namespace)


class ClusterDownloads:
    """The download steps of :class:`~tke_playbook.playbook.cluster.ClusterBackend`, given the playbook's records
    and its cluster connection; keeps the plan cell's plan of this kernel."""

    def __init__(self, records: Records, connection: KubeConnection):
        self.records = records
        self.connection = connection
        self.plans = PlanMemory()

    @property
    def kube(self) -> Kube:
        return self.connection.kube

    def plan_download(self, spec):
        """List the hub from here and split the files; kept for the launch cell (a failed plan forgets it)."""
        return self.plans.make(spec, lambda: plan_download(spec))

    def start_download(self, spec, plan=None, token=None) -> pd.DataFrame:
        """Apply the hub token Secret (when a token is given or set in HF_TOKEN / MODELSCOPE_API_TOKEN), the
        worker ConfigMap (with the plan) and the Indexed Job. The token goes into the Secret only, never into
        the Job or any output."""
        plan = self.plans.planned(spec, plan)
        token = token if token is not None else token_from_env(spec.source)
        apply_all(self.kube, build_download_objects(spec, plan, token))
        self.records.record_download(spec, plan, f"pvc {spec.pvc}: /{spec.model_path}", kernel_pid=None)
        return pd.DataFrame([{"job": spec.job_name, "namespace": spec.namespace, "completions": spec.completions,
                              "parallelism": spec.parallelism, "bytes": plan.total_bytes}])

    def download_progress(self) -> pd.DataFrame:
        """Per index: the pod phase and whether it completed (what `kubectl get pods -l job-name=...` shows)."""
        spec = self.records.recorded_download()
        job = get(self.kube, _job(spec))
        if job is None:
            raise DownloadError(f"Job {spec.job_name} does not exist: run the launch cell again.", obj=spec.job_name)
        pods = list_pods(self.kube, spec.namespace, selector(Component.DOWNLOAD, spec.job_name))
        progress = job_progress(job, pods)
        return pd.DataFrame([{"index": i, "pod": progress.pods.get(i, "not started"),
                              "completed": i in progress.completed, "failed": i in progress.failed}
                             for i in range(progress.completions)])

    def wait_for_download(self, timeout: float = 3600.0):
        """Wait for the Job with a progress bar of finished indexes; a failure raises JobFailedError with the
        pod's log tail and a diagnosis."""
        record = self.records.download_record()
        spec = self.records.recorded_download()

        def show(progress, bar):
            bar.update(len(progress.completed) - bar.n)
            bar.set_postfix_str(progress.summary()[:60])

        try:
            with progress_bar(spec.completions, f"Job {spec.job_name}", unit="index") as bar, \
                    interruptible(lambda: f"stopped watching Job {spec.job_name} at {bar.n:.0f} of "
                                          f"{spec.completions} indexes; it keeps running on the cluster: run this "
                                          "cell again to wait for it", bar=bar):
                done = wait_for_job(self.kube, spec.job_name, spec.namespace, timeout,
                                    on_progress=lambda p: show(p, bar))
        except JobFailedError as exc:
            self.records.runs.put_download(dataclasses.replace(record, status="failed", error=str(exc)))
            raise
        self.records.runs.put_download(dataclasses.replace(record, status="done"))
        return done.summary()

    def verify_download(self) -> pd.DataFrame:
        """On the cluster the pods verify every file before the marker is written; this reports the Job's end."""
        spec = self.records.recorded_download()
        job = get(self.kube, _job(spec)) or {}
        progress = job_progress(job) if job else None
        done = progress is not None and progress.state == "complete"
        return pd.DataFrame([{"job": spec.job_name, "complete": done,
                              "note": "every pod checked each file's size and hash (sha256, or the git blob sha1 "
                                      "where the hub lists only that); the last wrote the completion marker"
                              if done else "not complete yet: wait_for_download()"}])

    def stop_downloads(self) -> list:
        """Forget the recorded downloads (teardown deletes the Jobs themselves)."""
        records = self.records.runs.downloads()
        for record in records:
            self.records.runs.remove_download(record.slug)
        self.plans.forget()
        return records
