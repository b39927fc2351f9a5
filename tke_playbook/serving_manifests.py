"""Manifests for the vLLM service: API-key Secret, Deployment (or LeaderWorkerSet), Service. Plain dicts.

Compared with the tutorial's chart: the API key comes from a Secret through ``secretKeyRef`` (never a literal
env value); an init container waits for the download's completion marker so vLLM never starts on a half
model; GPU taints are tolerated; every object carries the toolkit's labels.
"""

from __future__ import annotations

import base64
import math

from . import labels as L
from .errors import InvalidSpecError
from .modelfolder import MARKER_NAME, STATE_DIR
from .serving import API_KEY_SECRET_KEY, CONTAINER_PORT, INTERNAL_LB_SUBNET_ANNOTATION, ServiceType, ServingSpec
from .vllm_args import MODEL_DIR, build_command, build_leader_command, build_worker_command

PROBE_PERIOD_S = 10
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
GPU_RESOURCE = "nvidia.com/gpu"
NCCL_ENV = (("NCCL_IB_GID_INDEX", "3"), ("NCCL_SOCKET_IFNAME", "eth0"), ("GLOO_SOCKET_IFNAME", "eth0"))


def _labels(spec: ServingSpec) -> dict:
    return {**dict(spec.labels), **L.common_labels(L.Component.SERVING, spec.name, spec.model)}


def selector_labels(spec: ServingSpec) -> dict:
    """The stable subset of labels that Deployments and Services select on."""
    return {L.MANAGED_BY: L.TOOL, L.COMPONENT: L.Component.SERVING, L.INSTANCE: spec.name}


def _meta(spec: ServingSpec, name: str) -> dict:
    return {"name": name, "namespace": spec.namespace, "labels": _labels(spec)}


def build_secret(spec: ServingSpec, api_key: str) -> dict:
    """The Secret holding the API key (key ``api-key``), base64-encoded under ``data``."""
    if not isinstance(api_key, str) or not api_key.strip() or any(c.isspace() for c in api_key):
        raise InvalidSpecError("The API key must be a non-empty string without spaces: generate one with "
                               "'python -c \"import secrets; print(secrets.token_urlsafe(24))\"'",
                               field="api_key", value="<hidden>")
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(spec, spec.api_key_secret), "type": "Opaque",
            "data": {API_KEY_SECRET_KEY: base64.b64encode(api_key.encode()).decode()}}


def _probe(failure_threshold: int) -> dict:
    return {"httpGet": {"path": "/health", "port": CONTAINER_PORT, "scheme": "HTTP"}, "timeoutSeconds": 3,
            "periodSeconds": PROBE_PERIOD_S, "failureThreshold": failure_threshold}


def _env(spec: ServingSpec, extra=()) -> list[dict]:
    env = []
    if spec.api_key_required:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": spec.api_key_secret, "key": API_KEY_SECRET_KEY}}})
    env += [{"name": k, "value": v} for k, v in (*extra, *spec.env)]
    return env


def _resources(spec: ServingSpec) -> dict:
    requests = {GPU_RESOURCE: str(spec.gpu_count)}
    if spec.cpu_request:
        requests["cpu"] = spec.cpu_request
    if spec.memory_request:
        requests["memory"] = spec.memory_request
    return {"requests": requests, "limits": {GPU_RESOURCE: str(spec.gpu_count)}}


def _mounts(spec: ServingSpec) -> list[dict]:
    model = {"name": "model", "mountPath": MODEL_DIR, "readOnly": True}
    if spec.pvc_enabled:
        model["subPath"] = spec.pvc_path
    return [{"name": "dshm", "mountPath": "/dev/shm"}, model]


def _volumes(spec: ServingSpec) -> list[dict]:
    model = ({"name": "model", "persistentVolumeClaim": {"claimName": spec.pvc_name, "readOnly": True}}
             if spec.pvc_enabled else {"name": "model", "hostPath": {"path": spec.local_path, "type": "Directory"}})
    return [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}, model]


def _wait_for_model(spec: ServingSpec) -> dict:
    marker = f"{MODEL_DIR}/{STATE_DIR}/{MARKER_NAME}"
    rounds = max(1, math.ceil(spec.model_wait_timeout_s / PROBE_PERIOD_S))
    script = (f"for i in $(seq 1 {rounds}); do [ -f {marker} ] && exit 0; "
              f"echo \"waiting for the model download to finish ({marker} is missing)\"; sleep {PROBE_PERIOD_S}; "
              f"done; echo \"the model folder has no completion marker after {spec.model_wait_timeout_s}s: run the "
              f"download Job, or set wait_for_model=False for a folder filled by other means\"; exit 1")
    return {"name": "wait-for-model", "image": spec.image, "imagePullPolicy": spec.image_pull_policy.value,
            "command": ["bash", "-c", script], "volumeMounts": [_mounts(spec)[1]]}


