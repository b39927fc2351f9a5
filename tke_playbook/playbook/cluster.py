"""The cluster target: the tutorial's steps on a TKE cluster from kubeconfig, through :mod:`tke_playbook.kube`.

:class:`ClusterBackend` implements the :class:`~tke_playbook.playbook.backend.Backend` protocol the facade calls.
Every wait reports its progress (log lines, diagnoses) as :class:`~tke_playbook.playbook.events.Event` values to
the sink it was given, and raises the cluster module's errors with a plain-words diagnosis on failure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from ..errors import NotDeployedError
from ..kube import (apply_all, get_endpoint, list_nodes, list_pods, list_pvcs, nodes_frame, pod_logs, run_preflight,
                    wait_for_deployment, wait_for_leader_worker_set, wait_for_pvc_bound)
from ..kube.teardown import teardown
from ..manifests.plan import build_plan
from ..manifests.serving import build_serving_objects
from ..specs.catalog import DEFAULT_RERANKER, TUTORIAL_MODEL
from ..specs.download import Source
from ..specs.labels import Component, selector
from ..specs.target import Target
from .base import Records, model_id, namespace, spec_to_dict
from .connection import KubeConnection
from .display import waiting
from .download_cluster import ClusterDownloads
from .endpoint import ServiceEndpoint
from .events import Event, EventSink, show_event
from .report import Level

PVC_BIND_TIMEOUT_S = 300.0
PVC_POLL_S = 2.0


class ClusterBackend:
    """The tutorial's steps on a Kubernetes cluster. Given the playbook's records, its cluster connection and the
    sink that shows what a wait sees (the vLLM log, diagnoses)."""

    target = Target.CLUSTER
    default_model = TUTORIAL_MODEL
    default_reranker = DEFAULT_RERANKER
    default_source = Source.MODELSCOPE.value

    def __init__(self, records: Records, connection: KubeConnection, on_event: EventSink = show_event):
        self.records = records
        self.connection = connection
        self.on_event = on_event
        self.downloads = ClusterDownloads(records, connection)

    @property
    def kube(self):
        """The cluster client (connects on first use)."""
        return self.connection.kube

    @property
    def context(self) -> str | None:
        return self.connection.context

    def describe(self) -> str:
        return (f"Target cluster: kubeconfig context {self.context or '(current)'}, namespace {namespace()}; "
                f"state kept in {self.records.state.path}.")

    # --- 00 prerequisites ---------------------------------------------------------------------------------

    def preflight(self, model: str = ""):
        storage = self.records.state.get("storage") or {}
        return run_preflight(self.kube, model=model_id(model, self.default_model),
                             storage_class=storage.get("storage_class"))

    def node_types(self) -> list:
        """The distinct node types of the cluster's nodes (by instance type), GPU nodes first."""
        seen: dict[str, Any] = {}
        for node in list_nodes(self.kube):
            name = node.instance_type or node.name
            if name not in seen and node.node_type is not None:
                seen[name] = dataclasses.replace(node.node_type, name=name)
        return sorted(seen.values(), key=lambda n: (n.gpu is None, n.name))

    def nodes_table(self) -> pd.DataFrame:
        return nodes_frame(list_nodes(self.kube))

    def unavailable_models(self, step: str = "download") -> dict[str, str]:
        """None: a cluster downloads any catalog model from its hub (02 says so if the hub cannot be reached)."""
        return {}

    def source_note(self) -> str:
        return ""

    # --- 01 storage ---------------------------------------------------------------------------------------

    def pvcs(self) -> list[str]:
        return sorted(p["metadata"]["name"] for p in list_pvcs(self.kube, namespace()))

    def create_storage(self, storage_spec, timeout: float = PVC_BIND_TIMEOUT_S) -> pd.DataFrame:
        """Apply the StorageClass (when the spec has one) and the PVC, then wait until the PVC is Bound (or, with
        a StorageClass that binds on first use, waits for its first pod)."""
        apply_all(self.kube, build_plan(storage_spec))
        self.records.state.put("storage", spec_to_dict(storage_spec))
        with waiting(f"Waiting for PVC {storage_spec.pvc_name} to be Bound"):
            pvc = wait_for_pvc_bound(self.kube, storage_spec.pvc_name, storage_spec.namespace, timeout,
                                     poll=PVC_POLL_S)
        phase = (pvc.get("status") or {}).get("phase") or "Pending"
        return pd.DataFrame([{"pvc": storage_spec.pvc_name, "status": phase,
                              "volume": (pvc.get("spec") or {}).get("volumeName", ""),
                              "storage_class": storage_spec.storage_class}])

    # --- 02 download (see ClusterDownloads) ---------------------------------------------------------------

    def plan_download(self, spec):
        return self.downloads.plan_download(spec)

    def start_download(self, spec, plan=None, token=None) -> pd.DataFrame:
        return self.downloads.start_download(spec, plan, token)

    def download_progress(self) -> pd.DataFrame:
        return self.downloads.download_progress()

    def wait_for_download(self, timeout: float = 3600.0):
        return self.downloads.wait_for_download(timeout)

    def verify_download(self) -> pd.DataFrame:
        return self.downloads.verify_download()

    def stop_downloads(self) -> list:
        return self.downloads.stop_downloads()

    # --- 03 deploy ----------------------------------------------------------------------------------------

    def deploy(self, serving_spec, timeout: float | None = None, *, beside: bool = False) -> ServiceEndpoint:
        """Apply every serving object (Secret, auth-proxy ConfigMap, workload, Service); follow the log until
        ready (each line an event to the sink, each diagnosis a warning); return the endpoint. ``beside=True``: a
        second service (the reranker) that does not become the deployment 04-07 use."""
        key = self.records.api_key(serving_spec) if serving_spec.api_key_required else None
        apply_all(self.kube, build_serving_objects(serving_spec, key, self.records.secrets.annotation_salt()))
        self.records.record_serving(serving_spec, last=not beside)
        wait = wait_for_leader_worker_set if serving_spec.is_multi_node else wait_for_deployment
        with waiting(f"Waiting for {serving_spec.name} to become ready (log lines follow)"):
            wait(self.kube, serving_spec.name, serving_spec.namespace, timeout or serving_spec.startup_timeout_s,
                 on_log=lambda line: self.on_event(Event(line, Level.INFO, "deploy")),
                 on_diagnosis=lambda d: self.on_event(Event(str(d), Level.WARNING, "deploy")))
        return self.endpoint(serving_spec.model)

    def deploy_beside(self, serving_spec, timeout: float | None = None) -> ServiceEndpoint:
        """A second vLLM Deployment and Service (the reranker) beside the embedder, which stays the last deployed."""
        return self.deploy(serving_spec, timeout, beside=True)

    def endpoint(self, model: str = "") -> ServiceEndpoint:
        """The Service's URL (load balancer, else a port-forward from here) for ``model`` (default: last deployed)."""
        spec = self.records.deployed_spec(model) if model else self.records.require_deployed()
        if spec is None:
            raise NotDeployedError(f"{model} is not deployed: run 03_deploy_vllm with MODEL={model} first.")
        found = get_endpoint(self.kube, spec.name, spec.namespace, spec.service_port)
        return ServiceEndpoint(found.url, spec.served_model_name, found.kind, self.records.api_key(spec), found.note,
                               found)

    def deployment_logs(self, lines: int = 20) -> str:
        spec = self.records.require_deployed()
        pods = list_pods(self.kube, spec.namespace, selector(Component.SERVING, spec.name))
        return pod_logs(self.kube, pods[0], tail_lines=lines, namespace=spec.namespace) if pods else ""

    def running(self) -> pd.DataFrame:
        """What this playbook has running, from the shared record: deployments and downloads."""
        rows = self.records.deployment_rows() + self.records.download_rows()
        return pd.DataFrame(rows, columns=["kind", "name", "model", "where", "pid", "status"])

    # --- 05 compare ----------------------------------------------------------------------------------------

    def comparison_pair(self, model_a: str = "", model_b: str = ""):
        """HTTP clients of two deployments (default BGE-M3 and e5-mistral), both deployed with notebook 03."""
        a = self.endpoint(model_a or "BAAI/bge-m3")
        b = self.endpoint(model_b or TUTORIAL_MODEL)
        return a.client(), b.client()

    # --- 99 cleanup ---------------------------------------------------------------------------------------

    def teardown(self, keep_pvc: bool = True) -> pd.DataFrame:
        deleted = teardown(self.kube, namespace(), keep_pvc=keep_pvc)
        self.stop_downloads()
        self.records.runs.clear()
        self.records.state.drop("server", "serving", "download", "deployments", *(() if keep_pvc else ("storage",)))
        return pd.DataFrame([{"object": r.kind, "name": r.name} for r in deleted], columns=["object", "name"])
