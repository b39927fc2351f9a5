"""Manifests for the vLLM service: API-key Secret, Deployment (or LeaderWorkerSet), Service. Plain dicts.

Compared with the tutorial's chart: the API key comes from a Secret through ``secretKeyRef`` (never a literal
env value); an init container (on the leader AND the workers of a LeaderWorkerSet) waits for the download's
completion marker so vLLM never starts on a half model; GPU taints are tolerated; every container asks for CPU and
memory; a single-node Deployment is hardened (no service-account token, no privilege escalation, no capabilities)
and replaced with ``Recreate`` (a rolling update would wait forever for a second GPU); the model volume is mounted
read-only per mount (a read-only CFS volume cannot create a missing subPath); a public LoadBalancer reaches vLLM
only through an nginx sidecar that checks ``Authorization: Bearer <key>`` on every path but ``/health``.
Every object carries the toolkit's labels.
"""

from __future__ import annotations

import base64
import copy
import math
import posixpath

from ..errors import InvalidSpecError
from ..podworker.modelfolder import readiness_command
from ..specs import labels as L
from ..specs.apikeys import check_api_key, key_revision
from ..specs.serving import (API_KEY_SECRET_KEY, CONTAINER_PORT, INTERNAL_LB_SUBNET_ANNOTATION, PROXY_PORT, ServiceType,
                             ServingSpec)
from ..specs.vllm_args import MODEL_DIR, build_command, build_leader_command, build_worker_command

PROBE_PERIOD_S = 10
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
GPU_RESOURCE = "nvidia.com/gpu"
NCCL_ENV = (("NCCL_IB_GID_INDEX", "3"), ("NCCL_SOCKET_IFNAME", "eth0"), ("GLOO_SOCKET_IFNAME", "eth0"))
# What a container may do: nothing beyond its own files (vLLM needs no Linux capability on one node)
RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
INIT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}}
PROXY_RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
PROXY_CONTAINER = "auth-proxy"
PROXY_TEMPLATE_KEY = "nginx.conf.template"
PROXY_UID = 101  # the `nginx` user of the official image


def _labels(spec: ServingSpec) -> dict:
    return {**dict(spec.labels), **L.common_labels(L.Component.SERVING, spec.name, spec.model)}


def selector_labels(spec: ServingSpec) -> dict:
    """The stable subset of labels that Deployments and Services select on."""
    return {L.MANAGED_BY: L.TOOL, L.COMPONENT: L.Component.SERVING, L.INSTANCE: spec.name}


def _meta(spec: ServingSpec, name: str) -> dict:
    return {"name": name, "namespace": spec.namespace, "labels": _labels(spec)}


def build_secret(spec: ServingSpec, api_key: str) -> dict:
    """The Secret holding the API key (key ``api-key``), base64-encoded under ``data``. The key must follow
    :data:`~tke_playbook.specs.apikeys.API_KEY_RULE` (a bearer token the proxy can compare, long enough)."""
    check_api_key(api_key)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(spec, spec.api_key_secret), "type": "Opaque",
            "data": {API_KEY_SECRET_KEY: base64.b64encode(api_key.encode()).decode()}}


def _probe(failure_threshold: int) -> dict:
    return {"httpGet": {"path": "/health", "port": CONTAINER_PORT, "scheme": "HTTP"}, "timeoutSeconds": 3,
            "periodSeconds": PROBE_PERIOD_S, "failureThreshold": failure_threshold}


def _key_env(spec: ServingSpec) -> dict:
    return {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": spec.api_key_secret,
                                                                   "key": API_KEY_SECRET_KEY}}}


def _env(spec: ServingSpec, extra=()) -> list[dict]:
    env = []
    if spec.api_key_required:
        env.append(_key_env(spec))
    values = dict(extra) | dict(spec.env)  # the user's env wins over the toolkit's NCCL defaults: one of each name
    env += [{"name": k, "value": v} for k, v in values.items()]
    return env


def _resources(spec: ServingSpec) -> dict:
    requests = {GPU_RESOURCE: str(spec.gpu_count), "cpu": spec.cpu_request, "memory": spec.memory_request}
    return {"requests": requests, "limits": {GPU_RESOURCE: str(spec.gpu_count)}}


def _mounts(spec: ServingSpec) -> list[dict]:
    model = {"name": "model", "mountPath": MODEL_DIR, "readOnly": True,
             "subPath": spec.pvc_path if spec.pvc_enabled else posixpath.basename(spec.local_path.rstrip("/"))}
    return [{"name": "dshm", "mountPath": "/dev/shm"}, model]


