"""The facade every notebook holds (``pb = open_target()``): one :class:`Playbook` composed with a backend.

The :class:`Playbook` does what is the same on every target - defaults, the specs kept between notebooks, the API
key, the manifests rendered for reading - and hands every step that touches the target to its backend
(:class:`~tke_playbook.playbook.backend.Backend`): :class:`~tke_playbook.playbook.local.LocalBackend` or
:class:`~tke_playbook.playbook.cluster.ClusterBackend`. So a notebook never asks which target it runs on.

:class:`LocalPlaybook` and :class:`ClusterPlaybook` only choose the backend (and expose what exists on their
target alone: the local PVC folders and servers; the cluster client and context).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import InvalidSpecError
from ..hostenv import generate_api_key, resolve_target
from ..manifests.download import build_download_job, build_worker_configmap
from ..manifests.plan import build_helm_values, build_plan, chart_limit
from ..manifests.serving import KEY_REVISION_ANNOTATION, build_serving_objects, pod_templates
from ..podworker.planner import DownloadPlan, tutorial_plan
from ..specs.catalog import RERANKERS, get_model
from ..specs.diagnosis import diagnose_log
from ..specs.fit import check_fit
from ..specs.download import DownloadSpec
from ..specs.hardware import NodeType, node_type_from_dict, node_type_to_dict
from ..specs.serving import API_KEY_SECRET_KEY, LATEST_VLLM_IMAGE, ServingSpec, node_changes, seed_profile
from ..specs.storage import DEFAULT_PVC, StorageSpec
from ..specs.target import Target
from .backend import Backend
from .base import (PREFERRED_NODE, FormMemory, Records, check_plan_matches, default_max_model_len, model_id,
                   namespace, to_yaml)
from .events import EventSink, show_event
from .local import LocalBackend
from .report import Level, Note
from .runs import DownloadRecord
from .state import mask_secret

if TYPE_CHECKING:
    from ..kube import Kube
    from .cluster import ClusterBackend


class Playbook:
    """The steps of the tutorial, on the target of ``backend``. ``records`` is what the playbook keeps between
    notebooks; ``on_event`` receives what a step reports while it runs (default: shown in the cell's output)."""

    def __init__(self, backend: Backend, records: Records, on_event: EventSink = show_event):
        self.backend = backend
        self.records = records
        self.on_event = on_event
        self.forms = FormMemory()  # whether this kernel's last reading of each form failed (see read_form)

    # --- construction -------------------------------------------------------------------------------------

    @staticmethod
    def from_env(target: str | Target | None = None, *, context: str | None = None, root: Path | None = None,
                 on_event: EventSink = show_event) -> "Playbook":
        """The playbook for ``target``, else ``$TKE_PLAYBOOK_TARGET``, else cluster when a kubeconfig exists."""
        return PLAYBOOKS[resolve_target(target)].open(root=root, context=context, on_event=on_event)

    @property
    def target(self) -> Target:
        return self.backend.target

    @property
    def state(self):
        """The state file notebooks share (:class:`~tke_playbook.playbook.state.StateStore`)."""
        return self.records.state

    @property
    def secrets(self):
        return self.records.secrets

    @property
    def runs(self):
        """What runs, shared by every kernel (:class:`~tke_playbook.playbook.runs.RunRegistry`)."""
        return self.records.runs

    @property
    def root(self) -> Path:
        return self.records.root

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target.value!r}, state={str(self.state.path)!r})"

    def describe(self) -> str:
        """One sentence on where the steps run (shown when a notebook displays the playbook)."""
        return self.backend.describe()

    def _repr_html_(self) -> str:
        return Note(self.describe(), Level.INFO)._repr_html_()

    # --- defaults -----------------------------------------------------------------------------------------

    @property
    def default_model(self) -> str:
        """The model a notebook uses when its MODEL parameter is empty."""
        return self.backend.default_model

    def model(self, name: str | None = "") -> str:
        """``name`` as a catalog id, or the target's default model when empty."""
        return model_id(name, self.default_model)

    @property
    def namespace(self) -> str:
        return namespace()

    def storage_defaults(self, pvc_name: str = "", vpc_id: str | None = None, subnet_id: str | None = None,
                         zone: str | None = None) -> StorageSpec:
        """The tutorial's storage: PVC ``ai-model`` (or ``pvc_name``) on a CFS StorageClass; with ``vpc_id`` and
        ``subnet_id`` (and ``zone``: the GPU node's) the StorageClass itself is created too. Empty means not given."""
        given = {k: v.strip() for k, v in {"pvc_name": pvc_name, "vpc_id": vpc_id, "subnet_id": subnet_id,
                                           "zone": zone}.items() if v and v.strip()}
        return StorageSpec(**given)

    def serving_defaults(self, model: str = "", **changes: Any) -> ServingSpec:
        """The seed profile (the tutorial's values) for ``model``, with max_model_len capped to the model's limit,
        the PVC recorded by notebook 01 and the node type chosen in 00 (its GPU for the fit check, its instance
        type for the node affinity). Without ``model``: the model (and PVC) 02 downloaded last, else the target's
        default model."""
        downloaded = self.downloaded()
        if not model and downloaded is not None:
            model = downloaded.model
            changes.setdefault("pvc_name", downloaded.spec.get("pvc"))
        info = get_model(self.model(model))
        storage = self.state.get("storage") or {}
        if storage.get("pvc_name") and "pvc_name" not in changes:
            changes["pvc_name"] = storage["pvc_name"]
        # one resolution of every change: a model the seed's vLLM cannot serve may come with its own image
        return seed_profile().replace(**{"model": info.hf_id, "max_model_len": default_max_model_len(info.hf_id),
                                         "namespace": self.namespace, **node_changes(self.node_type()), **changes})

    def reranker_defaults(self, model: str = "", **changes: Any) -> ServingSpec:
        """The reranker 03 puts beside the embedder. On a cluster: ``model`` (default BAAI/bge-reranker-v2-m3) as
        :meth:`serving_defaults` gives it, on the newest vLLM image whose parser was checked (Qwen3-Reranker's
        ``--hf-overrides`` need 0.33.0 or later); its own Deployment and Service. Locally: the embedder's spec - the
        server 03 starts answers /rerank itself."""
        model = model or self.backend.default_reranker
        if not model:
            return self.records.recorded_serving_spec() or self.serving_defaults(**changes)
        info = get_model(model)
        if not info.is_reranker:
            raise InvalidSpecError(f"{info.hf_id} is not a reranker (it embeds): choose one of {', '.join(RERANKERS)}",
                                   field="model", value=model)
        return self.serving_defaults(info.hf_id, **{"image": LATEST_VLLM_IMAGE, "vllm_version": None, **changes})

    def deploy_reranker(self, serving_spec, **options: Any):
        """Put the reranker beside the embedder and return its endpoint; the embedder stays the deployment 04-07
        use. On a cluster a second vLLM Deployment and Service (``timeout=`` seconds); locally the embedder's own
        server, which answers /rerank (nothing starts)."""
        return self.backend.deploy_beside(serving_spec, **options)

    def downloaded(self) -> DownloadRecord | None:
        """The latest download 02 finished (its record), or None: 03 starts from its model and PVC."""
        return self.records.downloaded()

    def download_defaults(self, model: str = "", source: str = "", completions: int = 3, parallelism: int = 3):
        """A DownloadSpec for ``model`` (default: the target's) onto the recorded PVC; parallelism capped at
        completions. ``source`` empty: ModelScope on a cluster (as the tutorial), Hugging Face locally."""
        storage = self.state.get("storage") or {}
        return DownloadSpec(model=self.model(model), source=source or self.backend.default_source,
                            completions=completions, parallelism=min(parallelism, completions),
                            pvc=storage.get("pvc_name", DEFAULT_PVC), namespace=self.namespace)

    # --- 00 prerequisites ---------------------------------------------------------------------------------

    def preflight(self, model: str = ""):
        """The target's checks for ``model`` as a report (``.to_frame()``)."""
        return self.backend.preflight(model)

    def node_types(self) -> list:
        return self.backend.node_types()

    def nodes_table(self) -> pd.DataFrame:
        return self.backend.nodes_table()

    def choose_node_type(self, node_type) -> NodeType:
        """Record the GPU node type to serve on, for every later notebook and kernel: the fit checks of 02/03, the
        serving spec's GPU and node affinity, and what 05/06 price and plan on (:meth:`node_type`)."""
        self.state.put("node_type", node_type_to_dict(node_type))
        return node_type

    def node_type(self) -> NodeType | None:
        """The node type chosen in 00 (read from the state file, so any kernel sees it), else the tutorial's
        PNV5b.8XLARGE96 (or the first GPU node type of the target)."""
        recorded = self.state.get("node_type")
        if isinstance(recorded, dict):
            try:
                return node_type_from_dict(recorded)
            except (KeyError, TypeError, ValueError):
                pass  # a damaged record: fall back to the default below
        nodes = [n for n in self.node_types() if getattr(n, "gpu", None)] or list(self.node_types())
        by_name = {n.name: n for n in nodes}
        return by_name.get(recorded) or by_name.get(PREFERRED_NODE) or (nodes[0] if nodes else None)

    def unavailable_models(self, step: str = "download") -> dict[str, str]:
        """Models this target cannot use for ``step`` (``download`` in 02, ``serve`` in 03) right now, each with
        why in words (locally offline: "needs a hub"); the pickers mark them instead of offering them as usable."""
        return self.backend.unavailable_models(step)

    def source_note(self) -> str:
        """What the hub choice means on this target (locally offline: the packaged copy through a local mirror),
        shown beside the hub in 02's form; empty when the hub is the real one."""
        return self.backend.source_note()

    def read_form(self, form):
        """``form.spec()``, remembered for this kernel: when it fails (a red message), the cells after it refuse
        the spec an earlier run left in the notebook instead of quietly using it."""
        return self.forms.read(form)

    # --- 01 storage ---------------------------------------------------------------------------------------

    def pvcs(self) -> list[str]:
        return self.backend.pvcs()

    def create_storage(self, storage_spec, **options: Any) -> pd.DataFrame:
        """Create the PVC (and StorageClass) of ``storage_spec`` and record it; on a cluster wait until it binds
        (``timeout=`` seconds)."""
        self.forms.check(storage_spec)
        return self.backend.create_storage(storage_spec, **options)

    def render_storage(self, storage_spec) -> str:
        """The StorageClass (when the spec creates one) and the PVC, as YAML."""
        self.forms.check(storage_spec)
        head = "" if storage_spec.creates_storage_class else (
            f"# StorageClass '{storage_spec.storage_class}' is expected to exist (create it in the TKE console, type "
            f"CFS, in the GPU node's zone),\n# or give vpc_id and subnet_id to have it created.\n")
        return head + to_yaml(build_plan(storage_spec))

    # --- 02 download --------------------------------------------------------------------------------------

    def plan_download(self, spec, **options: Any):
        """List the hub and split the files into shards; kept for the launch cell (a failed plan forgets it).
        Locally ``mirror=`` lists from a running hub mirror."""
        self.forms.check(spec)
        return self.backend.plan_download(spec, **options)

    def start_download(self, spec, plan=None, **options: Any) -> pd.DataFrame:
        """Launch the download of ``plan`` (default: the plan cell's for ``spec``); on a cluster ``token=`` goes
        into the hub token Secret only."""
        self.forms.check(spec)
        return self.backend.start_download(spec, plan, **options)

    def download_progress(self) -> pd.DataFrame:
        return self.backend.download_progress()

    def wait_for_download(self, **options: Any):
        """Wait for the download with a progress bar (``timeout=`` seconds); raises its error if it failed."""
        return self.backend.wait_for_download(**options)

    def verify_download(self) -> pd.DataFrame:
        return self.backend.verify_download()

    def stop_downloads(self) -> list:
        return self.backend.stop_downloads()

    def render_download(self, spec, plan) -> str:
        """The worker ConfigMap (files per index, plan abbreviated) and the Indexed Job as YAML (no token)."""
        check_plan_matches(spec, plan)
        configmap = build_worker_configmap(spec, plan)
        configmap["data"] = {k: (v if len(v) <= 400 else f"<{len(v):,} characters: the worker's code and the "
                                 "plan, shipped to every pod>") for k, v in configmap.get("data", {}).items()}
        return to_yaml([configmap, build_download_job(spec, plan)])

    def download_job_table(self, spec: DownloadSpec, plan: DownloadPlan) -> pd.DataFrame:
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

    # --- 03 deploy ----------------------------------------------------------------------------------------

    def deploy(self, serving_spec, **options: Any):
        """Deploy ``serving_spec`` and return its endpoint; on a cluster the vLLM log follows as events
        (``timeout=`` seconds)."""
        self.forms.check(serving_spec)
        return self.backend.deploy(serving_spec, **options)

    def endpoint(self, model: str = ""):
        """Where the deployment of ``model`` (default: the last deployed) answers."""
        return self.backend.endpoint(model)

    def deployment_logs(self, lines: int = 20) -> str:
        return self.backend.deployment_logs(lines)

    def diagnose(self) -> pd.DataFrame:
        """Plain-words findings in the deployment's log tail (model not found, CUDA out of memory, ...)."""
        found = diagnose_log(self.deployment_logs(200), "serving")
        if not found:
            return pd.DataFrame([{"severity": "ok", "finding": "nothing wrong in the log tail", "what to do": ""}])
        return pd.DataFrame([{"severity": d.severity.value, "finding": f"{d.problem}. {d.explanation}",
                              "what to do": d.action, "seen": d.evidence.strip()[:200]} for d in found])

    def running(self) -> pd.DataFrame:
        """What this playbook has running, from the record every kernel shares."""
        return self.backend.running()

    def fit_table(self, serving_spec) -> pd.DataFrame:
        """The GPU fit verdict of ``serving_spec`` on the node type chosen in 00, one row per memory item and the
        verdict last (for a reranker: the cross-encoder's weights and a step of query-document pairs)."""
        node = self.node_type()
        if node is None or getattr(node, "gpu", None) is None:
            return pd.DataFrame([{"item": "verdict", "GiB": None, "note": "no GPU node type chosen in 00"}])
        verdict = check_fit(serving_spec.model, node, serving_spec.max_model_len, serving_spec.gpu_memory_utilization,
                            tensor_parallel=serving_spec.tp_size,
                            max_num_batched_tokens=serving_spec.max_num_batched_tokens)
        rows = [*verdict.as_rows(), {"item": "verdict", "GiB": None,
                                     "note": f"{verdict.summary()} {verdict.recommendation}".strip()}]
        return pd.DataFrame(rows + [{"item": "note", "GiB": None, "note": n} for n in verdict.notes])

    def render_serving(self, serving_spec) -> str:
        """Every serving object (Secret with its value hidden, auth-proxy ConfigMap for a public load balancer,
        Deployment or LeaderWorkerSet, Service), as YAML."""
        self.forms.check(serving_spec)
        keyed = serving_spec.api_key_required  # a placeholder key and salt: neither is shown
        docs = build_serving_objects(serving_spec, generate_api_key() if keyed else None,
                                     secrets.token_bytes(32) if keyed else None)
        for doc in docs:
            if doc["kind"] == "Secret":
                doc["data"] = {API_KEY_SECRET_KEY: "<generated; kept in the Secret, not shown>"}
            elif doc["kind"] in ("Deployment", "LeaderWorkerSet"):
                for template in pod_templates(doc):  # the revision of a placeholder key would mislead
                    template["metadata"]["annotations"].pop(KEY_REVISION_ANNOTATION, None)
        return to_yaml(docs)

    def helm_values(self, serving_spec) -> str:
        """The equivalent values.yaml for the tutorial's vllm-inference-tke chart (apiKey left out). When the chart
        cannot express this deployment (the tutorial's own public LoadBalancer needs the toolkit's auth proxy), the
        values are those of the nearest one it can make, headed by a comment that says what differs and which form
        field gives exactly that."""
        self.forms.check(serving_spec)
        limit = chart_limit(serving_spec)
        if limit is None:
            return to_yaml([build_helm_values(serving_spec)])
        why, changes = limit
        nearest = serving_spec.replace(**changes) if changes else None
        if nearest is None or chart_limit(nearest) is not None:
            return f"# No values.yaml for the tutorial's chart: it {why}. Deploy with the manifests above instead.\n"
        change = (f"set 'Service type' to {nearest.service_type.value} in the form above" if "service_type" in changes
                  else "leave out the load balancer's source ranges")
        return (f"# The tutorial's chart {why}.\n# These values are for Service type {nearest.service_type.value} "
                f"(reach it with kubectl port-forward): {change} for the same deployment here.\n"
                + to_yaml([build_helm_values(nearest)]))

    # --- the API key and the recorded specs ---------------------------------------------------------------

    def api_key(self, serving_spec: ServingSpec) -> str | None:
        """The API key of a deployment (generated on first use and kept; None when no key is required)."""
        return self.records.api_key(serving_spec)

    def masked_api_key(self, serving_spec: ServingSpec) -> str:
        self.forms.check(serving_spec)
        return mask_secret(self.api_key(serving_spec))

    def require_deployed(self) -> ServingSpec:
        """The serving spec 03 deployed; NotDeployedError (run 03) when nothing is deployed, e.g. after 99."""
        return self.records.require_deployed()

    def recorded_serving_spec(self) -> ServingSpec | None:
        """The serving spec the last deploy used (notebook 03), or None."""
        return self.records.recorded_serving_spec()

    def deployed_spec(self, model: str = "") -> ServingSpec | None:
        """The spec ``model`` was deployed with (default: the last deployment), or None."""
        return self.records.deployed_spec(model)

    # --- 05 compare, 99 cleanup ---------------------------------------------------------------------------

    def comparison_pair(self, model_a: str = "", model_b: str = ""):
        """The two embedders notebook 05 compares (two deployments on a cluster; locally the served model and
        the lexical baseline)."""
        return self.backend.comparison_pair(model_a, model_b)

    def teardown(self, keep_pvc: bool = True) -> pd.DataFrame:
        """Delete what the playbook made (the PVC only with ``keep_pvc=False``) and forget the records."""
        return self.backend.teardown(keep_pvc)


