"""Downloads on the cluster target: list and plan from here, run the shards as an Indexed Job on the PVC.

The worker ConfigMap carries the plan, so every pod fetches exactly its shard; each verifies size and sha256
and the last one writes the completion marker that serving waits for.
"""

from __future__ import annotations

import pandas as pd

from ..errors import DownloadError
from .base import spec_to_dict


class ClusterDownloads:
    """The download half of :class:`~tke_playbook.workflow.cluster.ClusterPlaybook`."""

    def plan_download(self, spec):
        from ..download.listing import plan_download

        return plan_download(spec)

    def start_download(self, spec, plan=None, token=None) -> pd.DataFrame:
        """Apply the hub token Secret (when a token is given or set in HF_TOKEN / MODELSCOPE_API_TOKEN), the
        worker ConfigMap (with the plan) and the Indexed Job. The token goes into the Secret only, never into
        the Job or any output."""
        from ..cluster import apply_all
        from ..download import build_download_objects
        from ..download.tokens import token_from_env

        plan = plan or self.plan_download(spec)
        token = token if token is not None else token_from_env(spec.source)
        apply_all(self.kube, build_download_objects(spec, plan, token))
        self.state.put("download", {"spec": spec_to_dict(spec), "plan_id": plan.plan_id})
        return pd.DataFrame([{"job": spec.job_name, "namespace": spec.namespace, "completions": spec.completions,
                              "parallelism": spec.parallelism, "bytes": plan.total_bytes}])

    def download_progress(self) -> pd.DataFrame:
        """Per index: the pod phase and whether it completed (what `kubectl get pods -l job-name=...` shows)."""
        from ..cluster import ObjectRef, get, job_progress, list_pods

        spec = self._recorded_download()
        job = get(self.kube, ObjectRef("batch/v1", "Job", spec.job_name, spec.namespace))
        if job is None:
            raise DownloadError(f"Job {spec.job_name} does not exist: run the launch cell again.", obj=spec.job_name)
        progress = job_progress(job, list_pods(self.kube, spec.namespace, f"job-name={spec.job_name}"))
        return pd.DataFrame([{"index": i, "pod": progress.pods.get(i, "not started"),
                              "completed": i in progress.completed, "failed": i in progress.failed}
                             for i in range(progress.completions)])

    def wait_for_download(self, timeout: float = 3600.0, echo=print):
        """Wait for the Job, printing each change; a failure raises JobFailedError with the pod's log tail."""
        from ..cluster import wait_for_job

        spec = self._recorded_download()
        return wait_for_job(self.kube, spec.job_name, spec.namespace, timeout,
                            on_progress=lambda p: echo(p.summary())).summary()

    def verify_download(self) -> pd.DataFrame:
        """On the cluster the pods verify every file before the marker is written; this reports the Job's end."""
        from ..cluster import ObjectRef, get, job_progress

        spec = self._recorded_download()
        job = get(self.kube, ObjectRef("batch/v1", "Job", spec.job_name, spec.namespace)) or {}
        progress = job_progress(job) if job else None
        done = progress is not None and progress.state == "complete"
        return pd.DataFrame([{"job": spec.job_name, "complete": done,
                              "note": "every pod checked size and sha256; the last wrote the completion marker"
                              if done else "not complete yet: wait_for_download()"}])

    def stop_downloads(self) -> None:
        return None
