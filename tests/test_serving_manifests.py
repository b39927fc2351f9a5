"""Secret, Deployment, LeaderWorkerSet and Service: strict schema validation and the details that matter."""

from __future__ import annotations

import base64

import pytest

from tke_playbook import labels as L
from tke_playbook.errors import InvalidSpecError
from tke_playbook.serving import ServiceType, ServingSpec, seed_profile
from tke_playbook.serving_manifests import (build_deployment, build_leader_worker_set, build_secret, build_service,
                                            build_workload, selector_labels)

SPECS = [
    pytest.param(seed_profile(), id="seed"),
    pytest.param(ServingSpec(model="BAAI/bge-m3", max_model_len=8192, service_type="ClusterIP",
                             api_key_required=False), id="bge-m3-no-key"),
    pytest.param(ServingSpec(pvc_enabled=False, local_enabled=True, node_instance_types=("PNV5b.8XLARGE96",),
                             pod_annotations={"a": "b"}, labels={"team": "search"}, cpu_request="8",
                             memory_request="32Gi", service_type="LoadBalancer-internal",
                             lb_subnet_id="subnet-abc123", tolerate_gpu_taint=False, wait_for_model=False),
                 id="hostpath-pinned-internal-lb"),
]


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("spec", SPECS)
def test_every_manifest_validates_strictly(spec, k8s_valid):
    k8s_valid(build_secret(spec, "s3cret-key"))
    k8s_valid(build_deployment(spec))
    k8s_valid(build_service(spec))


def test_leader_worker_set_validates(k8s_valid):
    lws = build_leader_worker_set(ServingSpec(lws_group_size=2, tp_size=1, pp_size=2))
    k8s_valid(lws)
    template = lws["spec"]["leaderWorkerTemplate"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and template["size"] == 2
    assert template["leaderTemplate"]["spec"]["hostNetwork"] is True
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    assert "startupProbe" in leader and "startupProbe" not in worker
    assert "initContainers" not in template["workerTemplate"]["spec"]
    for container in (leader, worker):
        assert container["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
    assert build_workload(ServingSpec(lws_group_size=2, tp_size=2))["kind"] == "LeaderWorkerSet"
    assert build_service(ServingSpec(lws_group_size=2, tp_size=2))["spec"]["selector"]["role"] == "leader"


def test_the_lws_check_itself_catches_a_bad_pod_template(k8s_valid):
    lws = build_leader_worker_set(ServingSpec(lws_group_size=2, tp_size=2))
    lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["envv"] = []
    with pytest.raises(pytest.fail.Exception, match="envv"):
        k8s_valid(lws)


def test_the_strict_check_catches_unknown_fields(k8s_valid):
    deployment = build_deployment(seed_profile())
    _container(deployment)["secretKeyRefs"] = {}
    with pytest.raises(pytest.fail.Exception, match="secretKeyRefs"):
        k8s_valid(deployment)


def test_api_key_comes_from_the_secret_never_a_literal():
    spec = seed_profile()
    env = _container(build_deployment(spec))["env"]
    key = [e for e in env if e["name"] == "VLLM_API_KEY"]
    assert key == [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "vllm-e5-mistral-7b-instruct-api-key", "key": "api-key"}}}]
    assert all("value" not in e for e in key)
    secret = build_secret(spec, "s3cret-key")
    assert secret["metadata"]["name"] == spec.api_key_secret
    assert base64.b64decode(secret["data"]["api-key"]).decode() == "s3cret-key"
    assert "VLLM_API_KEY" not in str(_container(build_deployment(spec.replace(api_key_required=False,
                                                                               service_type="ClusterIP"))))


@pytest.mark.parametrize("key", ["", "   ", "two words", None])
def test_bad_api_key_is_refused(key):
    with pytest.raises(InvalidSpecError, match="API key must be a non-empty string"):
        build_secret(seed_profile(), key)


def test_deployment_matches_the_chart_where_it_should():
    deployment = build_deployment(seed_profile())
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["command"][:2] == ["bash", "-c"] and container["command"][2].startswith("vllm serve /data/model")
    assert container["resources"] == {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": 60000, "scheme": "HTTP"}
    assert startup["periodSeconds"] * startup["failureThreshold"] == 3600  # about an hour for long loads
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health" and container[probe]["failureThreshold"] == 3
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "15Gi"}
    model_mount = next(m for m in container["volumeMounts"] if m["name"] == "model")
    assert model_mount == {"name": "model", "mountPath": "/data/model", "readOnly": True,
                           "subPath": "intfloat/e5-mistral-7b-instruct"}
    assert next(v for v in pod["volumes"] if v["name"] == "model")["persistentVolumeClaim"]["claimName"] == "ai-model"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "affinity" not in pod


def test_init_container_waits_for_the_completion_marker():
    pod = build_deployment(seed_profile())["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    script = init["command"][2]
    assert "/data/model/.tke-playbook/COMPLETE" in script and "seq 1 720" in script and "exit 1" in script
    assert init["volumeMounts"][0]["subPath"] == "intfloat/e5-mistral-7b-instruct"
    assert "initContainers" not in build_deployment(seed_profile().replace(wait_for_model=False))["spec"][
        "template"]["spec"]


def test_host_path_and_node_pinning():
    spec = SPECS[2].values[0]
    deployment = build_deployment(spec)
    pod = deployment["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "model")["hostPath"] == {
        "path": "/data0/intfloat/e5-mistral-7b-instruct", "type": "Directory"}
    assert "subPath" not in next(m for m in _container(deployment)["volumeMounts"] if m["name"] == "model")
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                         "values": ["PNV5b.8XLARGE96"]}]
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert deployment["metadata"]["labels"]["team"] == "search"
    assert _container(deployment)["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "8", "memory": "32Gi"}


def test_labels_and_selectors_tie_objects_together():
    spec = seed_profile()
    deployment, service = build_deployment(spec), build_service(spec)
    assert deployment["metadata"]["labels"] == L.common_labels(L.Component.SERVING, spec.name, spec.model)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == selector_labels(spec) == service["spec"]["selector"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("service_type, kube_type, annotated", [
    (ServiceType.CLUSTER_IP, "ClusterIP", False), (ServiceType.LOAD_BALANCER, "LoadBalancer", False),
    (ServiceType.LOAD_BALANCER_INTERNAL, "LoadBalancer", True)])
def test_service_types(service_type, kube_type, annotated):
    spec = ServingSpec(service_type=service_type, lb_subnet_id="subnet-abc123", service_port=8080)
    service = build_service(spec)
    assert service["spec"]["type"] == kube_type
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 60000}]
    annotation = service["metadata"].get("annotations", {}).get(
        "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid")
    assert annotation == ("subnet-abc123" if annotated else None)


def test_bge_and_e5_do_not_collide():
    e5, bge = seed_profile(), ServingSpec(model="BAAI/bge-m3")
    names = {(m["kind"], m["metadata"]["name"]) for s in (e5, bge)
             for m in (build_deployment(s), build_service(s), build_secret(s, "k"))}
    assert len(names) == 6


def test_builders_refuse_the_wrong_shape():
    with pytest.raises(InvalidSpecError, match="build a LeaderWorkerSet"):
        build_deployment(ServingSpec(lws_group_size=2, tp_size=2))
    with pytest.raises(InvalidSpecError, match="build a Deployment instead"):
        build_leader_worker_set(seed_profile())
