"""What the cluster has: nodes (instance type, GPU model and count, allocatable), PVCs, StorageClasses, pods,
their events and logs. Read-only; every function returns plain values or dicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import pandas as pd
from kubernetes.client.exceptions import ApiException

from ..errors import ClusterError
from ..specs.hardware import NodeType, node_type_from_labels
from ..specs.labels import selector_matching
from ..specs.objects import KubeEvent, Node, ObjectMeta, Pod, StorageClass, Workload
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


def node_info(node: dict | Node) -> NodeInfo:
    """A NodeInfo from a Node as the API returns it (pure)."""
    node = Node.of(node)
    node_type = node_type_from_labels(node.meta.labels, node.allocatable, name=node.meta.name or None)
    gpu = node_type.gpu if node_type.gpu_count else None
    return NodeInfo(name=node.meta.name, instance_type=node.meta.labels.get(INSTANCE_TYPE, ""),
                    gpu_model=gpu.name if gpu else None, gpu_count=node_type.gpu_count,
                    gpu_memory_bytes=gpu.memory_bytes if gpu else None, allocatable=dict(node.allocatable),
                    ready=node.ready, zone=node.meta.labels.get(ZONE, ""), labels=dict(node.meta.labels),
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
    return [sc for sc in classes if StorageClass.of(sc).provisioner == CFS_PROVISIONER]


def list_pods(kube: Kube, namespace: str, label_selector: str | None = None) -> list[dict]:
    answer = _call(kube, f"list pods in {namespace}", kube.core.list_namespaced_pod, namespace,
                   label_selector=label_selector)
    return [kube.to_dict(p) for p in answer.items]


PodLike = TypeVar("PodLike", dict, Pod)


def current_pods(kube: Kube, workload: dict | Workload, pods: list[PodLike]) -> list[PodLike]:
    """The pods that decide a rollout: terminating pods are left out, and for a Deployment so are the pods of
    older ReplicaSets (after a fix is applied, the old crashing pod lingers until the new one is ready, and its
    failure belongs to the previous spec). All remaining pods when the current ReplicaSet cannot be told.
    Returns the pods it was given (dicts or views), in their order."""
    live = [(pod, Pod.of(pod)) for pod in pods]
    live = [(pod, view) for pod, view in live if not view.meta.deletion_timestamp]
    template_hash = _current_template_hash(kube, Workload.of(workload))
    return [pod for pod, view in live if not template_hash or view.meta.labels.get(TEMPLATE_HASH) == template_hash]


def _current_template_hash(kube: Kube, workload: Workload) -> str:
    """The pod-template-hash of a Deployment's current ReplicaSet (the one of its revision); '' when unknown."""
    revision = workload.meta.annotations.get(REVISION)
    if workload.kind != "Deployment" or not revision:
        return ""
    selector = selector_matching(workload.match_labels)
    try:
        sets = list_objects(kube, "apps/v1", "ReplicaSet", workload.meta.namespace or None, selector or None)
    except ClusterError:  # e.g. RBAC allows pods but not ReplicaSets: judge every pod, as before this filter
        return ""
    metas = (ObjectMeta.from_api(rs) for rs in sets)
    return next((m.labels.get(TEMPLATE_HASH, "") for m in metas if m.annotations.get(REVISION) == revision), "")


def object_events(kube: Kube, kind: str, name: str, namespace: str) -> list[dict]:
    """Events about one object, oldest first."""
    answer = _call(kube, f"read events of {kind} {name}", kube.core.list_namespaced_event, namespace,
                   field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
    events = [kube.to_dict(e) for e in answer.items]
    return sorted(events, key=lambda e: KubeEvent.from_api(e).timestamp)


def pod_events(kube: Kube, pod: dict | Pod | str, namespace: str | None = None) -> list[dict]:
    """Events about one pod, oldest first. Given the pod as a dict, events of an earlier pod with the same name
    (a LeaderWorkerSet or StatefulSet pod recreated after a teardown) are left out by uid."""
    name, namespace = _name_ns(pod, namespace)
    events = object_events(kube, "Pod", name, namespace)
    uid = "" if isinstance(pod, str) else Pod.of(pod).meta.uid
    if not uid:
        return events
    return [e for e in events if KubeEvent.from_api(e).involved_uid in ("", uid)]


def pod_logs(kube: Kube, pod: dict | Pod | str, tail_lines: int = 50, namespace: str | None = None,
             container: str | None = None, previous: bool | None = None) -> str:
    """The last ``tail_lines`` log lines; after a restart (``previous=None``) the crashed run's log is used when
    the current one is empty. A pod that has not started yet gives ''."""
    name, namespace = _name_ns(pod, namespace)
    container = container or default_container(pod)
    if previous is None:
        text = pod_logs(kube, pod, tail_lines, namespace, container, previous=False)
        if text.strip() or isinstance(pod, str) or not any(cs.restart_count for cs in Pod.of(pod).container_statuses):
            return text
        return pod_logs(kube, pod, tail_lines, namespace, container, True)
    try:
        return kube.core.read_namespaced_pod_log(name, namespace, container=container, tail_lines=tail_lines,
                                                 previous=previous or None) or ""
    except Exception as exc:
        if isinstance(exc, ApiException) and exc.status in (400, 404):  # not started / no previous run / pod gone
            return ""
        raise cluster_error(exc, f"read the log of pod {name}", kube) from None


DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


def default_container(pod: dict | Pod | str) -> str | None:
    """The container whose log a pod's log means, as kubectl picks it: the default-container annotation, else the
    first container when there are several (vLLM comes before the auth-proxy sidecar); None for one container."""
    if isinstance(pod, str):
        return None
    pod = Pod.of(pod)
    annotated = pod.meta.annotations.get(DEFAULT_CONTAINER_ANNOTATION)
    return annotated or (pod.containers[0].name if len(pod.containers) > 1 else None)


def _name_ns(pod: dict | Pod | str, namespace: str | None) -> tuple[str, str]:
    if isinstance(pod, str):
        return pod, namespace or "default"
    meta = Pod.of(pod).meta
    return meta.name, namespace or meta.namespace or "default"
