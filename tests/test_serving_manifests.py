"""Secret, Deployment, LeaderWorkerSet and Service: strict schema validation and the details that matter."""

from __future__ import annotations

import base64

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.manifests.serving import (build_deployment, build_leader_worker_set, build_proxy_configmap,
                                            build_secret, build_service, build_serving_objects, build_workload,
                                            selector_labels)
from tke_playbook.specs import labels as L
from tke_playbook.specs.serving import ServiceType, ServingChoices, resolve, seed_profile

SALT = bytes(range(32))  # the annotation salt, normally random and kept in the key store

SPECS = [
    pytest.param(seed_profile(), id="seed"),
    pytest.param(resolve(ServingChoices(model="BAAI/bge-m3", max_model_len=8192, service_type="ClusterIP",
                             api_key_required=False)), id="bge-m3-no-key"),
    pytest.param(resolve(ServingChoices(pvc_enabled=False, local_enabled=True, node_instance_types=("PNV5b.8XLARGE96",),
                             pod_annotations={"a": "b"}, labels={"team": "search"}, cpu_request="8",
                             memory_request="32Gi", service_type="LoadBalancer-internal",
                             lb_subnet_id="subnet-abc123", tolerate_gpu_taint=False, wait_for_model=False)),
                 id="hostpath-pinned-internal-lb"),
]


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("spec", SPECS)
def test_every_manifest_validates_strictly(spec, k8s_valid):
    k8s_valid(build_secret(spec, "s3cret-key-0123456789"))
    k8s_valid(build_deployment(spec))
    k8s_valid(build_service(spec))


