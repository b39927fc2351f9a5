"""The target-independent half of the facade: defaults, specs kept between notebooks, and the API key.

:class:`Playbook` is what every notebook holds (``pb = open_target()``). Its subclasses
(:class:`~tke_playbook.workflow.local.LocalPlaybook`, :class:`~tke_playbook.workflow.cluster.ClusterPlaybook`)
implement the same calls for each target, so a notebook never asks which target it runs on.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..catalog import OFFLINE_MODEL, TUTORIAL_MODEL, get_model
from ..diagnosis import diagnose_log
from ..download import check_plan_matches as check_download_plan
from ..download.manifests import build_download_job, build_worker_configmap
from ..download.planner import tutorial_plan
from ..download.spec import DownloadSpec, Source
from ..errors import InvalidSpecError, NoDownloadError, NotDeployedError, PlanMismatchError
from ..names import slug
from ..plan import build_helm_values
from ..serving import API_KEY_SECRET_KEY, ServingSpec, seed_profile
from ..serving_manifests import KEY_CHECKSUM_ANNOTATION, build_serving_objects, pod_templates
from ..storage import DEFAULT_PVC, StorageSpec, build_pvc, build_storage_class
from ..target import Target, resolve_target, state_dir
from .report import Level, Note
from .runs import RUNS_DIR, DownloadRecord, RunRegistry
from .state import SecretStore, StateStore, mask_secret

QUICK_ENV = "TKE_PLAYBOOK_QUICK"
NAMESPACE_ENV = "TKE_PLAYBOOK_NAMESPACE"


def quick_mode() -> bool:
    """True when ``TKE_PLAYBOOK_QUICK`` is set to 1/true/yes: notebooks trim request counts and sweeps."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def spec_to_dict(spec: Any) -> dict:
    """A frozen spec as plain JSON-able data (enums by value, tuples as lists)."""
    def plain(value):
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value
    return {f.name: plain(getattr(spec, f.name)) for f in dataclasses.fields(spec)}


def spec_from_dict(kind: type, data: dict) -> Any:
    """Rebuild a spec recorded by :func:`spec_to_dict` (validation runs again)."""
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
                   for k, v in data.items() if k in names})


def default_max_model_len(model: str) -> int:
    """The max_model_len a form starts from for ``model``: the tutorial's 2048, capped at the model's limit.
    Call it again when the model changes, so the length follows the model."""
    return min(2048, get_model(model).max_tokens)


def check_plan_matches(spec: Any, plan: Any) -> None:
    """Raise PlanMismatchError unless ``plan`` was made for ``spec`` (model, hub repository, revision, PVC, shards):
    a plan left from an earlier run of the plan cell must never download another model."""
    try:
        check_download_plan(spec, plan)
    except InvalidSpecError as exc:
        raise PlanMismatchError(f"{exc.message.rstrip('.')}: run the plan cell again with this form, then launch",
                                obj=plan.model_path, cause=exc)


_PLAYBOOKS: dict[Target, type["Playbook"]] = {}  # filled by Playbook.__init_subclass__
NOT_DEPLOYED = "Nothing is deployed: run 03_deploy_vllm first"
NO_DOWNLOAD = "No download was started: run the launch cell of 02_download_model first"


def _yaml(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, default_flow_style=False)