class LocalPlaybook(Playbook):
    """The playbook on this machine: a :class:`Playbook` with a :class:`~tke_playbook.playbook.local.LocalBackend`."""

    backend: LocalBackend

    def __init__(self, root: Path | None = None, *, on_event: EventSink = show_event):
        records = Records(Target.LOCAL, root)
        super().__init__(LocalBackend(records), records, on_event)

    @classmethod
    def open(cls, *, root: Path | None = None, context: str | None = None,
             on_event: EventSink = show_event) -> "LocalPlaybook":
        return cls(root=root, on_event=on_event)

    # what exists on this target alone

    def pvc_path(self, pvc_name: str) -> Path:
        """The folder that plays PVC ``pvc_name`` (not created here)."""
        return self.backend.folders.path(pvc_name)

    def model_folder(self, serving_spec) -> Path:
        """Where the model of ``serving_spec`` lies on the local PVC (``<pvc>/<model id>``); creates nothing."""
        return self.backend.model_folder(serving_spec)

    def download_folder(self, spec=None) -> Path:
        """The model folder on the local PVC of ``spec`` or the recorded download."""
        return self.backend.downloads.download_folder(spec)

    def stop_servers(self, which=None) -> list:
        """Stop every recorded running server (``which(record)`` picks some), whichever kernel started it."""
        return self.backend.stop_servers(which)

    def stop_server(self) -> bool:
        """Stop every recorded running server; True when one was running."""
        return bool(self.stop_servers())


