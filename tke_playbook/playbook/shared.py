"""The half of each step that is the same on both targets: defaults, rendering, the API key, the records.

Each target's step class (``LocalServing``, ``ClusterServing``, ...) is one of these plus what touches its target,
so the step object a notebook holds does everything itself - there is no forwarding layer. Every step is given the
playbook's :class:`~tke_playbook.playbook.steps.Session`; serving and evaluation also the site (the node type 00
chose), serving the downloads (the model 02 fetched).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import pandas as pd

from ..hostenv import generate_api_key
from ..manifests.download import build_download_job, build_worker_configmap
from ..manifests.plan import build_helm_values, build_plan, chart_limit
from ..manifests.serving import KEY_REVISION_ANNOTATION, build_serving_objects, pod_templates
from ..manifests.yamldoc import plan_to_yaml
from ..podworker.planner import DownloadPlan, tutorial_plan
from ..errors import InvalidSpecError
from ..specs.catalog import RERANKERS, get_model
from ..specs.diagnosis import diagnose_log
from ..specs.fit import check_fit
from ..specs.download import DownloadSpec
from ..specs.hardware import NodeType
from ..specs.serving import LATEST_VLLM_IMAGE, ServingSpec, node_changes, seed_profile
from ..specs.storage import DEFAULT_PVC, StorageSpec
from .defaults import PREFERRED_NODE, default_max_model_len, model_id
from .memory import require_matching_plan
from .runs import DownloadRecord
from .state import mask_secret

if TYPE_CHECKING:
    from .steps import Download, Session, Site


class SiteBase:
    """The node type chosen in 00, recorded for every kernel; the target lists its node types."""

    default_model: str

    def __init__(self, session: Session):
        self.session = session

    def node_types(self) -> list[NodeType]:
        raise NotImplementedError

    def choose_node_type(self, node_type: NodeType) -> NodeType:
        """Record the GPU node type to serve on, for every later notebook and kernel: the fit checks of 02/03, the
        serving spec's GPU and node affinity, and what 05/06 price and plan on (:meth:`node_type`)."""
        self.session.records.state.update(node_type=node_type)
        return node_type

    def node_type(self) -> NodeType | None:
        """The node type chosen in 00 (read from the state file, so any kernel sees it), else the tutorial's
        PNV5b.8XLARGE96 (or the first GPU node type of the target)."""
        recorded = self.session.records.read().node_type
        if recorded is not None:
            return recorded
        nodes = [n for n in self.node_types() if n.gpu is not None] or list(self.node_types())
        by_name = {n.name: n for n in nodes}
        return by_name.get(PREFERRED_NODE) or (nodes[0] if nodes else None)


class StorageBase:
    """The tutorial's storage spec and its manifests."""

    def __init__(self, session: Session):
        self.session = session

    def defaults(self, pvc_name: str = "", vpc_id: str | None = None, subnet_id: str | None = None,
                 zone: str | None = None) -> StorageSpec:
        """The tutorial's storage: PVC ``ai-model`` (or ``pvc_name``) on a CFS StorageClass; with ``vpc_id`` and
        ``subnet_id`` (and ``zone``: the GPU node's) the StorageClass itself is created too. Empty means not given."""
        given = {k: v.strip() for k, v in {"pvc_name": pvc_name, "vpc_id": vpc_id, "subnet_id": subnet_id,
                                           "zone": zone}.items() if v and v.strip()}
        return StorageSpec(**given)

    def render(self, spec: StorageSpec) -> str:
        """The StorageClass (when the spec creates one) and the PVC, as YAML."""
        self.session.forms.check(spec)
        notes = [] if spec.creates_storage_class else [
            f"StorageClass '{spec.storage_class}' is expected to exist (create it in the TKE console, type CFS, in "
            f"the GPU node's zone),", "or give vpc_id and subnet_id to have it created."]
        return plan_to_yaml(build_plan(spec), notes)


