"""The cluster target: the tutorial's steps on a TKE cluster from kubeconfig, through :mod:`tke_playbook.kube`.

One class per step (:mod:`~tke_playbook.playbook.steps`): :class:`ClusterSite`, :class:`ClusterStorage`,
:class:`ClusterServing`, :class:`ClusterEvaluation` (and
:class:`~tke_playbook.playbook.download_cluster.ClusterDownloads`). Every wait reports what it sees (log lines,
diagnoses) to the playbook's reporter, and raises the cluster module's errors with a plain-words diagnosis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import InvalidSpecError, NotDeployedError, PlaybookError, VerificationError
from ..kube import (Kube, apply_all, get_endpoint, list_nodes, list_pods, list_pvcs, nodes_frame, pod_logs,
                    run_preflight, wait_for_pvc_bound)
from ..kube.rollout import roll_out
from ..kube.teardown import teardown
from ..manifests.plan import build_plan
from ..manifests.scaleout import Autoscaler, ScaleOutSpec
from ..reporting import waiting
from ..specs.catalog import DEFAULT_RERANKER, TUTORIAL_MODEL
from ..specs.hardware import NodeType, get_node_type
from ..specs.labels import Component, selector
from ..specs.serving import API_KEY_SECRET_KEY, ServingSpec
from ..specs.storage import StorageSpec
from ..specs.target import Target
from .connection import KubeConnection
from .defaults import model_id
from .download_cluster import ClusterDownloads
from .endpoint import ServiceEndpoint
from .shared import ServingBase, SiteBase, StorageBase
from .steps import Row, Session

if TYPE_CHECKING:
    from ..capacity.advice import VllmTuning
    from ..capacity.hardware import ServedOn
    from ..corpus.chunking import Chunker
    from ..corpus.loading import Corpus
    from ..scorecard.frontier import Frontier
    from ..scorecard.reference_job import PrecomputedReference

PVC_BIND_TIMEOUT_S = 300.0
PVC_POLL_S = 2.0
AUTOSCALER_COLUMNS = ["check", "result", "detail", "what to do"]


class ClusterSite(SiteBase):
    """A Kubernetes cluster from kubeconfig: its checks, its nodes, and - in 99 - everything the toolkit labelled.
    ``connection`` connects on first use, so building a playbook needs no cluster."""

    target = Target.CLUSTER
    default_model = TUTORIAL_MODEL

    def __init__(self, session: Session, connection: KubeConnection):
        super().__init__(session)
        self.connection = connection

    @property
    def kube(self) -> Kube:
        """The cluster client (connects on first use)."""
        return self.connection.kube

    @property
    def context(self) -> str | None:
        return self.connection.context

    def describe(self) -> str:
        return (f"Target cluster: kubeconfig context {self.context or '(current)'}, namespace "
                f"{self.session.settings.namespace}; state kept in {self.session.records.state.path}.")

    def preflight(self, model: str = ""):
        storage = self.session.records.read().storage
        return run_preflight(self.kube, model=model_id(model, self.default_model),
                             storage_class=storage.storage_class if storage is not None else None)

    def node_types(self) -> list[NodeType]:
        """The distinct node types of the cluster's nodes (by instance type), GPU nodes first."""
        seen: dict[str, NodeType] = {}
        for node in list_nodes(self.kube):
            name = node.instance_type or node.name
            if name not in seen and node.node_type is not None:
                seen[name] = dataclasses.replace(node.node_type, name=name)
        return sorted(seen.values(), key=lambda n: (n.gpu is None, n.name))

    def nodes_table(self) -> pd.DataFrame:
        return nodes_frame(list_nodes(self.kube))

    def remove(self, keep_pvc: bool = True) -> list[Row]:
        """Delete everything the toolkit labelled in the namespace (the PVC and its StorageClass only with
        ``keep_pvc=False``): deployments, services, Jobs, ConfigMaps, Secrets."""
        deleted = teardown(self.kube, self.session.settings.namespace, keep_pvc=keep_pvc)
        return [{"object": r.kind, "name": r.name} for r in deleted]