def test_leader_worker_set_validates(k8s_valid):
    lws = build_leader_worker_set(resolve(ServingChoices(lws_group_size=2, tp_size=1, pp_size=2)))
    k8s_valid(lws)
    template = lws["spec"]["leaderWorkerTemplate"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and template["size"] == 2
    assert template["leaderTemplate"]["spec"]["hostNetwork"] is True
    leader = template["leaderTemplate"]["spec"]["containers"][0]
    worker = template["workerTemplate"]["spec"]["containers"][0]
    assert "startupProbe" in leader and "startupProbe" not in worker
    for container in (leader, worker):
        assert container["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
    assert build_workload(resolve(ServingChoices(lws_group_size=2, tp_size=2)))["kind"] == "LeaderWorkerSet"
    assert build_service(resolve(ServingChoices(lws_group_size=2, tp_size=2)))["spec"]["selector"]["role"] == "leader"


def test_the_lws_check_itself_catches_a_bad_pod_template(k8s_valid):
    lws = build_leader_worker_set(resolve(ServingChoices(lws_group_size=2, tp_size=2)))
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
    secret = build_secret(spec, "s3cret-key-0123456789")
    assert secret["metadata"]["name"] == spec.api_key_secret
    assert base64.b64decode(secret["data"]["api-key"]).decode() == "s3cret-key-0123456789"
    assert "VLLM_API_KEY" not in str(_container(build_deployment(spec.replace(api_key_required=False,
                                                                               service_type="ClusterIP"))))


@pytest.mark.parametrize("key", ["", "   ", "two words-0123456789", None])
def test_bad_api_key_is_refused(key):
    with pytest.raises(InvalidSpecError, match="The API key (is empty|contains whitespace|is a NoneType)"):
        build_secret(seed_profile(), key)


def test_deployment_matches_the_chart_where_it_should():
    deployment = build_deployment(seed_profile())
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    assert container["command"][:2] == ["bash", "-c"] and container["command"][2].startswith("vllm serve /data/model")
    assert container["resources"] == {"requests": {"nvidia.com/gpu": "1", "cpu": "4", "memory": "22Gi"},
                                      "limits": {"nvidia.com/gpu": "1"}}
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
    assert next(v for v in pod["volumes"] if v["name"] == "model")["persistentVolumeClaim"] == {"claimName": "ai-model"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "affinity" not in pod


def test_init_container_waits_for_the_completion_marker():
    pod = build_deployment(seed_profile())["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    # the same completeness rule as everywhere (modelfolder.py run by the image's python3), on the folder's parent
    assert init["command"][:2] == ["python3", "-c"] and "wait" in init["command"][3:]
    assert init["command"][init["command"].index("wait") + 1] == "/tke-models/e5-mistral-7b-instruct"
    assert init["volumeMounts"] == [{"name": "model", "mountPath": "/tke-models", "readOnly": True,
                                     "subPath": "intfloat"}]
    assert "initContainers" not in build_deployment(seed_profile().replace(wait_for_model=False))["spec"][
        "template"]["spec"]


def test_host_path_and_node_pinning():
    spec = SPECS[2].values[0]
    deployment = build_deployment(spec)
    pod = deployment["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "model")["hostPath"] == {
        "path": "/data0/intfloat", "type": "Directory"}  # the parent, so the init container sees the state folder
    assert next(m for m in _container(deployment)["volumeMounts"] if m["name"] == "model")["subPath"] == \
        "e5-mistral-7b-instruct"
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
    spec = resolve(ServingChoices(service_type=service_type, lb_subnet_id="subnet-abc123", service_port=8080))
    service = build_service(spec)
    assert service["spec"]["type"] == kube_type
    target = 60080 if service_type is ServiceType.LOAD_BALANCER else 60000  # a public LB reaches the proxy only
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": target}]
    annotation = service["metadata"].get("annotations", {}).get(
        "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid")
    assert annotation == ("subnet-abc123" if annotated else None)


def test_bge_and_e5_do_not_collide():
    e5, bge = seed_profile(), resolve(ServingChoices(model="BAAI/bge-m3"))
    names = {(m["kind"], m["metadata"]["name"]) for s in (e5, bge)
             for m in (build_deployment(s), build_service(s), build_secret(s, "serving-test-key-0123"))}
    assert len(names) == 6


def test_builders_refuse_the_wrong_shape():
    with pytest.raises(InvalidSpecError, match="build a LeaderWorkerSet"):
        build_deployment(resolve(ServingChoices(lws_group_size=2, tp_size=2)))
    with pytest.raises(InvalidSpecError, match="build a Deployment instead"):
        build_leader_worker_set(seed_profile())


def _pods(manifest: dict) -> list[dict]:
    if manifest["kind"] == "LeaderWorkerSet":
        lwt = manifest["spec"]["leaderWorkerTemplate"]
        return [lwt["leaderTemplate"]["spec"], lwt["workerTemplate"]["spec"]]
    return [manifest["spec"]["template"]["spec"]]


@pytest.mark.parametrize("spec, strategy", [
    pytest.param(seed_profile(), {"type": "Recreate"}, id="one-replica-recreate"),
    pytest.param(seed_profile().replace(replicas=3), {"type": "RollingUpdate", "rollingUpdate": {
        "maxSurge": 0, "maxUnavailable": 1}}, id="replicas-no-surge")])
def test_a_gpu_deployment_never_surges(spec, strategy):
    # facts.md 8: the default rolling update (surge 1, unavailable 0) never completes when the new pod needs the GPU
    assert build_deployment(spec)["spec"]["strategy"] == strategy


def test_lws_workers_wait_for_the_model_too():
    lws = build_leader_worker_set(resolve(ServingChoices(lws_group_size=2, tp_size=2)))
    leader, worker = _pods(lws)
    assert [c["name"] for c in worker["initContainers"]] == [c["name"] for c in leader["initContainers"]]
    assert worker["initContainers"] == leader["initContainers"]


@pytest.mark.parametrize("spec", [seed_profile(), resolve(ServingChoices(lws_group_size=2, tp_size=2))], ids=["deploy", "lws"])
def test_read_only_on_the_mounts_not_on_the_volume(spec):
    # facts.md 8: a read-only CFS volume cannot create a missing subPath (CreateContainerConfigError)
    for pod in _pods(build_workload(spec)):
        model = next(v for v in pod["volumes"] if v["name"] == "model")
        assert "readOnly" not in model["persistentVolumeClaim"]
        for container in (*pod["initContainers"], *pod["containers"]):
            for mount in container["volumeMounts"]:
                if mount["name"] == "model":
                    assert mount["readOnly"] is True


@pytest.mark.parametrize("spec", [seed_profile(), resolve(ServingChoices(lws_group_size=2, tp_size=2, cpu_request="16")),
                                  resolve(ServingChoices(model="BAAI/bge-m3", gpu_count=2, tp_size=2))],
                         ids=["seed", "lws", "bge-2gpu"])
def test_every_container_asks_for_cpu_and_memory(spec):
    for pod in _pods(build_workload(spec)):
        for container in (*pod.get("initContainers", ()), *pod["containers"]):
            requests = container["resources"]["requests"]
            assert {"cpu", "memory"} <= requests.keys(), container["name"]
    requests = _pods(build_workload(spec))[0]["containers"][0]["resources"]["requests"]
    assert requests["cpu"] == spec.cpu_request


def test_default_requests_follow_the_model_and_gpus():
    assert seed_profile().memory_request == "22Gi"  # 14.2 GB of weights → 14 GiB + 8
    assert resolve(ServingChoices(model="BAAI/bge-m3")).memory_request == "11Gi"
    assert resolve(ServingChoices(gpu_count=2, tp_size=2)).cpu_request == "8"
    assert seed_profile().replace(model="BAAI/bge-m3").memory_request == "11Gi"
    assert seed_profile().replace(gpu_count=2, tp_size=2).cpu_request == "8"


def test_single_node_pods_are_hardened():
    pod = _pods(build_deployment(seed_profile()))[0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    for container in (*pod["initContainers"], *pod["containers"]):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
        assert not context.get("privileged")
    proxy = next(c for c in pod["containers"] if c["name"] == "auth-proxy")
    assert proxy["securityContext"]["runAsNonRoot"] is True and proxy["securityContext"]["readOnlyRootFilesystem"]


def test_lws_keeps_privilege_only_for_ray():
    for pod in _pods(build_leader_worker_set(resolve(ServingChoices(lws_group_size=2, tp_size=2)))):
        assert pod["automountServiceAccountToken"] is False
        assert pod["hostNetwork"] is True and pod["containers"][0]["securityContext"] == {"privileged": True}
        assert pod["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def test_public_load_balancer_goes_through_the_auth_proxy(k8s_valid):
    spec = seed_profile().replace(lb_source_ranges=("203.0.113.0/24", "2001:db8::/32"))
    deployment, service = build_deployment(spec), build_service(spec)
    pod = _pods(deployment)[0]
    proxy = next(c for c in pod["containers"] if c["name"] == "auth-proxy")
    assert proxy["image"] == "nginx:1.28.0-alpine"
    assert proxy["env"] == [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": spec.api_key_secret, "key": "api-key"}}}]
    port = proxy["ports"][0]["containerPort"]
    vllm_ports = {p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] == port and port not in vllm_ports
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24", "2001:db8::/32"]
    volume = next(v for v in pod["volumes"] if v["name"] == "proxy-config")
    configmap = build_proxy_configmap(spec)
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert "${VLLM_API_KEY}" in configmap["data"]["nginx.conf.template"]
    for manifest in (deployment, service, configmap):
        k8s_valid(manifest)


@pytest.mark.parametrize("service_type", ["ClusterIP", "LoadBalancer-internal"])
def test_no_proxy_unless_public(service_type):
    spec = seed_profile().replace(service_type=service_type, lb_subnet_id="subnet-abc123")
    assert [c["name"] for c in _pods(build_deployment(spec))[0]["containers"]] == ["vllm"]
    assert build_service(spec)["spec"]["ports"][0]["targetPort"] == 60000


def test_lws_leader_carries_the_proxy():
    spec = seed_profile().replace(lws_group_size=2, tp_size=2)
    lws = build_leader_worker_set(spec)
    leader, worker = _pods(lws)
    assert [c["name"] for c in leader["containers"]] == ["leader", "auth-proxy"]
    assert [c["name"] for c in worker["containers"]] == ["worker"]
    assert build_service(spec)["spec"]["ports"][0]["targetPort"] == 60080


@pytest.mark.parametrize("ranges, message", [
    pytest.param(("10.0.0.1/8",), "host bits set", id="host-bits"),
    pytest.param(("not-a-cidr",), "is not a CIDR block", id="garbage"),
    pytest.param(("300.0.0.0/8",), "is not a CIDR block", id="octet")])
def test_bad_source_ranges_are_refused(ranges, message):
    with pytest.raises(InvalidSpecError, match=message):
        seed_profile().replace(lb_source_ranges=ranges)


def test_source_ranges_need_a_load_balancer():
    with pytest.raises(InvalidSpecError, match="not 'ClusterIP'"):
        resolve(ServingChoices(service_type="ClusterIP", lb_source_ranges=("10.0.0.0/8",)))


@pytest.mark.parametrize("key", ['quote"key', "dollar$key", "back\\slash", "semi;colon"])
def test_api_keys_the_proxy_cannot_compare_are_refused(key):
    with pytest.raises(InvalidSpecError, match="bearer token"):
        build_secret(seed_profile(), key)


def test_manifests_have_no_shared_objects():
    import yaml

    from tke_playbook.manifests.yamldoc import plan_to_yaml

    assert "&id" not in plan_to_yaml([build_deployment(seed_profile())])
    assert "&id" not in yaml.safe_dump(build_deployment(seed_profile()))


def _pod_templates(workload: dict) -> list[dict]:
    if workload["kind"] == "LeaderWorkerSet":
        lwt = workload["spec"]["leaderWorkerTemplate"]
        return [lwt["leaderTemplate"], lwt["workerTemplate"]]
    return [workload["spec"]["template"]]


@pytest.mark.parametrize("spec", [seed_profile(), seed_profile().replace(lws_group_size=2, tp_size=2),
                                  resolve(ServingChoices(service_type="ClusterIP"))], ids=["deploy-proxy", "lws-proxy", "clusterip"])
def test_a_new_key_restarts_the_pods_and_the_same_key_does_not(spec, k8s_valid, lws_crd):
    # env from a Secret is read when a container starts: re-applying a plan with a new key (render makes a random
    # one when $TKE_PLAYBOOK_API_KEY is unset) must change the pod template, or vLLM and the proxy keep the old key
    # while the Secret holds the new one
    def templates(key):
        objects = build_serving_objects(spec, key, SALT)
        workload = next(o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet"))
        if workload["kind"] == "LeaderWorkerSet":
            assert [e.message for e in lws_crd.iter_errors(workload)] == []
        k8s_valid(workload)
        return _pod_templates(workload)

    first, again = templates("key-one-0123456789"), templates("key-one-0123456789")
    other = templates("key-two-0123456789")
    assert first == again
    for old, new in zip(first, other):
        assert old != new
        assert "key-one" not in str(old) and "key-two" not in str(new)
