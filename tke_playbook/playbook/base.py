"""What both targets share: the defaults, specs as JSON, and the records a playbook keeps between notebooks.

:class:`Records` is one target's memory across kernels - the state file, the API keys and the run records - with
the questions every step asks of it (what 03 deployed, what 02 downloaded). :class:`PlanMemory` is the one thing
that lives in a kernel: the plan its plan cell made. The facade (:class:`~tke_playbook.playbook.facade.Playbook`)
and each target's backend are handed these objects; neither reaches into the other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import InvalidSpecError, NoDownloadError, NotDeployedError, PlanMismatchError, PlaybookError
from ..hostenv import state_dir
from ..podworker.planner import DownloadPlan, require_plan_for
from ..specs.catalog import get_model
from ..specs.download import DownloadSpec
from ..specs.names import slug
from ..specs.serving import ServingSpec
from ..specs.target import Target
from .runs import RUNS_DIR, DownloadRecord, RunRegistry
from .state import SecretStore, StateStore

QUICK_ENV = "TKE_PLAYBOOK_QUICK"
NAMESPACE_ENV = "TKE_PLAYBOOK_NAMESPACE"
NOT_DEPLOYED = "Nothing is deployed: run 03_deploy_vllm first"
NO_DOWNLOAD = "No download was started: run the launch cell of 02_download_model first"
PREFERRED_NODE = "PNV5b.8XLARGE96"  # the tutorial's GPU node type: what a node-type choice starts from


def quick_mode() -> bool:
    """True when ``TKE_PLAYBOOK_QUICK`` is set to 1/true/yes: notebooks trim request counts and sweeps."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def namespace() -> str:
    """The namespace the playbook works in: ``$TKE_PLAYBOOK_NAMESPACE``, else ``default``."""
    return os.environ.get(NAMESPACE_ENV, "").strip() or "default"


def model_id(name: str | None, default: str) -> str:
    """``name`` as a catalog id, or ``default`` when empty."""
    return get_model(name).hf_id if name else default


def spec_to_dict(spec: Any) -> dict:
    """``spec.to_dict()`` (kept while the playbook still calls it; the specs own their JSON form)."""
    return spec.to_dict()


def spec_from_dict(kind: type, data: dict) -> Any:
    """``kind.from_dict(data)`` (kept while the playbook still calls it; the specs own their JSON form)."""
    return kind.from_dict(data)


def default_max_model_len(model: str) -> int:
    """The max_model_len a form starts from for ``model``: the tutorial's 2048, capped at the model's limit.
    Call it again when the model changes, so the length follows the model."""
    return min(2048, get_model(model).max_tokens)


def check_plan_matches(spec: DownloadSpec, plan: DownloadPlan) -> None:
    """Raise PlanMismatchError unless ``plan`` was made for ``spec`` (model, hub repository, revision, PVC, shards):
    a plan left from an earlier run of the plan cell must never download another model."""
    try:
        require_plan_for(spec, plan)
    except InvalidSpecError as exc:
        raise PlanMismatchError(f"{exc.message.rstrip('.')}: run the plan cell again with this form, then launch",
                                obj=plan.model_path, cause=exc)


def to_yaml(docs: list[dict]) -> str:
    """Manifests as the multi-document YAML the notebooks print (keys in builder order)."""
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, default_flow_style=False)