class ClusterStorage(StorageBase):
    """01 on a cluster: apply the StorageClass (when the spec has one) and the PVC, wait until it binds."""

    def __init__(self, session: Session, site: ClusterSite):
        super().__init__(session)
        self.site = site

    def names(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in list_pvcs(self.site.kube, self.session.settings.namespace))

    def create(self, spec: StorageSpec, *, timeout: float | None = None) -> pd.DataFrame:
        """Apply the StorageClass (when the spec has one) and the PVC, then wait until the PVC is Bound (or, with
        a StorageClass that binds on first use, waits for its first pod); ``timeout`` s, default 5 min."""
        self.session.forms.check(spec)
        apply_all(self.site.kube, build_plan(spec))
        self.session.records.state.update(storage=spec)
        with waiting(self.session.reporter, f"Waiting for PVC {spec.pvc_name} to be Bound"):
            pvc = wait_for_pvc_bound(self.site.kube, spec.pvc_name, spec.namespace,
                                     PVC_BIND_TIMEOUT_S if timeout is None else timeout, poll=PVC_POLL_S)
        phase = (pvc.get("status") or {}).get("phase") or "Pending"
        return pd.DataFrame([{"pvc": spec.pvc_name, "status": phase,
                              "volume": (pvc.get("spec") or {}).get("volumeName", ""),
                              "storage_class": spec.storage_class}])

    def remove(self, keep_pvc: bool = True) -> list[Row]:
        """Nothing of its own: the PVC goes with the site's labelled objects when ``keep_pvc=False``."""
        return []


