"""What the cluster has: nodes (instance type, GPU model and count, allocatable), PVCs, StorageClasses, pods,
their events and logs. Read-only; every function returns plain values or dicts."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from kubernetes.client.exceptions import ApiException

from ..errors import ClusterError
from ..specs.hardware import NodeType, node_type_from_labels
from ..specs.labels import selector_matching
from .apply import list_objects
from .client import Kube, cluster_error

GPU_RESOURCE = "nvidia.com/gpu"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"
CFS_PROVISIONER = "com.tencent.cloud.csi.cfs"
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"


@dataclass(frozen=True)
class NodeInfo:
    """One node: ``gpu_model`` is None on CPU nodes; ``node_type`` is the foundation's NodeType (for check_fit)."""

    name: str
    instance_type: str
    gpu_model: str | None
    gpu_count: int
    gpu_memory_bytes: int | None
    allocatable: dict[str, str]
    ready: bool
    zone: str = ""
    labels: dict[str, str] = field(default_factory=dict, repr=False)
    node_type: NodeType | None = field(default=None, repr=False)

    @property
    def has_gpu(self) -> bool:
        return self.gpu_count > 0

    def row(self) -> dict:
        gib = f"{self.gpu_memory_bytes / 2**30:.0f} GiB" if self.gpu_memory_bytes else ""
        return {"node": self.name, "instance_type": self.instance_type, "zone": self.zone, "ready": self.ready,
                "gpu": self.gpu_model or "", "gpus": self.gpu_count, "gpu_memory": gib,
                "cpu": self.allocatable.get("cpu", ""), "memory": self.allocatable.get("memory", "")}


def node_info(node: dict) -> NodeInfo:
    """A NodeInfo from a Node as the API returns it (pure)."""
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    labels = dict(meta.get("labels") or {})
    allocatable = {k: str(v) for k, v in (status.get("allocatable") or {}).items()}
    node_type = node_type_from_labels(labels, allocatable, name=meta.get("name"))
    gpu = getattr(node_type, "gpu", None)
    count = int(getattr(node_type, "gpu_count", 0) or 0)
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return NodeInfo(name=meta.get("name", ""), instance_type=labels.get(INSTANCE_TYPE, ""),
                    gpu_model=getattr(gpu, "name", None) if count else None, gpu_count=count,
                    gpu_memory_bytes=getattr(gpu, "memory_bytes", None) if count else None,
                    allocatable=allocatable, ready=ready, zone=labels.get(ZONE, ""), labels=labels,
                    node_type=node_type)


def _call(kube: Kube, what: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise cluster_error(exc, what, kube) from None


def list_nodes(kube: Kube) -> list[NodeInfo]:
    nodes = _call(kube, "list nodes", kube.core.list_node)
    return [node_info(kube.to_dict(n)) for n in nodes.items]


def nodes_frame(nodes: list[NodeInfo]) -> pd.DataFrame:
    return pd.DataFrame([n.row() for n in nodes])


def list_pvcs(kube: Kube, namespace: str, label_selector: str | None = None) -> list[dict]:
    answer = _call(kube, f"list PVCs in {namespace}", kube.core.list_namespaced_persistent_volume_claim, namespace,
                   label_selector=label_selector)
    return [kube.to_dict(p) for p in answer.items]


def list_storage_classes(kube: Kube) -> list[dict]:
    return [kube.to_dict(s) for s in _call(kube, "list StorageClasses", kube.storage.list_storage_class).items]


def cfs_storage_classes(classes: list[dict]) -> list[dict]:
    """The StorageClasses backed by Tencent Cloud CFS (pure)."""
    return [sc for sc in classes if sc.get("provisioner") == CFS_PROVISIONER]


def list_pods(kube: Kube, namespace: str, label_selector: str | None = None) -> list[dict]:
    answer = _call(kube, f"list pods in {namespace}", kube.core.list_namespaced_pod, namespace,
                   label_selector=label_selector)
    return [kube.to_dict(p) for p in answer.items]


def current_pods(kube: Kube, workload: dict, pods: list[dict]) -> list[dict]:
    """The pods that decide a rollout: terminating pods are left out, and for a Deployment so are the pods of
    older ReplicaSets (after a fix is applied, the old crashing pod lingers until the new one is ready, and its
    failure belongs to the previous spec). All remaining pods when the current ReplicaSet cannot be told."""
    pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    meta = workload.get("metadata") or {}
    revision = (meta.get("annotations") or {}).get(REVISION)
    if workload.get("kind") != "Deployment" or not revision:
        return pods
    selector = selector_matching(((workload.get("spec") or {}).get("selector") or {}).get("matchLabels"))
    try:
        sets = list_objects(kube, "apps/v1", "ReplicaSet", meta.get("namespace"), selector or None)
    except ClusterError:  # e.g. RBAC allows pods but not ReplicaSets: judge every pod, as before this filter
        return pods
    current = next((rs for rs in sets if ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION)
                    == revision), None)
    template_hash = ((current or {}).get("metadata") or {}).get("labels", {}).get(TEMPLATE_HASH)
    if not template_hash:
        return pods
    return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH) == template_hash]