class DownloadBase:
    """The download spec, its manifests for reading, and the tutorial's split beside ours."""

    default_source: str  # the hub a download reads from when the form leaves it empty

    def __init__(self, session: Session, default_model: str):
        self.session = session
        self.default_model = default_model

    def defaults(self, model: str = "", source: str = "", completions: int = 3, parallelism: int = 3) -> DownloadSpec:
        """A DownloadSpec for ``model`` (default: the target's) onto the recorded PVC; parallelism capped at
        completions. ``source`` empty: ModelScope on a cluster (as the tutorial), Hugging Face locally."""
        storage = self.session.records.read().storage
        return DownloadSpec(model=model_id(model, self.default_model), source=source or self.default_source,
                            completions=completions, parallelism=min(parallelism, completions),
                            pvc=storage.pvc_name if storage is not None else DEFAULT_PVC,
                            namespace=self.session.settings.namespace)

    def render(self, spec: DownloadSpec, plan: DownloadPlan) -> str:
        """The worker ConfigMap (files per index, plan abbreviated) and the Indexed Job as YAML (no token)."""
        require_matching_plan(spec, plan)
        configmap = build_worker_configmap(spec, plan)
        configmap["data"] = {k: (v if len(v) <= 400 else f"<{len(v):,} characters: the worker's code and the "
                                 "plan, shipped to every pod>") for k, v in configmap.get("data", {}).items()}
        return plan_to_yaml([configmap, build_download_job(spec, plan)])

    def job_table(self, spec: DownloadSpec, plan: DownloadPlan) -> pd.DataFrame:
        """The Indexed Job at a glance: one row per index with its files and bytes, and the Job's completions,
        parallelism and completion mode (what the tutorial's downloader script sets)."""
        require_matching_plan(spec, plan)
        job = build_download_job(spec, plan)["spec"]
        return pd.DataFrame([{"job": spec.job_name, "index": i, "files": len(shard),
                              "bytes": int(plan.bytes_per_shard[i]), "completions": job.get("completions"),
                              "parallelism": job.get("parallelism"), "completionMode": job.get("completionMode")}
                             for i, shard in enumerate(plan.shards)])

    def tutorial_plan(self, spec: DownloadSpec, plan: DownloadPlan) -> DownloadPlan:
        """The tutorial's split of the same files (sorted safetensors cut by count; the rest on index 0)."""
        return tutorial_plan(spec, list(plan.files), endpoint=plan.endpoint)

    def downloaded(self) -> DownloadRecord | None:
        """The latest download 02 finished (its record), or None: 03 starts from its model and PVC."""
        return self.session.records.downloaded()