class ClusterServing(ServingBase):
    """03 on a cluster: the serving objects applied and rolled out (:func:`~tke_playbook.kube.rollout.roll_out`),
    the Service's endpoint (load balancer, or a port-forward from here)."""

    site: ClusterSite

    def unavailable_models(self) -> dict[str, str]:
        """None: the pods read the model from the PVC once 02 has downloaded it (the init container waits)."""
        return {}

    default_reranker = DEFAULT_RERANKER

    def deploy(self, spec: ServingSpec, *, timeout: float | None = None) -> ServiceEndpoint:
        """Record ``spec`` as deployed, then roll it out in one call down the layers (apply every serving object,
        follow the log until ready - each line and diagnosis to the reporter - and find the endpoint);
        ``timeout`` s, default the spec's ``startup_timeout_s``."""
        return self._roll_out(spec, timeout, last=True)

    def deploy_beside(self, spec: ServingSpec, *, timeout: float | None = None) -> ServiceEndpoint:
        """A second vLLM Deployment and Service (the reranker) beside the embedder, which stays the deployment
        04-07 use."""
        return self._roll_out(spec, timeout, last=False)

    def _roll_out(self, spec: ServingSpec, timeout: float | None, *, last: bool) -> ServiceEndpoint:
        self.session.forms.check(spec)
        key = self.api_key(spec)
        self.session.records.record_serving(spec, last=last)
        found = roll_out(self.site.kube, spec, key, self.session.records.secrets.annotation_salt(), timeout=timeout,
                         reporter=self.session.reporter)
        return ServiceEndpoint(found.url, spec.served_model_name, found.kind, key, found.note, found)

    def endpoint(self, model: str = "") -> ServiceEndpoint:
        """The Service's URL (load balancer, else a port-forward from here) for ``model`` (default: last deployed)."""
        spec = self.deployed_spec(model) if model else self.require_deployed()
        if spec is None:
            raise NotDeployedError(f"{model} is not deployed: run 03_deploy_vllm with MODEL={model} first.")
        found = get_endpoint(self.site.kube, spec.name, spec.namespace, spec.service_port)
        return ServiceEndpoint(found.url, spec.served_model_name, found.kind, self.api_key(spec), found.note, found)

    def logs(self, lines: int = 20) -> str:
        spec = self.require_deployed()
        pods = list_pods(self.site.kube, spec.namespace, selector(Component.SERVING, spec.name))
        return pod_logs(self.site.kube, pods[0], tail_lines=lines, namespace=spec.namespace) if pods else ""

    def key_source(self, model: str = "") -> str:
        """A shell line that puts the deployment's API key into ``$VLLM_API_KEY`` from its Secret, without showing
        it; empty when the deployment needs no key (or none is deployed)."""
        spec = self.deployed_spec(model)
        if spec is None or not spec.api_key_required:
            return ""
        return (f'export VLLM_API_KEY="$(kubectl get secret {spec.api_key_secret} -n {spec.namespace} '
                f"-o jsonpath='{{.data.{API_KEY_SECRET_KEY}}}' | base64 -d)\"")

    def hardware(self) -> ServedOn:
        """The deployment's GPUs: the spec's GPU, ``gpu_count`` per replica, on the node type chosen in 00."""
        from ..capacity.hardware import on_gpus

        node = self.site.node_type()
        return on_gpus(self.require_deployed(), node.name if node is not None else None)

    def measured_on(self) -> str:
        """For a figure's title: the node type chosen in 00 and its GPUs."""
        node = self.site.node_type()
        if node is None:
            return "the cluster's serving node"
        return f"{node.name} ({node.gpu_count} x {node.gpu.name})" if node.gpu else f"{node.name} (CPU)"

    def tune(self, summary: pd.DataFrame, p99_target_ms: float, *, baseline: Any = None, quick: bool = False,
             max_candidates: int | None = None, input_tokens: int = 32, concurrency: Sequence[int] = (1, 4),
             level_s: float | None = None, progress: bool = False) -> VllmTuning:
        """vLLM flags from the closed-loop sweep ``summary`` (nothing is measured again here), applied to the
        deployed spec; :meth:`~tke_playbook.capacity.advice.VllmTuning.rendered` shows the workload to deploy."""
        from ..capacity.advice import tune_vllm

        return tune_vllm(summary, self.require_deployed())

    def autoscaler_checks(self, scale: ScaleOutSpec) -> pd.DataFrame:
        """What ``scale``'s autoscaler needs on this cluster (metrics adapter or KEDA, Prometheus), checked."""
        if scale.autoscaler is Autoscaler.NONE:
            return pd.DataFrame([("autoscaler", "skip", "no autoscaler chosen", "")], columns=AUTOSCALER_COLUMNS)
        from ..kube.scaleout import check_autoscaler

        return check_autoscaler(self.site.kube, scale).to_frame()

    def running(self) -> list[Row]:
        """The recorded deployments."""
        return self.session.records.deployment_rows()

    def remove(self) -> list[Row]:
        """Nothing of its own: the deployments go with the site's labelled objects (``pb.site.remove``)."""
        return []