def _volumes(spec: ServingSpec) -> list[dict]:
    # read-only goes on the mounts: on a read-only volume a subPath that does not exist yet cannot be created
    # (CreateContainerConfigError), which hides the init container's waiting message
    parent = posixpath.dirname(spec.local_path.rstrip("/"))  # the state lives beside the model folder
    model = ({"name": "model", "persistentVolumeClaim": {"claimName": spec.pvc_name}}
             if spec.pvc_enabled else {"name": "model", "hostPath": {"path": parent, "type": "Directory"}})
    return [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}, model]


MODELS_ROOT = "/tke-models"  # where the init container sees the model folder's PARENT (the state lives beside it)


def _wait_for_model(spec: ServingSpec) -> dict:
    """Wait until the model folder is complete by modelfolder's rule: the container runs modelfolder.py itself
    (python3 is in every vLLM image), so it accepts exactly what the local server accepts. It mounts the folder's
    parent, read-only, because the completion state lives beside the folder, not in it."""
    if spec.pvc_enabled:
        parent, _, name = spec.pvc_path.rpartition("/")
        mount = {"name": "model", "mountPath": MODELS_ROOT, "readOnly": True, **({"subPath": parent} if parent else {})}
    else:  # the hostPath volume is already the folder's parent
        name = posixpath.basename(spec.local_path.rstrip("/"))
        mount = {"name": "model", "mountPath": MODELS_ROOT, "readOnly": True}
    command = readiness_command(f"{MODELS_ROOT}/{name}", spec.model_wait_timeout_s, PROBE_PERIOD_S)
    return {"name": "wait-for-model", "image": spec.image, "imagePullPolicy": spec.image_pull_policy.value,
            "command": command, "volumeMounts": [mount]}


def _harden_init(pod: dict) -> None:
    for init in pod.get("initContainers", ()):
        init.setdefault("resources", copy.deepcopy(INIT_RESOURCES))
        init.setdefault("securityContext", copy.deepcopy(RESTRICTED))