class ServingBase:
    """The serving spec (from the tutorial's values, the model 02 fetched and the node type 00 chose), its
    manifests and Helm values for reading, its API key, and what 03 deployed."""

    default_reranker: str  # the reranker 03 puts beside the embedder ("": the embedder's own server answers /rerank)

    def __init__(self, session: Session, site: Site, downloads: Download):
        self.session = session
        self.site = site
        self.downloads = downloads

    def logs(self, lines: int = 20) -> str:
        raise NotImplementedError

    def defaults(self, model: str = "") -> ServingSpec:
        """The seed profile (the tutorial's values) for ``model``, with max_model_len capped to the model's limit,
        the PVC recorded by notebook 01 and the node type chosen in 00 (its GPU for the fit check, its instance
        type for the node affinity). Without ``model``: the model (and PVC) 02 downloaded last, else the target's
        default model."""
        downloaded = self.downloads.downloaded()
        pvc = self.session.records.read().storage
        changes = {"pvc_name": pvc.pvc_name} if pvc is not None else {}
        if not model and downloaded is not None:
            model = downloaded.model
            changes = {"pvc_name": downloaded.spec.get("pvc")} if downloaded.spec.get("pvc") else changes
        return self._seeded(model_id(model, self.site.default_model), changes)

    def _seeded(self, model: str, changes: dict) -> ServingSpec:
        """The seed profile for ``model`` with every change resolved at once: a model the seed's vLLM cannot serve
        may come with its own image."""
        info = get_model(model)
        return seed_profile().replace(**{"model": info.hf_id, "max_model_len": default_max_model_len(info.hf_id),
                                         "namespace": self.session.settings.namespace,
                                         **node_changes(self.site.node_type()), **changes})

    def reranker_defaults(self, model: str = "") -> ServingSpec:
        """The reranker 03 puts beside the embedder. On a cluster: ``model`` (default BAAI/bge-reranker-v2-m3) as
        :meth:`defaults` gives it, on the newest vLLM image whose parser was checked (Qwen3-Reranker's
        ``--hf-overrides`` need 0.33.0 or later); its own Deployment and Service. Locally (``default_reranker``
        empty): the embedder's spec - the server 03 starts answers /rerank itself."""
        model = model or self.default_reranker
        if not model:
            return self.session.records.recorded_serving_spec() or self.defaults()
        info = get_model(model)
        if not info.is_reranker:
            raise InvalidSpecError(f"{info.hf_id} is not a reranker (it embeds): choose one of {', '.join(RERANKERS)}",
                                   field="model", value=model)
        pvc = self.session.records.read().storage
        changes = {"pvc_name": pvc.pvc_name} if pvc is not None else {}
        return self._seeded(info.hf_id, {**changes, "image": LATEST_VLLM_IMAGE, "vllm_version": None})

    def fit_table(self, spec: ServingSpec) -> pd.DataFrame:
        """The GPU fit verdict of ``spec`` on the node type chosen in 00, one row per memory item and the verdict
        last (for a reranker: the cross-encoder's weights and a step of query-document pairs). A table to read: GiB
        with two decimals, blank on the verdict and note rows (the numbers: ``check_fit``)."""
        node = self.site.node_type()
        if node is None or getattr(node, "gpu", None) is None:
            return pd.DataFrame([{"item": "verdict", "GiB": "", "note": "no GPU node type chosen in 00"}])
        verdict = check_fit(spec.model, node, spec.max_model_len, spec.gpu_memory_utilization,
                            tensor_parallel=spec.tp_size, max_num_batched_tokens=spec.max_num_batched_tokens)
        rows = [{**row, "GiB": f"{row['GiB']:.2f}"} for row in verdict.as_rows()]  # one format down the column
        rows.append({"item": "verdict", "GiB": "", "note": f"{verdict.summary()} {verdict.recommendation}".strip()})
        return pd.DataFrame(rows + [{"item": "note", "GiB": "", "note": n} for n in verdict.notes])

    def render(self, spec: ServingSpec) -> str:
        """Every serving object (Secret with its value redacted, auth-proxy ConfigMap for a public load balancer,
        Deployment or LeaderWorkerSet, Service), as YAML."""
        self.session.forms.check(spec)
        keyed = spec.api_key_required  # a placeholder key and salt: neither is shown
        docs = build_serving_objects(spec, generate_api_key() if keyed else None,
                                     secrets.token_bytes(32) if keyed else None)
        for doc in docs:
            if doc["kind"] in ("Deployment", "LeaderWorkerSet"):
                for template in pod_templates(doc):  # the revision of a placeholder key would mislead
                    template["metadata"]["annotations"].pop(KEY_REVISION_ANNOTATION, None)
        return plan_to_yaml(docs, redact_secrets=True)

    def helm_values(self, spec: ServingSpec) -> str:
        """The equivalent values.yaml for the tutorial's vllm-inference-tke chart (apiKey left out). When the chart
        cannot express this deployment (the tutorial's own public LoadBalancer needs the toolkit's auth proxy), the
        values are those of the nearest one it can make, headed by a comment that says what differs and which form
        field gives exactly that."""
        self.session.forms.check(spec)
        limit = chart_limit(spec)
        if limit is None:
            return plan_to_yaml([build_helm_values(spec)])
        why, changes = limit
        nearest = spec.replace(**changes) if changes else None
        if nearest is None or chart_limit(nearest) is not None:
            return f"# No values.yaml for the tutorial's chart: it {why}. Deploy with the manifests above instead.\n"
        change = (f"set 'Service type' to {nearest.service_type.value} in the form above" if "service_type" in changes
                  else "leave out the load balancer's source ranges")
        return plan_to_yaml([build_helm_values(nearest)], [
            f"The tutorial's chart {why}.", f"These values are for Service type {nearest.service_type.value} (reach "
            f"it with kubectl port-forward): {change} for the same deployment here."])

    def api_key(self, spec: ServingSpec) -> str | None:
        """The API key of a deployment (generated on first use and kept; None when no key is required)."""
        return self.session.records.api_key(spec)

    def masked_api_key(self, spec: ServingSpec) -> str:
        self.session.forms.check(spec)
        return mask_secret(self.api_key(spec))

    def deployed_spec(self, model: str = "") -> ServingSpec | None:
        """The spec ``model`` was deployed with (default: the last deployment), or None."""
        return self.session.records.deployed_spec(model)

    def require_deployed(self) -> ServingSpec:
        """The serving spec 03 deployed; NotDeployedError (run 03) when nothing is deployed, e.g. after 99."""
        return self.session.records.require_deployed()

    def diagnose(self) -> pd.DataFrame:
        """Plain-words findings in the deployment's log tail (model not found, CUDA out of memory, ...)."""
        found = diagnose_log(self.logs(200), "serving")
        if not found:
            return pd.DataFrame([{"severity": "ok", "finding": "nothing wrong in the log tail", "what to do": ""}])
        return pd.DataFrame([{"severity": d.severity.value, "finding": f"{d.problem}. {d.explanation}",
                              "what to do": d.action, "seen": d.evidence.strip()[:200]} for d in found])
