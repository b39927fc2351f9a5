"""One target's memory across notebooks and kernels: the state file, the API keys and what runs.

:class:`Records` holds the three stores under the state folder - :class:`~tke_playbook.playbook.state.StateStore`
(the typed :class:`~tke_playbook.playbook.state.WorkflowState`), :class:`~tke_playbook.playbook.state.SecretStore`
and :class:`~tke_playbook.playbook.runs.RunRegistry` - with the questions every step asks of them (what 03
deployed, what 02 downloaded, the key of a deployment). Every step of a playbook is handed the same ``Records``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import NoDownloadError, NotDeployedError
from ..podworker.planner import DownloadPlan
from ..specs.catalog import get_model
from ..specs.download import DownloadSpec
from ..specs.names import slug
from ..specs.serving import ServingSpec
from ..specs.target import Target
from .runs import RUNS_DIR, DownloadRecord, RunRegistry
from .state import SecretStore, StateStore, WorkflowState

NOT_DEPLOYED = "Nothing is deployed: run 03_deploy_vllm first"
NO_DOWNLOAD = "No download was started: run the launch cell of 02_download_model first"


class Records:
    """What one target's playbook keeps between notebooks and kernels, under ``root`` (the settings' ``home``):
    the state file (``state``), the API keys (``secrets``) and what runs (``runs``)."""

    def __init__(self, target: Target | str, root: Path):
        self.target = Target(target)
        self.root = Path(root)
        self.state = StateStore(self.target, self.root)
        self.secrets = SecretStore(self.root)
        self.runs = RunRegistry(self.root / RUNS_DIR / self.target.value)

    def read(self) -> WorkflowState:
        """The state file's records (:class:`~tke_playbook.playbook.state.WorkflowState`)."""
        return self.state.read()

    def forget(self, *, keep_storage: bool = True) -> None:
        """Forget every deployment and download (what 99 removed); the storage record too unless ``keep_storage``."""
        self.runs.clear()
        state = self.read()
        self.state.write(WorkflowState(storage=state.storage if keep_storage else None, node_type=state.node_type,
                                       context=state.context))

    # --- the API key --------------------------------------------------------------------------------------

    def api_key(self, serving_spec: ServingSpec) -> str | None:
        """The API key of a deployment (generated on first use and kept; None when no key is required)."""
        if not serving_spec.api_key_required:
            return None
        return self.secrets.ensure(serving_spec.api_key_secret)

    def key_file(self, serving_spec: ServingSpec) -> Path | None:
        """The file that holds the deployment's key (None when no key is required)."""
        return self.secrets.path(serving_spec.api_key_secret) if serving_spec.api_key_required else None

    # --- deployments (03) ---------------------------------------------------------------------------------

    def record_serving(self, spec: ServingSpec, *, last: bool = True) -> None:
        """Remember ``spec`` as ``model``'s deployment and, unless ``last=False`` (a reranker beside the embedder),
        as the last deployment, the one 04-07 use."""
        state = self.read()
        deployments = {**state.deployments, spec.model: spec}
        self.state.write(state.replace(serving=spec, deployments=deployments) if last
                         else state.replace(deployments=deployments))

    def recorded_serving_spec(self) -> ServingSpec | None:
        """The serving spec the last deploy used (notebook 03), or None."""
        return self.read().serving

    def require_deployed(self) -> ServingSpec:
        """The serving spec 03 deployed; NotDeployedError (run 03) when nothing is deployed, e.g. after 99."""
        spec = self.recorded_serving_spec()
        if spec is None:
            raise NotDeployedError(NOT_DEPLOYED + ".")
        return spec

    def deployed_spec(self, model: str = "") -> ServingSpec | None:
        """The spec ``model`` was deployed with (default: the last deployment), or None."""
        if not model:
            return self.recorded_serving_spec()
        return self.read().deployments.get(get_model(model).hf_id)

    def deployment_rows(self) -> list[dict]:
        """One row per recorded deployment, as ``pb.running()`` lists it."""
        return [{"kind": "deployment", "name": d.name, "model": model, "where": d.namespace, "pid": None,
                 "status": "deployed"} for model, d in self.read().deployments.items()]

    # --- downloads (02) -----------------------------------------------------------------------------------

    def download_record(self) -> DownloadRecord:
        """The latest download's record; NoDownloadError (run the launch cell) when there is none."""
        record = self.runs.download()
        if record is None:
            raise NoDownloadError(NO_DOWNLOAD + ".")
        return record

    def recorded_download(self) -> DownloadSpec:
        """The DownloadSpec the launch cell of 02 recorded (both targets)."""
        return DownloadSpec.from_dict(self.download_record().spec)

    def record_download(self, spec: DownloadSpec, plan: DownloadPlan, folder: str, *, kernel_pid: int | None,
                        **extra: Any) -> DownloadRecord:
        """Record a download just launched (status ``running``)."""
        record = DownloadRecord(slug=slug(spec.model), model=spec.model, spec=spec.to_dict(),
                                plan_id=plan.plan_id, shard_bytes=tuple(int(b) for b in plan.bytes_per_shard),
                                folder=folder, status="running", kernel_pid=kernel_pid,
                                started_at=time.time(), extra=extra)
        self.runs.put_download(record)
        return record

    def downloaded(self) -> DownloadRecord | None:
        """The latest download 02 finished (its record), or None."""
        return next((r for r in self.runs.downloads() if r.current_status() == "done"), None)

    def download_rows(self) -> list[dict]:
        """One row per recorded download, as ``pb.running()`` lists it."""
        return [{"kind": "download", "name": r.slug, "model": r.model, "where": r.folder, "pid": r.kernel_pid,
                 "status": r.current_status()} for r in self.runs.downloads()]