def _pod_spec(spec: ServingSpec, container: dict, *, multi_node: bool = False) -> dict:
    pod: dict = {"enableServiceLinks": False, "containers": [container], "volumes": _volumes(spec)}
    if spec.wait_for_model:
        pod["initContainers"] = [_wait_for_model(spec)]
    if spec.node_instance_types:
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                   "values": list(spec.node_instance_types)}]}]}}}
    if spec.tolerate_gpu_taint:
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    if multi_node:  # as the chart: Ray and NCCL need the host network
        pod.update({"hostNetwork": True, "hostIPC": True, "dnsPolicy": "ClusterFirstWithHostNet",
                    "securityContext": {"runAsUser": 0}})
    return pod


def _server_container(spec: ServingSpec, name: str, command: list[str], *, probes: bool, extra_env=()) -> dict:
    container = {"name": name, "image": spec.image, "imagePullPolicy": spec.image_pull_policy.value,
                 "command": command, "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
                 "env": _env(spec, extra_env), "resources": _resources(spec), "volumeMounts": _mounts(spec)}
    if probes:
        container["startupProbe"] = _probe(max(1, math.ceil(spec.startup_timeout_s / PROBE_PERIOD_S)))
        container["readinessProbe"] = _probe(3)
        container["livenessProbe"] = _probe(3)
    return container


def _template_meta(spec: ServingSpec, **extra_labels) -> dict:
    meta = {"labels": {**_labels(spec), **extra_labels}}
    if spec.pod_annotations:
        meta["annotations"] = dict(spec.pod_annotations)
    return meta


def build_deployment(spec: ServingSpec) -> dict:
    """A Deployment of ``replicas`` single-node vLLM pods (lws_group_size must be 1)."""
    if spec.is_multi_node:
        raise InvalidSpecError(f"lws_group_size is {spec.lws_group_size}: build a LeaderWorkerSet with "
                               f"build_leader_worker_set, or use build_workload", field="lws_group_size",
                               value=spec.lws_group_size)
    container = _server_container(spec, "vllm", build_command(spec), probes=True)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(spec, spec.name),
            "spec": {"replicas": spec.replicas, "selector": {"matchLabels": selector_labels(spec)},
                     "template": {"metadata": _template_meta(spec), "spec": _pod_spec(spec, container)}}}


def build_leader_worker_set(spec: ServingSpec) -> dict:
    """A LeaderWorkerSet (needs the LWS controller): groups of ``lws_group_size`` pods joined by Ray."""
    if not spec.is_multi_node:
        raise InvalidSpecError("lws_group_size is 1: build a Deployment instead", field="lws_group_size",
                               value=spec.lws_group_size)
    leader = _server_container(spec, "leader", build_leader_command(spec), probes=True, extra_env=NCCL_ENV)
    leader["ports"].append({"name": "ray", "containerPort": 6379})
    leader["securityContext"] = {"privileged": True}
    worker = _server_container(spec, "worker", build_worker_command(spec), probes=False, extra_env=NCCL_ENV)
    worker.pop("ports")
    worker["securityContext"] = {"privileged": True}
    worker_pod = _pod_spec(spec, worker, multi_node=True)
    worker_pod.pop("initContainers", None)
    return {"apiVersion": LWS_API_VERSION, "kind": "LeaderWorkerSet", "metadata": _meta(spec, spec.name),
            "spec": {"replicas": spec.replicas, "leaderWorkerTemplate": {
                "size": spec.lws_group_size, "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": _template_meta(spec, role="leader"),
                                   "spec": _pod_spec(spec, leader, multi_node=True)},
                "workerTemplate": {"metadata": _template_meta(spec, role="worker"), "spec": worker_pod}}}}


def build_workload(spec: ServingSpec) -> dict:
    """The Deployment, or the LeaderWorkerSet when ``lws_group_size`` > 1."""
    return build_leader_worker_set(spec) if spec.is_multi_node else build_deployment(spec)


def build_service(spec: ServingSpec) -> dict:
    """The Service in front of the pods (the leaders, for a LeaderWorkerSet)."""
    meta = _meta(spec, spec.name)
    if spec.service_type is ServiceType.LOAD_BALANCER_INTERNAL:
        meta["annotations"] = {INTERNAL_LB_SUBNET_ANNOTATION: spec.lb_subnet_id}
    selector = selector_labels(spec)
    if spec.is_multi_node:
        selector["role"] = "leader"
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": spec.service_type.kubernetes_type, "selector": selector,
                     "ports": [{"name": "http", "port": spec.service_port, "protocol": "TCP",
                                "targetPort": CONTAINER_PORT}]}}
