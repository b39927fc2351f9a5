"""The cluster target: the tutorial's steps on a TKE cluster from kubeconfig, through tke_playbook.cluster.

Same calls as :class:`~tke_playbook.workflow.local.LocalPlaybook`. Every wait prints its progress (log lines,
diagnoses) as it goes and raises the cluster module's errors with a plain-words diagnosis on failure.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pandas as pd

from ..catalog import TUTORIAL_MODEL
from ..errors import NotDeployedError, WaitTimeoutError
from ..labels import INSTANCE
from ..notebook import waiting
from ..target import Target
from .base import Playbook, spec_to_dict
from .download_cluster import ClusterDownloads
from .endpoint import ServiceEndpoint

PVC_BIND_TIMEOUT_S = 300.0


class ClusterPlaybook(ClusterDownloads, Playbook):
    """The tutorial's steps on a Kubernetes cluster."""

    target = Target.CLUSTER

    def __init__(self, root=None, context: str | None = None, kube: Any = None):
        super().__init__(root)
        if context:
            self.state.put("context", context)
        self.context = context or self.state.get("context") or None
        self._kube = kube

    @classmethod
    def open(cls, *, root=None, context: str | None = None) -> "ClusterPlaybook":
        return cls(root=root, context=context)

    def describe(self) -> str:
        return (f"Target cluster: kubeconfig context {self.context or '(current)'}, namespace {self.namespace}; "
                f"state kept in {self.state.path}.")

    @property
    def kube(self):
        if self._kube is None:
            from ..cluster import connect

            self._kube = connect(None, self.context)
        return self._kube

    # --- 00 prerequisites ---------------------------------------------------------------------------------

    def preflight(self, model: str = ""):
        from ..cluster import run_preflight

        storage = self.state.get("storage") or {}
        return run_preflight(self.kube, model=self.model(model), storage_class=storage.get("storage_class"))

    def node_types(self) -> list:
        """The distinct node types of the cluster's nodes (by instance type), GPU nodes first."""
        from ..cluster import list_nodes

        seen: dict[str, Any] = {}
        for node in list_nodes(self.kube):
            name = node.instance_type or node.name
            if name not in seen and node.node_type is not None:
                seen[name] = dataclasses.replace(node.node_type, name=name)
        return sorted(seen.values(), key=lambda n: (n.gpu is None, n.name))

    def nodes_table(self) -> pd.DataFrame:
        from ..cluster import list_nodes, nodes_frame

        return nodes_frame(list_nodes(self.kube))

    # --- 01 storage ---------------------------------------------------------------------------------------

    def pvcs(self) -> list[str]:
        from ..cluster import list_pvcs

        return sorted(p["metadata"]["name"] for p in list_pvcs(self.kube, self.namespace))

    def create_storage(self, storage_spec, timeout: float = PVC_BIND_TIMEOUT_S) -> pd.DataFrame:
        """Apply the StorageClass (when the spec has one) and the PVC, then wait until the PVC is Bound."""
        from ..cluster import ObjectRef, apply_all
        from ..storage import build_pvc, build_storage_class

        docs = ([build_storage_class(storage_spec)] if storage_spec.creates_storage_class else []) + [
            build_pvc(storage_spec)]
        apply_all(self.kube, docs)
        self.state.put("storage", spec_to_dict(storage_spec))
        ref = ObjectRef("v1", "PersistentVolumeClaim", storage_spec.pvc_name, storage_spec.namespace)
        with waiting(f"Waiting for PVC {storage_spec.pvc_name} to be Bound"):
            return self._wait_bound(storage_spec, ref, timeout)

    def _wait_bound(self, storage_spec, ref, timeout: float) -> pd.DataFrame:
        from ..cluster import diagnose_pvc, format_diagnoses, get

        deadline = time.monotonic() + timeout
        while True:
            pvc = get(self.kube, ref) or {}
            phase = (pvc.get("status") or {}).get("phase", "Pending")
            if phase == "Bound":
                volume = (pvc.get("spec") or {}).get("volumeName", "")
                return pd.DataFrame([{"pvc": storage_spec.pvc_name, "status": phase, "volume": volume,
                                      "storage_class": storage_spec.storage_class}])
            if time.monotonic() > deadline:
                found = format_diagnoses(diagnose_pvc(pvc))
                raise WaitTimeoutError(f"PVC {storage_spec.pvc_name} is still {phase} after {timeout:g} s."
                                       + (f"\nDiagnosis:\n{found}" if found else ""), obj=ref)
            time.sleep(3.0)

    # --- 03 deploy ----------------------------------------------------------------------------------------

    def deploy(self, serving_spec, timeout: float | None = None) -> ServiceEndpoint:
        """Apply every serving object (Secret, auth-proxy ConfigMap, workload, Service); follow the log until
        ready; return the endpoint."""
        from ..cluster import apply_all, wait_for_deployment, wait_for_leader_worker_set
        from ..serving_manifests import build_serving_objects

        key = self.api_key(serving_spec) if serving_spec.api_key_required else None
        apply_all(self.kube, build_serving_objects(serving_spec, key))
        self._record_serving(serving_spec)
        wait = wait_for_leader_worker_set if serving_spec.is_multi_node else wait_for_deployment
        with waiting(f"Waiting for {serving_spec.name} to become ready (log lines follow)"):
            wait(self.kube, serving_spec.name, serving_spec.namespace, timeout or serving_spec.startup_timeout_s,
                 on_log=print, on_diagnosis=lambda d: print(f"!! {d}"))
        return self.endpoint(serving_spec.model)

    def endpoint(self, model: str = "") -> ServiceEndpoint:
        """The Service's URL (load balancer, else a port-forward from here) for ``model`` (default: last deployed)."""
        from ..cluster import get_endpoint

        spec = self.deployed_spec(model) if model else self.require_deployed()
        if spec is None:
            raise NotDeployedError(f"{model} is not deployed: run 03_deploy_vllm with MODEL={model} first.")
        found = get_endpoint(self.kube, spec.name, spec.namespace, spec.service_port)
        return ServiceEndpoint(found.url, spec.served_model_name, found.kind, self.api_key(spec), found.note, found)

    def deployment_logs(self, lines: int = 20) -> str:
        from ..cluster import list_pods, pod_logs

        spec = self.require_deployed()
        pods = list_pods(self.kube, spec.namespace, f"{INSTANCE}={spec.name}")
        return pod_logs(self.kube, pods[0], tail_lines=lines, namespace=spec.namespace) if pods else ""

    # --- 05 compare ----------------------------------------------------------------------------------------

    def comparison_pair(self, model_a: str = "", model_b: str = ""):
        """HTTP clients of two deployments (default BGE-M3 and e5-mistral), both deployed with notebook 03."""
        a = self.endpoint(model_a or "BAAI/bge-m3")
        b = self.endpoint(model_b or TUTORIAL_MODEL)
        return a.client(), b.client()

    # --- 99 cleanup ---------------------------------------------------------------------------------------

    def teardown(self, keep_pvc: bool = True) -> pd.DataFrame:
        from ..cluster import teardown

        deleted = teardown(self.kube, self.namespace, keep_pvc=keep_pvc)
        self.stop_downloads()
        self.runs.clear()
        self.state.drop("server", "serving", "download", "deployments", *(() if keep_pvc else ("storage",)))
        return pd.DataFrame([{"object": r.kind, "name": r.name} for r in deleted], columns=["object", "name"])