def object_events(kube: Kube, kind: str, name: str, namespace: str) -> list[dict]:
    """Events about one object, oldest first."""
    answer = _call(kube, f"read events of {kind} {name}", kube.core.list_namespaced_event, namespace,
                   field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
    events = [kube.to_dict(e) for e in answer.items]
    return sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def pod_events(kube: Kube, pod: dict | str, namespace: str | None = None) -> list[dict]:
    """Events about one pod, oldest first. Given the pod as a dict, events of an earlier pod with the same name
    (a LeaderWorkerSet or StatefulSet pod recreated after a teardown) are left out by uid."""
    name, namespace = _name_ns(pod, namespace)
    events = object_events(kube, "Pod", name, namespace)
    uid = ((pod.get("metadata") or {}).get("uid") if isinstance(pod, dict) else None)
    if not uid:
        return events
    return [e for e in events if (e.get("involvedObject") or {}).get("uid") in (None, "", uid)]


def pod_logs(kube: Kube, pod: dict | str, tail_lines: int = 50, namespace: str | None = None,
             container: str | None = None, previous: bool | None = None) -> str:
    """The last ``tail_lines`` log lines; after a restart (``previous=None``) the crashed run's log is used when
    the current one is empty. A pod that has not started yet gives ''."""
    name, namespace = _name_ns(pod, namespace)
    container = container or default_container(pod)
    if previous is None:
        text = pod_logs(kube, pod, tail_lines, namespace, container, previous=False)
        restarted = isinstance(pod, dict) and any(cs.get("restartCount") for cs in (pod.get("status") or {}).get(
            "containerStatuses") or [])
        return text if text.strip() or not restarted else pod_logs(kube, pod, tail_lines, namespace, container, True)
    try:
        return kube.core.read_namespaced_pod_log(name, namespace, container=container, tail_lines=tail_lines,
                                                 previous=previous or None) or ""
    except ApiException as exc:
        if exc.status in (400, 404):  # container not started yet / no previous run / pod gone
            return ""
        raise cluster_error(exc, f"read the log of pod {name}", kube) from None
    except Exception as exc:
        raise cluster_error(exc, f"read the log of pod {name}", kube) from None


DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def default_container(pod: dict | str) -> str | None:
    """The container whose log a pod's log means, as kubectl picks it: the default-container annotation, else the
    first container when there are several (vLLM comes before the auth-proxy sidecar); None for one container."""
    if not isinstance(pod, dict):
        return None
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    containers = (pod.get("spec") or {}).get("containers") or []
    return annotated or (containers[0].get("name") if len(containers) > 1 else None)


def _name_ns(pod: dict | str, namespace: str | None) -> tuple[str, str]:
    if isinstance(pod, dict):
        meta = pod.get("metadata") or {}
        return meta.get("name", ""), namespace or meta.get("namespace") or "default"
    return pod, namespace or "default"