class Playbook:
    """The steps of the tutorial, on one target. Subclasses implement the I/O."""

    target: Target

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else state_dir()
        self.state = StateStore(self.target, self.root)
        self.secrets = SecretStore(self.root)
        self.runs = RunRegistry(self.root / RUNS_DIR / self.target.value)
        self._plan: tuple[Any, Any] | None = None  # (spec, plan) of the last plan cell, when it succeeded
        self._plan_failed = False  # the last plan cell of this kernel failed: no plan may be launched

    # --- construction -------------------------------------------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any):
        """A subclass that sets ``target`` becomes the playbook for that target (what :meth:`from_env` opens):
        this module never imports its subclasses; ``tke_playbook.workflow`` imports them, so they register."""
        super().__init_subclass__(**kwargs)
        if "target" in cls.__dict__:
            _PLAYBOOKS[cls.target] = cls

    @classmethod
    def open(cls, *, root: Path | None = None, context: str | None = None) -> "Playbook":
        """This target's playbook; ``context`` (a kubeconfig context) matters to the cluster target only."""
        return cls(root=root)

    @staticmethod
    def from_env(target: str | Target | None = None, *, context: str | None = None,
                 root: Path | None = None) -> "Playbook":
        """The playbook for ``target``, else ``$TKE_PLAYBOOK_TARGET``, else cluster when a kubeconfig exists."""
        resolved = resolve_target(target)
        playbook = _PLAYBOOKS.get(resolved)
        if playbook is None:  # only when tke_playbook.workflow.base is loaded without its package
            raise InvalidSpecError(f"No playbook is registered for target '{resolved.value}': import "
                                   "tke_playbook.workflow (open_target) rather than its base module",
                                   field="target", value=resolved.value)
        return playbook.open(root=root, context=context)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target.value!r}, state={str(self.state.path)!r})"

    def describe(self) -> str:
        """One sentence on where the steps run (shown when a notebook displays the playbook)."""
        return f"Target {self.target.value}; state kept in {self.state.path}."

    def _repr_html_(self) -> str:
        return Note(self.describe(), Level.INFO)._repr_html_()

    # --- defaults -----------------------------------------------------------------------------------------

    @property
    def default_model(self) -> str:
        """The model a notebook uses when its MODEL parameter is empty."""
        return OFFLINE_MODEL if self.target is Target.LOCAL else TUTORIAL_MODEL

    def model(self, name: str | None = "") -> str:
        """``name`` as a catalog id, or the target's default model when empty."""
        return get_model(name).hf_id if name else self.default_model

    @property
    def namespace(self) -> str:
        return os.environ.get(NAMESPACE_ENV, "").strip() or "default"

    def storage_defaults(self, pvc_name: str = "", vpc_id: str | None = None, subnet_id: str | None = None,
                         zone: str | None = None) -> Any:
        """The tutorial's storage: PVC ``ai-model`` (or ``pvc_name``) on a CFS StorageClass; with ``vpc_id`` and
        ``subnet_id`` (and ``zone``: the GPU node's) the StorageClass itself is created too. Empty means not given."""
        given = {k: v.strip() for k, v in {"pvc_name": pvc_name, "vpc_id": vpc_id, "subnet_id": subnet_id,
                                           "zone": zone}.items() if v and v.strip()}
        return StorageSpec(**given)

    def serving_defaults(self, model: str = "", **changes: Any) -> Any:
        """The seed profile (the tutorial's values) for ``model``, with max_model_len capped to the model's limit
        and the PVC recorded by notebook 01. Without ``model``: the model (and PVC) 02 downloaded last, else the
        target's default model."""
        downloaded = self.downloaded()
        if not model and downloaded is not None:
            model = downloaded.model
            changes.setdefault("pvc_name", downloaded.spec.get("pvc"))
        info = get_model(self.model(model))
        spec = seed_profile().replace(model=info.hf_id, max_model_len=default_max_model_len(info.hf_id),
                                      namespace=self.namespace)
        storage = self.state.get("storage") or {}
        if storage.get("pvc_name") and "pvc_name" not in changes:
            changes["pvc_name"] = storage["pvc_name"]
        return spec.replace(**changes) if changes else spec

    def downloaded(self) -> DownloadRecord | None:
        """The latest download 02 finished (its record), or None: 03 starts from its model and PVC."""
        return next((r for r in self.runs.downloads() if r.current_status() == "done"), None)

    def download_defaults(self, model: str = "", source: str = "", completions: int = 3, parallelism: int = 3):
        """A DownloadSpec for ``model`` (default: the target's) onto the recorded PVC; parallelism capped at
        completions. ``source`` empty: ModelScope on a cluster (as the tutorial), Hugging Face locally."""
        storage = self.state.get("storage") or {}
        hub = source or (Source.HUGGINGFACE.value if self.target is Target.LOCAL else Source.MODELSCOPE.value)
        return DownloadSpec(model=self.model(model), source=hub, completions=completions,
                            parallelism=min(parallelism, completions), pvc=storage.get("pvc_name", DEFAULT_PVC),
                            namespace=self.namespace)

    def _download_record(self) -> DownloadRecord:
        record = self.runs.download()
        if record is None:
            raise NoDownloadError(NO_DOWNLOAD + ".")
        return record

    def _recorded_download(self):
        """The DownloadSpec the launch cell of 02 recorded (both targets)."""
        return spec_from_dict(DownloadSpec, self._download_record().spec)

    def _record_download(self, spec, plan, folder: str, *, kernel_pid: int | None, **extra: Any) -> DownloadRecord:
        record = DownloadRecord(slug=slug(spec.model), model=spec.model, spec=spec_to_dict(spec),
                                plan_id=plan.plan_id, shard_bytes=tuple(int(b) for b in plan.bytes_per_shard),
                                folder=folder, status="running", kernel_pid=kernel_pid,
                                started_at=time.time(), extra=extra)
        self.runs.put_download(record)
        return record

    def _planned(self, spec, plan):
        """``plan`` (checked against ``spec``), else the plan the plan cell made for this very spec."""
        if plan is None:
            if self._plan is None or self._plan[0] != spec:
                raise NoDownloadError(f"There is no plan for {spec.model} from this kernel: run the plan cell "
                                      "(plan_download) with this spec, then launch", obj=spec.model)
            plan = self._plan[1]
        check_plan_matches(spec, plan)
        if self._plan_failed:
            raise NoDownloadError("The plan cell failed the last time it ran, so its plan is gone: run the plan "
                                  "cell again, then launch", obj=spec.model)
        return plan

    def _plan_with(self, spec, make) -> Any:
        """Run the plan cell's ``make()``; remember its plan for ``spec``, or - when it fails - that it failed."""
        self._plan, self._plan_failed = None, True
        plan = make()
        self._plan, self._plan_failed = (spec, plan), False
        return plan

    def render_download(self, spec, plan) -> str:
        """The worker ConfigMap (files per index, plan abbreviated) and the Indexed Job as YAML (no token)."""
        check_plan_matches(spec, plan)
        configmap = build_worker_configmap(spec, plan)
        configmap["data"] = {k: (v if len(v) <= 400 else f"<{len(v):,} characters: the worker's code and the "
                                 "plan, shipped to every pod>") for k, v in configmap.get("data", {}).items()}
        return _yaml([configmap, build_download_job(spec, plan)])

    def download_job_table(self, spec, plan) -> Any:
        """The Indexed Job at a glance: one row per index with its files and bytes, and the Job's completions,
        parallelism and completion mode (what the tutorial's downloader script sets)."""
        check_plan_matches(spec, plan)
        job = build_download_job(spec, plan)["spec"]
        return pd.DataFrame([{"job": spec.job_name, "index": i, "files": len(shard),
                              "bytes": int(plan.bytes_per_shard[i]), "completions": job.get("completions"),
                              "parallelism": job.get("parallelism"), "completionMode": job.get("completionMode")}
                             for i, shard in enumerate(plan.shards)])

    def tutorial_plan(self, spec, plan):
        """The tutorial's split of the same files (sorted safetensors cut by count; the rest on index 0)."""
        return tutorial_plan(spec, list(plan.files), endpoint=plan.endpoint)

    # --- node type chosen in 00 ---------------------------------------------------------------------------

    def choose_node_type(self, node_type) -> Any:
        """Remember the GPU node type to serve on (the fit checks of later notebooks use it)."""
        self.state.put("node_type", node_type.name)
        self._node_type = node_type
        return node_type

    def node_type(self) -> Any:
        """The node type chosen in 00, else the tutorial's PNV5b.8XLARGE96 (or the first GPU node type)."""
        if getattr(self, "_node_type", None) is not None:
            return self._node_type
        name = self.state.get("node_type")
        nodes = [n for n in self.node_types() if getattr(n, "gpu", None)] or list(self.node_types())
        by_name = {n.name: n for n in nodes}
        return by_name.get(name) or by_name.get("PNV5b.8XLARGE96") or (nodes[0] if nodes else None)

    # --- what is applied, rendered for reading (no secret values) -----------------------------------------

    def render_storage(self, storage_spec) -> str:
        """The StorageClass (when the spec creates one) and the PVC, as YAML."""
        docs = ([build_storage_class(storage_spec)] if storage_spec.creates_storage_class else []) + [
            build_pvc(storage_spec)]
        head = "" if storage_spec.creates_storage_class else (
            f"# StorageClass '{storage_spec.storage_class}' is expected to exist (create it in the TKE console, type "
            f"CFS, in the GPU node's zone),\n# or give vpc_id and subnet_id to have it created.\n")
        return head + _yaml(docs)

    def render_serving(self, serving_spec) -> str:
        """Every serving object (Secret with its value hidden, auth-proxy ConfigMap for a public load balancer,
        Deployment or LeaderWorkerSet, Service), as YAML."""
        docs = build_serving_objects(serving_spec, "hidden" if serving_spec.api_key_required else None)
        for doc in docs:
            if doc["kind"] == "Secret":
                doc["data"] = {API_KEY_SECRET_KEY: "<generated; kept in the Secret, not shown>"}
            elif doc["kind"] in ("Deployment", "LeaderWorkerSet"):
                for template in pod_templates(doc):  # the checksum of a placeholder key would mislead
                    template["metadata"]["annotations"].pop(KEY_CHECKSUM_ANNOTATION, None)
        return _yaml(docs)

    def helm_values(self, serving_spec) -> str:
        """The equivalent values.yaml for the tutorial's vllm-inference-tke chart (apiKey left out). When the
        chart cannot express this deployment, the text says why and what to use instead (as YAML comments)."""
        try:
            return _yaml([build_helm_values(serving_spec)])
        except InvalidSpecError as exc:
            return f"# No values.yaml for the tutorial's chart: {exc}\n"

    # --- the API key --------------------------------------------------------------------------------------

    def api_key(self, serving_spec: Any) -> str | None:
        """The API key of a deployment (generated on first use and kept; None when no key is required)."""
        if not serving_spec.api_key_required:
            return None
        return self.secrets.ensure(serving_spec.api_key_secret)

    def masked_api_key(self, serving_spec: Any) -> str:
        return mask_secret(self.api_key(serving_spec))

    # --- recorded specs -----------------------------------------------------------------------------------

    def require_deployed(self) -> Any:
        """The serving spec 03 deployed; NotDeployedError (run 03) when nothing is deployed, e.g. after 99."""
        spec = self.recorded_serving_spec()
        if spec is None:
            raise NotDeployedError(NOT_DEPLOYED + ".")
        return spec

    def recorded_serving_spec(self) -> Any | None:
        """The serving spec the last deploy used (notebook 03), or None."""
        data = self.state.get("serving")
        if not data:
            return None
        try:
            return spec_from_dict(ServingSpec, data)
        except (InvalidSpecError, TypeError):
            return None

    def deployed_spec(self, model: str = "") -> Any | None:
        """The spec ``model`` was deployed with (default: the last deployment), or None."""
        if not model:
            return self.recorded_serving_spec()
        data = (self.state.get("deployments") or {}).get(get_model(model).hf_id)
        return spec_from_dict(ServingSpec, data) if data else None

    def _record_serving(self, spec: Any) -> None:
        self.state.put("serving", spec_to_dict(spec))
        deployments = self.state.get("deployments") or {}
        deployments[spec.model] = spec_to_dict(spec)
        self.state.put("deployments", deployments)

    # --- what each target implements ----------------------------------------------------------------------

    def preflight(self, model: str = ""):
        raise NotImplementedError

    def node_types(self):
        raise NotImplementedError

    def pvcs(self) -> list[str]:
        raise NotImplementedError

    def create_storage(self, storage_spec):
        raise NotImplementedError

    def deploy(self, serving_spec):
        raise NotImplementedError

    def deployment_logs(self, lines: int = 20) -> str:
        raise NotImplementedError

    def diagnose(self) -> Any:
        """Plain-words findings in the deployment's log tail (model not found, CUDA out of memory, ...)."""
        found = diagnose_log(self.deployment_logs(200), "serving")
        if not found:
            return pd.DataFrame([{"severity": "ok", "finding": "nothing wrong in the log tail", "what to do": ""}])
        return pd.DataFrame([{"severity": d.severity.value, "finding": f"{d.problem}. {d.explanation}",
                              "what to do": d.action, "seen": d.evidence.strip()[:200]} for d in found])

    def comparison_pair(self, model_a: str = "", model_b: str = ""):
        raise NotImplementedError

    def running(self) -> Any:
        """What this playbook has running, from the shared record: deployments and downloads."""
        rows = [{"kind": "deployment", "name": d.get("name", ""), "model": model, "where": d.get("namespace", ""),
                 "pid": None, "status": "deployed"} for model, d in (self.state.get("deployments") or {}).items()]
        rows += [{"kind": "download", "name": r.slug, "model": r.model, "where": r.folder, "pid": r.kernel_pid,
                  "status": r.current_status()} for r in self.runs.downloads()]
        return pd.DataFrame(rows, columns=["kind", "name", "model", "where", "pid", "status"])

    def endpoint(self):
        raise NotImplementedError

    def teardown(self, keep_pvc: bool = True):
        raise NotImplementedError
