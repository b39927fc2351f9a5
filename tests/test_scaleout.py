"""Scale-out objects: PDB, topology spread and the HPA validated strictly against the Kubernetes 1.28 and 1.33
schemas; the KEDA ScaledObject checked for KEDA's documented structure (no KEDA CRD schema is available offline, so
this is a structural test only); specs refused with a message saying what to do."""

from __future__ import annotations

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.manifests.scaleout import (EXTERNAL_METRIC, Autoscaler, ScaleOutSpec, build_adapter_rule, build_hpa,
                                             build_pdb, build_pod_monitor, build_scale_out, build_scaled_object,
                                             requirements, waiting_query, with_topology_spread)
from tke_playbook.manifests.serving import build_deployment, selector_labels
from tke_playbook.specs.serving import ServingChoices, resolve

BGE = "BAAI/bge-m3"


def _spec(**changes):
    return resolve(ServingChoices(model=BGE, namespace="team-a", replicas=3, **changes))


def test_pdb_is_valid_and_selects_the_deployments_pods(k8s_valid):
    spec = _spec()
    pdb = k8s_valid(build_pdb(spec))
    deployment = build_deployment(spec)
    assert pdb["kind"] == "PodDisruptionBudget" and pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["maxUnavailable"] == 1
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= template_labels.items()


def test_topology_spread_is_valid_on_the_deployment(k8s_valid):
    spec = _spec()
    deployment = with_topology_spread(build_deployment(spec), spec, zones=True)
    k8s_valid(deployment)
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in constraints] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" and c["maxSkew"] == 1 for c in constraints)
    assert all(c["labelSelector"]["matchLabels"] == selector_labels(spec) for c in constraints)
    assert "topologySpreadConstraints" not in build_deployment(spec)["spec"]["template"]["spec"]  # input untouched


def test_hpa_on_the_external_waiting_metric_is_valid(k8s_valid):
    spec = _spec()
    hpa = k8s_valid(build_hpa(spec, ScaleOutSpec(Autoscaler.HPA, min_replicas=1, max_replicas=4,
                                                 waiting_per_pod=8)))
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["name"] == EXTERNAL_METRIC
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)


def test_hpa_with_a_typo_would_fail_validation(k8s_valid):
    # the validator really is strict: the same object with a misspelt field is refused
    hpa = build_hpa(_spec(), ScaleOutSpec(Autoscaler.HPA, max_replicas=2))
    hpa["spec"]["metrics"][0]["external"]["targets"] = hpa["spec"]["metrics"][0]["external"].pop("target")
    with pytest.raises(pytest.fail.Exception, match="targets|target"):
        k8s_valid(hpa)


def test_keda_scaled_object_structure():
    spec = _spec()
    scale = ScaleOutSpec("keda", min_replicas=1, max_replicas=5, waiting_per_pod=4,
                         prometheus_url="http://prometheus.monitoring:9090")
    obj = build_scaled_object(spec, scale)
    # KEDA's documented ScaledObject (keda.sh/v1alpha1): scaleTargetRef.name, min/maxReplicaCount, triggers of
    # type prometheus whose metadata values are all strings (serverAddress, query, threshold)
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
    assert obj["metadata"]["name"] == spec.name and obj["metadata"]["namespace"] == "team-a"
    assert obj["spec"]["scaleTargetRef"] == {"name": spec.name}
    assert (obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"]) == (1, 5)
    (trigger,) = obj["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert set(trigger["metadata"]) == {"serverAddress", "query", "threshold"}
    assert all(isinstance(v, str) for v in trigger["metadata"].values())
    assert trigger["metadata"]["threshold"] == "4"
    assert "vllm:num_requests_waiting" in trigger["metadata"]["query"] and 'namespace="team-a"' in \
        trigger["metadata"]["query"]
    assert set(obj["spec"]) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                                "cooldownPeriod", "triggers", "advanced", "fallback", "idleReplicaCount"}


def test_metric_plumbing_agrees():
    spec = _spec()
    rule = build_adapter_rule()
    assert rule["name"]["as"] == EXTERNAL_METRIC and "vllm:num_requests_waiting" in rule["seriesQuery"]
    monitor = build_pod_monitor(spec)
    assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/instance"]
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "http"  # the vLLM container's port name
    hpa = build_hpa(spec, ScaleOutSpec(Autoscaler.HPA, max_replicas=2))
    selector = hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]
    assert selector == {"app_kubernetes_io_instance": spec.name}
    assert f'app_kubernetes_io_instance="{spec.name}"' in waiting_query(spec)