class ClusterPlaybook(Playbook):
    """The playbook on a Kubernetes cluster: a :class:`Playbook` with a
    :class:`~tke_playbook.playbook.cluster.ClusterBackend`. ``context`` picks the kubeconfig context (kept for
    later notebooks); ``kube`` is an already connected client (else one connects on first use)."""

    backend: ClusterBackend

    def __init__(self, root: Path | None = None, context: str | None = None, kube: Kube | None = None, *,
                 on_event: EventSink = show_event):
        # here, not at the top: the Kubernetes client loads only when a cluster playbook is built
        from .cluster import ClusterBackend
        from .connection import KubeConnection

        records = Records(Target.CLUSTER, root)
        if context:
            records.state.put("context", context)
        connection = KubeConnection(context or records.state.get("context") or None, kube)
        super().__init__(ClusterBackend(records, connection, on_event), records, on_event)

    @classmethod
    def open(cls, *, root: Path | None = None, context: str | None = None,
             on_event: EventSink = show_event) -> "ClusterPlaybook":
        return cls(root=root, context=context, on_event=on_event)

    # what exists on this target alone

    @property
    def context(self) -> str | None:
        """The kubeconfig context (None: the current one)."""
        return self.backend.context

    @property
    def kube(self):
        """The cluster client (:class:`~tke_playbook.kube.Kube`), connected on first use."""
        return self.backend.kube


# which playbook each target opens (read-only)
PLAYBOOKS = MappingProxyType({Target.LOCAL: LocalPlaybook, Target.CLUSTER: ClusterPlaybook})