class ClusterEvaluation:
    """05 and 07 on a cluster: two deployments side by side, parity by a CPU Job reading the PVC, prices of the
    node type chosen in 00, bulk embedding as an Indexed Job."""

    def __init__(self, session: Session, site: ClusterSite, serving: ClusterServing):
        self.session = session
        self.site = site
        self.serving = serving

    def comparison_pair(self, model_a: str = "", model_b: str = "") -> tuple[Any, Any]:
        """HTTP clients of two deployments (default BGE-M3 and e5-mistral), both deployed with notebook 03."""
        a = self.serving.endpoint(model_a or "BAAI/bge-m3")
        b = self.serving.endpoint(model_b or TUTORIAL_MODEL)
        return a.client(), b.client()

    def parity_reference(self, model: str = "") -> PrecomputedReference:
        """sentence-transformers on the deployment's own files: a CPU Job reading the PVC."""
        from ..scorecard.reference_job import ReferenceJobSpec, run_reference_job

        spec = self.serving.deployed_spec(model)
        if spec is None:
            raise NotDeployedError(f"{model or 'No model'} was not deployed from this machine: run 03_deploy_vllm "
                                   "first, or pass model= one that was.", obj=model)
        return run_reference_job(self.site.kube, ReferenceJobSpec(spec.model, namespace=spec.namespace,
                                                                  pvc=spec.pvc_name))

    def price_node(self, requested: str = "") -> str:
        """The node type to price the endpoints on: ``requested``, else the one chosen in 00 (where they run)."""
        if requested and requested.strip():
            return get_node_type(requested.strip()).name
        chosen = self.site.node_type()
        if chosen is None:
            raise InvalidSpecError("no node type is known for this cluster: choose one in 00_prerequisites or set "
                                   "NODE_TYPE", field="node_type", value=None)
        return chosen.name

    def frontier(self, task: Any = None, *, quick: bool = False, models: Sequence[str] = (),
                 storage: str | None = None, storage_prices: pd.DataFrame | None = None,
                 node_type: str = "", throughputs: Any = None, progress: bool = True) -> Frontier:
        """The dimension x precision frontier of ``models`` (default: the served model) as deployed, at their full
        size and ``CLUSTER_DIMENSIONS`` (a model that is not Matryoshka-trained refuses the smaller ones: listed in
        ``.refused``), priced on the node type chosen in 00; ``quick``: three precisions at one smaller dimension.
        ``throughputs``: what the page measured (``scorecard_throughputs``, 06's load test), priced instead of a
        throughput the frontier would measure on its own."""
        from ..scorecard import frontier as fr

        names = [m.strip() for m in models if m.strip()] or [""]
        clients = [self.serving.endpoint(name).client() for name in names]
        dims = fr.CLUSTER_DIMENSIONS[1:2] if quick else fr.CLUSTER_DIMENSIONS
        return fr.run_frontier(clients, task, dimensions=(None, *dims),
                               precisions=fr.QUICK_PRECISIONS if quick else fr.PRECISIONS,
                               node_type=self.price_node(node_type), measured_on=self.serving.measured_on(),
                               throughputs=throughputs,
                               progress=progress, **self.session.settings.frontier_inputs(storage_prices),
                               **({"storage": storage} if storage else {}))

    def document_systems(self, extra: str = "bm25,hybrid") -> tuple[list, Chunker, str]:
        """``(systems, chunker, note)``: the deployed model first, then ``extra`` (``bm25``, ``tfidf``, ``hybrid``,
        URLs), and the chunker for the served model (its tokenizer and ``max_model_len``)."""
        from ..corpus.chunking import served_chunker

        endpoint = self.serving.endpoint()
        names = [name.strip() for name in extra.split(",") if name.strip()]
        return ([endpoint.client(), *names], served_chunker(endpoint.url, endpoint.api_key),
                f"{endpoint.model} served at {endpoint.url}")

    def embed_corpus(self, corpus: Corpus, *, shards: int = 4, stage_root: str | Path | None = None,
                     workers: int = 2, batch: int = 64, concurrency: int = 4) -> dict:
        """Embed ``corpus`` in bulk with the deployed model as an Indexed Job; the corpus goes onto the PVC first,
        at ``stage_root`` (where the PVC is mounted on this machine). Returns the verified manifest."""
        from ..corpus.shards import embed_plan, stage_corpus
        from ..specs.embedjob import EmbedJobSpec
        from .bulkembed import run_embed_job

        serving = self.serving.require_deployed()
        if stage_root is None:
            raise InvalidSpecError("On a cluster the corpus goes onto the PVC first: pass stage_root= (where the PVC "
                                   "is mounted on this machine), or stage it elsewhere and kubectl cp the corpora/ "
                                   "folder into a pod that mounts the PVC", field="stage_root", value=None)
        staged = stage_corpus(corpus, stage_root, shards=shards)
        spec = EmbedJobSpec.for_serving(serving, staged["name"], shards=len(staged["shards"]),
                                        parallelism=min(workers, len(staged["shards"])))
        plan = embed_plan(staged, endpoint=spec.endpoint, model=spec.model,
                          document_prompt=serving.model_info.document_prompt, batch=batch, concurrency=concurrency)
        try:
            return run_embed_job(self.site.kube, spec, plan, reporter=self.session.reporter)
        except VerificationError:
            raise
        except PlaybookError as exc:
            raise PlaybookError(f"The embedding Job failed: {exc}. Run it again - finished shards are kept",
                                obj=spec.name, cause=exc) from exc