def test_scale_out_bundle(k8s_valid):
    single = resolve(ServingChoices(model=BGE, namespace="team-a"))
    assert build_scale_out(single) == []  # one replica, no autoscaler: nothing to add
    objs = build_scale_out(single, ScaleOutSpec(Autoscaler.HPA, max_replicas=3))
    assert [o["kind"] for o in objs] == ["PodDisruptionBudget", "HorizontalPodAutoscaler"]
    for obj in objs:
        k8s_valid(obj)
    assert [o["kind"] for o in build_scale_out(_spec())] == ["PodDisruptionBudget"]
    keda = build_scale_out(single, ScaleOutSpec("keda", max_replicas=2, prometheus_url="http://p:9090"))
    assert [o["kind"] for o in keda] == ["PodDisruptionBudget", "ScaledObject"]


def test_requirements_name_what_to_install():
    assert any("v1beta1.external.metrics.k8s.io" in r for r in requirements(ScaleOutSpec("hpa", max_replicas=2)))
    assert any("scaledobjects.keda.sh" in r for r in requirements(
        ScaleOutSpec("keda", max_replicas=2, prometheus_url="http://p:9090")))
    assert requirements(ScaleOutSpec()) == []


@pytest.mark.parametrize("kwargs,match", [
    pytest.param({"autoscaler": "vpa"}, "'none', 'hpa' or 'keda'", id="unknown-autoscaler"),
    pytest.param({"min_replicas": 0}, "min_replicas", id="zero-min"),
    pytest.param({"min_replicas": 3, "max_replicas": 2}, "max_replicas", id="max-below-min"),
    pytest.param({"autoscaler": "hpa", "max_replicas": 1}, "above min_replicas", id="autoscaler-without-room"),
    pytest.param({"autoscaler": "keda", "max_replicas": 2}, "prometheus_url", id="keda-without-prometheus"),
    pytest.param({"waiting_per_pod": 0}, "waiting_per_pod", id="zero-target"),
])
def test_bad_scale_out_specs_are_refused(kwargs, match):
    with pytest.raises(InvalidSpecError, match=match):
        ScaleOutSpec(**kwargs)


def test_multi_node_cannot_be_autoscaled():
    spec = resolve(ServingChoices(model="intfloat/e5-mistral-7b-instruct", lws_group_size=2, tp_size=2, namespace="team-a"))
    with pytest.raises(InvalidSpecError, match="LeaderWorkerSet"):
        build_hpa(spec, ScaleOutSpec("hpa", max_replicas=2))


def test_build_plan_adds_scale_out_for_several_replicas(k8s_valid):
    from tke_playbook.manifests.plan import build_plan

    spec = _spec(gpu="L20")
    plan = build_plan(None, serving=spec, api_key="scaleout-test-key-0123", key_salt=bytes(32),
                      scale_out=ScaleOutSpec("hpa", min_replicas=2, max_replicas=6))
    kinds = [m["kind"] for m in plan]
    assert kinds[-2:] == ["PodDisruptionBudget", "HorizontalPodAutoscaler"]
    deployment = next(m for m in plan if m["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns the replica count: a re-apply must not reset it
    assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["topologyKey"] == \
        "kubernetes.io/hostname"
    for manifest in plan:
        if manifest["kind"] != "Secret":
            k8s_valid(manifest)
    # three replicas, no autoscaler: PDB and spread only
    fixed = build_plan(None, serving=spec, api_key="scaleout-test-key-0123", key_salt=bytes(32))
    assert [m["kind"] for m in fixed][-1] == "PodDisruptionBudget"
    assert next(m for m in fixed if m["kind"] == "Deployment")["spec"]["replicas"] == 3
    single = build_plan(None, serving=resolve(ServingChoices(model=BGE, namespace="team-a", gpu="L20")),
                        api_key="scaleout-test-key-0123", key_salt=bytes(32))
    assert "PodDisruptionBudget" not in [m["kind"] for m in single]