class Records:
    """What one target's playbook keeps between notebooks and kernels, under ``root`` (default
    ``target.state_dir()``): the state file (``state``), the API keys (``secrets``) and what runs (``runs``)."""

    def __init__(self, target: Target | str, root: Path | None = None):
        self.target = Target(target)
        self.root = Path(root) if root is not None else state_dir()
        self.state = StateStore(self.target, self.root)
        self.secrets = SecretStore(self.root)
        self.runs = RunRegistry(self.root / RUNS_DIR / self.target.value)

    # --- the API key --------------------------------------------------------------------------------------

    def api_key(self, serving_spec: ServingSpec) -> str | None:
        """The API key of a deployment (generated on first use and kept; None when no key is required)."""
        if not serving_spec.api_key_required:
            return None
        return self.secrets.ensure(serving_spec.api_key_secret)

    # --- deployments (03) ---------------------------------------------------------------------------------

    def record_serving(self, spec: ServingSpec, last: bool = True) -> None:
        """Remember ``spec`` as ``model``'s deployment and, unless ``last=False`` (a reranker beside the embedder),
        as the last deployment, the one 04-07 use."""
        if last:
            self.state.put("serving", spec_to_dict(spec))
        deployments = self.state.get("deployments") or {}
        deployments[spec.model] = spec_to_dict(spec)
        self.state.put("deployments", deployments)

    def recorded_serving_spec(self) -> ServingSpec | None:
        """The serving spec the last deploy used (notebook 03), or None."""
        data = self.state.get("serving")
        if not data:
            return None
        try:
            return spec_from_dict(ServingSpec, data)
        except (InvalidSpecError, TypeError):
            return None

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
        data = (self.state.get("deployments") or {}).get(get_model(model).hf_id)
        return spec_from_dict(ServingSpec, data) if data else None

    def deployment_rows(self) -> list[dict]:
        """One row per recorded deployment, as :meth:`~tke_playbook.playbook.facade.Playbook.running` lists it."""
        return [{"kind": "deployment", "name": d.get("name", ""), "model": model, "where": d.get("namespace", ""),
                 "pid": None, "status": "deployed"} for model, d in (self.state.get("deployments") or {}).items()]

    # --- downloads (02) -----------------------------------------------------------------------------------

    def download_record(self) -> DownloadRecord:
        """The latest download's record; NoDownloadError (run the launch cell) when there is none."""
        record = self.runs.download()
        if record is None:
            raise NoDownloadError(NO_DOWNLOAD + ".")
        return record

    def recorded_download(self) -> DownloadSpec:
        """The DownloadSpec the launch cell of 02 recorded (both targets)."""
        return spec_from_dict(DownloadSpec, self.download_record().spec)

    def record_download(self, spec, plan, folder: str, *, kernel_pid: int | None, **extra: Any) -> DownloadRecord:
        """Record a download just launched (status ``running``)."""
        record = DownloadRecord(slug=slug(spec.model), model=spec.model, spec=spec_to_dict(spec),
                                plan_id=plan.plan_id, shard_bytes=tuple(int(b) for b in plan.bytes_per_shard),
                                folder=folder, status="running", kernel_pid=kernel_pid,
                                started_at=time.time(), extra=extra)
        self.runs.put_download(record)
        return record

    def downloaded(self) -> DownloadRecord | None:
        """The latest download 02 finished (its record), or None."""
        return next((r for r in self.runs.downloads() if r.current_status() == "done"), None)

    def download_rows(self) -> list[dict]:
        """One row per recorded download, as ``running()`` lists it."""
        return [{"kind": "download", "name": r.slug, "model": r.model, "where": r.folder, "pid": r.kernel_pid,
                 "status": r.current_status()} for r in self.runs.downloads()]


class PlanMemory:
    """The plan the plan cell of 02 made in this kernel, for the launch cell; forgotten when the plan cell fails,
    so a launch can never run a stale plan."""

    def __init__(self):
        self._last: tuple[Any, Any] | None = None  # (spec, plan) of the last plan cell, when it succeeded
        self._failed = False  # the last plan cell of this kernel failed: no plan may be launched

    def make(self, spec, make: Callable[[], Any]) -> Any:
        """Run the plan cell's ``make()``; remember its plan for ``spec``, or - when it fails - that it failed."""
        self._last, self._failed = None, True
        plan = make()
        self._last, self._failed = (spec, plan), False
        return plan

    def planned(self, spec: DownloadSpec, plan: DownloadPlan | None = None) -> DownloadPlan:
        """``plan`` (checked against ``spec``), else the plan the plan cell made for this very spec."""
        if plan is None:
            if self._last is None or self._last[0] != spec:
                raise NoDownloadError(f"There is no plan for {spec.model} from this kernel: run the plan cell "
                                      "(plan_download) with this spec, then launch", obj=spec.model)
            plan = self._last[1]
        check_plan_matches(spec, plan)
        if self._failed:
            raise NoDownloadError("The plan cell failed the last time it ran, so its plan is gone: run the plan "
                                  "cell again, then launch", obj=spec.model)
        return plan

    def forget(self) -> None:
        self._last = None


class FormMemory:
    """Whether this kernel's last reading of each kind of form failed (:meth:`read`), so the cells after a failed
    spec cell refuse the spec an earlier run left in the kernel (:meth:`check`) - as :class:`PlanMemory` does for
    the plan cell."""

    def __init__(self):
        self._failed: dict[type, str] = {}  # spec type -> the error of its form's last reading

    def read(self, form) -> Any:
        """``form.spec()``; remember whether it failed for the form's kind of spec (``form.spec_type``)."""
        kind = getattr(form, "spec_type", None)
        try:
            spec = form.spec()
        except PlaybookError as exc:
            if kind is not None:
                self._failed[kind] = str(exc)
            raise
        self._failed.pop(kind or type(spec), None)
        return spec

    def check(self, spec: Any) -> None:
        """Raise InvalidSpecError when the last reading of ``spec``'s form in this kernel failed."""
        problem = self._failed.get(type(spec))
        if problem is not None:
            raise InvalidSpecError(f"The form's last reading was refused (the red message under its spec cell), so "
                                   f"this cell would use an older {type(spec).__name__}: fix the form, run its spec "
                                   f"cell again, then this cell", field="form", value=problem)