def _pod_spec(spec: ServingSpec, container: dict, *, multi_node: bool = False) -> dict:
    pod: dict = {"enableServiceLinks": False, "automountServiceAccountToken": False, "containers": [container],
                 "volumes": _volumes(spec)}
    if spec.wait_for_model:
        pod["initContainers"] = [_wait_for_model(spec)]
        _harden_init(pod)
    if spec.node_instance_types:
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                   "values": list(spec.node_instance_types)}]}]}}}
    if spec.tolerate_gpu_taint:
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    if multi_node:  # as the chart: Ray and NCCL need the host network, host IPC and root
        pod.update({"hostNetwork": True, "hostIPC": True, "dnsPolicy": "ClusterFirstWithHostNet",
                    "securityContext": {"runAsUser": 0}})
    else:
        pod["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
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


def _template_meta(spec: ServingSpec, main: str, **extra_labels) -> dict:
    meta = {"labels": {**_labels(spec), **extra_labels}}
    annotations = dict(spec.pod_annotations)
    if spec.uses_auth_proxy and main != "worker":  # `kubectl logs <pod>` shows vLLM, not the proxy
        annotations["kubectl.kubernetes.io/default-container"] = main
    if annotations:
        meta["annotations"] = annotations
    return meta


# The proxy's nginx.conf. envsubst (shipped in the official image for its templates feature) fills in only
# ${VLLM_API_KEY}, from the Secret; every other `$` is nginx's. /health stays open for the kubelet and load balancer
# checks (and is proxied as exactly /health); every other path needs the key, as vLLM 0.33 compares it ("Bearer"
# or "bearer").
NGINX_TEMPLATE = """\
worker_processes 1;
pid /tmp/nginx.pid;
daemon off;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    client_max_body_size 64m;
    server_tokens off;
    upstream vllm {
        server 127.0.0.1:@UPSTREAM_PORT@;
        keepalive 16;
    }
    server {
        listen @PROXY_PORT@;
        set $tke_authorized 0;
        if ($http_authorization = "Bearer ${VLLM_API_KEY}") { set $tke_authorized 1; }
        if ($http_authorization = "bearer ${VLLM_API_KEY}") { set $tke_authorized 1; }
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_read_timeout 600s;
        proxy_send_timeout 600s;
        # stream both ways: /tmp is a small memory volume, and a body or reply spilling into it would fail the
        # request (or, past its size limit, get the whole pod evicted)
        proxy_request_buffering off;
        proxy_buffering off;
        location = /health {
            proxy_pass http://vllm/health;
        }
        location / {
            default_type application/json;
            if ($tke_authorized = 0) {
                add_header WWW-Authenticate "Bearer" always;
                return 401 '{"error": "Unauthorized"}';
            }
            proxy_pass http://vllm;
        }
    }
}
"""
PROXY_START = ("envsubst '${VLLM_API_KEY}' < /etc/tke-proxy/" + PROXY_TEMPLATE_KEY + " > /tmp/nginx.conf && "
               "exec nginx -c /tmp/nginx.conf -e stderr")


def nginx_config_template(spec: ServingSpec) -> str:
    """The proxy's nginx.conf with ``${VLLM_API_KEY}`` still to be filled in (by envsubst, in the container)."""
    return NGINX_TEMPLATE.replace("@UPSTREAM_PORT@", str(CONTAINER_PORT)).replace("@PROXY_PORT@", str(PROXY_PORT))


def proxy_configmap_name(spec: ServingSpec) -> str:
    return f"{spec.name}-proxy"


def build_proxy_configmap(spec: ServingSpec) -> dict:
    """The ConfigMap holding the proxy's nginx.conf template (public LoadBalancer only)."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(spec, proxy_configmap_name(spec)),
            "data": {PROXY_TEMPLATE_KEY: nginx_config_template(spec)}}


def _proxy_container(spec: ServingSpec) -> dict:
    probe = {"httpGet": {"path": "/health", "port": PROXY_PORT, "scheme": "HTTP"}, "timeoutSeconds": 3,
             "periodSeconds": PROBE_PERIOD_S, "failureThreshold": 3}
    return {"name": PROXY_CONTAINER, "image": spec.proxy_image, "imagePullPolicy": spec.image_pull_policy.value,
            "command": ["/bin/sh", "-c", PROXY_START], "ports": [{"name": "proxy", "containerPort": PROXY_PORT}],
            "env": [_key_env(spec)], "resources": copy.deepcopy(PROXY_RESOURCES), "readinessProbe": probe,
            "securityContext": {**copy.deepcopy(RESTRICTED), "runAsNonRoot": True, "runAsUser": PROXY_UID,
                                "runAsGroup": PROXY_UID, "readOnlyRootFilesystem": True},
            "volumeMounts": [{"name": "proxy-config", "mountPath": "/etc/tke-proxy", "readOnly": True},
                             {"name": "proxy-tmp", "mountPath": "/tmp"}]}


def _add_proxy(spec: ServingSpec, pod: dict) -> dict:
    if spec.uses_auth_proxy:
        pod["containers"].append(_proxy_container(spec))
        pod["volumes"] += [{"name": "proxy-config", "configMap": {"name": proxy_configmap_name(spec)}},
                           {"name": "proxy-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    return pod


def _strategy(spec: ServingSpec) -> dict:
    # every pod needs GPUs: a surge pod would wait for one that only the old pod frees
    if spec.replicas == 1:
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def build_deployment(spec: ServingSpec) -> dict:
    """A Deployment of ``replicas`` single-node vLLM pods (lws_group_size must be 1)."""
    if spec.is_multi_node:
        raise InvalidSpecError(f"lws_group_size is {spec.lws_group_size}: build a LeaderWorkerSet with "
                               f"build_leader_worker_set, or use build_workload", field="lws_group_size",
                               value=spec.lws_group_size)
    container = _server_container(spec, "vllm", build_command(spec), probes=True)
    container["securityContext"] = copy.deepcopy(RESTRICTED)
    pod = _add_proxy(spec, _pod_spec(spec, container))
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(spec, spec.name),
            "spec": {"replicas": spec.replicas, "strategy": _strategy(spec),
                     "selector": {"matchLabels": selector_labels(spec)},
                     "template": {"metadata": _template_meta(spec, "vllm"), "spec": pod}}}


def build_leader_worker_set(spec: ServingSpec) -> dict:
    """A LeaderWorkerSet (needs the LWS controller): groups of ``lws_group_size`` pods joined by Ray. Leader and
    workers both wait for the model (a worker that starts early gives up on Ray after 300 s, and
    ``RecreateGroupOnPodRestart`` would then restart the whole group)."""
    if not spec.is_multi_node:
        raise InvalidSpecError("lws_group_size is 1: build a Deployment instead", field="lws_group_size",
                               value=spec.lws_group_size)
    leader = _server_container(spec, "leader", build_leader_command(spec), probes=True, extra_env=NCCL_ENV)
    leader["ports"].append({"name": "ray", "containerPort": 6379})
    leader["securityContext"] = {"privileged": True}
    worker = _server_container(spec, "worker", build_worker_command(spec), probes=False, extra_env=NCCL_ENV)
    worker.pop("ports")
    worker["securityContext"] = {"privileged": True}
    leader_pod = _add_proxy(spec, _pod_spec(spec, leader, multi_node=True))
    return {"apiVersion": LWS_API_VERSION, "kind": "LeaderWorkerSet", "metadata": _meta(spec, spec.name),
            "spec": {"replicas": spec.replicas, "leaderWorkerTemplate": {
                "size": spec.lws_group_size, "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {"metadata": _template_meta(spec, "leader", role="leader"), "spec": leader_pod},
                "workerTemplate": {"metadata": _template_meta(spec, "worker", role="worker"),
                                   "spec": _pod_spec(spec, worker, multi_node=True)}}}}


def build_workload(spec: ServingSpec) -> dict:
    """The Deployment, or the LeaderWorkerSet when ``lws_group_size`` > 1."""
    return build_leader_worker_set(spec) if spec.is_multi_node else build_deployment(spec)


def build_service(spec: ServingSpec) -> dict:
    """The Service in front of the pods (the leaders, for a LeaderWorkerSet). A public LoadBalancer targets the
    auth proxy, never vLLM's own port."""
    meta = _meta(spec, spec.name)
    if spec.service_type is ServiceType.LOAD_BALANCER_INTERNAL:
        meta["annotations"] = {INTERNAL_LB_SUBNET_ANNOTATION: spec.lb_subnet_id}
    selector = selector_labels(spec)
    if spec.is_multi_node:
        selector["role"] = "leader"
    target = PROXY_PORT if spec.uses_auth_proxy else CONTAINER_PORT
    service_spec = {"type": spec.service_type.kubernetes_type, "selector": selector,
                    "ports": [{"name": "http", "port": spec.service_port, "protocol": "TCP", "targetPort": target}]}
    if spec.lb_source_ranges:
        service_spec["loadBalancerSourceRanges"] = list(spec.lb_source_ranges)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": service_spec}


KEY_REVISION_ANNOTATION = "tke-playbook.io/api-key-revision"


def pod_templates(workload: dict) -> list[dict]:
    """The pod templates of a Deployment (one) or a LeaderWorkerSet (leader and worker)."""
    if workload["kind"] == "LeaderWorkerSet":
        lwt = workload["spec"]["leaderWorkerTemplate"]
        return [lwt["leaderTemplate"], lwt["workerTemplate"]]
    return [workload["spec"]["template"]]


def _salt(key_salt: bytes | None) -> bytes:
    if key_salt is None:
        raise InvalidSpecError("The pods' key-revision annotation needs key_salt, the secret salt kept on this "
                               "machine: pass key_salt=tke_playbook.hostenv.annotation_salt() (or any 32 random "
                               "bytes you keep, to have the same key leave running pods alone)", field="key_salt",
                               value=None)
    return key_salt


def build_serving_objects(spec: ServingSpec, api_key: str | None, key_salt: bytes | None = None) -> list[dict]:
    """Every serving object in apply order: the API-key Secret (when a key is required; ``api_key`` must then be
    given), the auth proxy's ConfigMap (public LoadBalancer), the Deployment or LeaderWorkerSet, the Service.
    Apply all of them: the pods refer to the Secret and the ConfigMap.

    The pod templates carry the key's revision (:func:`~tke_playbook.specs.apikeys.key_revision`): containers read
    a Secret's env only when they start, so re-applying with a new key restarts the pods. It is an HMAC under
    ``key_salt``, a secret kept on this machine (:func:`tke_playbook.hostenv.annotation_salt`), so the YAML reveals
    nothing about the key; the same key and salt leave running pods alone. Like the key, the salt is the caller's
    (this layer draws nothing at random): a plan with a key needs both."""
    objects = [build_secret(spec, api_key)] if spec.api_key_required else []
    if spec.uses_auth_proxy:
        objects.append(build_proxy_configmap(spec))
    workload = build_workload(spec)
    if spec.api_key_required:
        revision = key_revision(api_key, _salt(key_salt))
        for template in pod_templates(workload):
            template.setdefault("metadata", {}).setdefault("annotations", {})[KEY_REVISION_ANNOTATION] = revision
    objects.append(workload)
    if spec.service_enabled:
        objects.append(build_service(spec))
    return objects
