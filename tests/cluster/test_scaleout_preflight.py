"""Autoscaler preflight against the fake API server: the external metrics APIService (HPA) and the KEDA CRD."""

from __future__ import annotations

from tke_playbook.kube.scaleout import check_autoscaler
from tke_playbook.manifests.scaleout import EXTERNAL_METRICS_APISERVICE, KEDA_CRD, ScaleOutSpec

HPA = ScaleOutSpec("hpa", max_replicas=3)
KEDA = ScaleOutSpec("keda", max_replicas=3, prometheus_url="http://prometheus.monitoring:9090")


def _apiservice(server, available="True"):
    server.put("apiservices", {"metadata": {"name": EXTERNAL_METRICS_APISERVICE}, "spec": {
        "group": "external.metrics.k8s.io", "version": "v1beta1", "groupPriorityMinimum": 100, "versionPriority": 100,
        "service": {"namespace": "monitoring", "name": "prometheus-adapter"}}})
    server.set_status("apiservices", EXTERNAL_METRICS_APISERVICE, "", {"conditions": [
        {"type": "Available", "status": available, "reason": "Passed" if available == "True" else
         "FailedDiscoveryCheck", "message": "all checks passed" if available == "True" else "no response"}]})


def test_hpa_without_external_metrics_api_fails_with_what_to_install(kube):
    report = check_autoscaler(kube, HPA)
    (row,) = report.rows
    assert not report.ok and row.ok is False
    assert EXTERNAL_METRICS_APISERVICE in row.detail and "not registered" in row.detail
    assert "prometheus-adapter" in row.action and "build_adapter_rule" in row.action


def test_hpa_with_an_available_adapter_passes(kube, server):
    _apiservice(server)
    report = check_autoscaler(kube, HPA)
    assert report.ok, str(report)
    assert "monitoring/prometheus-adapter" in report.rows[0].detail


def test_hpa_with_an_unavailable_adapter_fails(kube, server):
    _apiservice(server, available="False")
    (row,) = check_autoscaler(kube, HPA).rows
    assert row.ok is False and "FailedDiscoveryCheck" in row.detail and row.action


def test_keda_missing_then_installed(kube, server):
    (row,) = check_autoscaler(kube, KEDA).rows
    assert row.ok is False and KEDA_CRD in row.detail and "kedacore" in row.action
    server.put("customresourcedefinitions", {"metadata": {"name": KEDA_CRD}, "spec": {
        "group": "keda.sh", "names": {"kind": "ScaledObject", "plural": "scaledobjects"}, "scope": "Namespaced",
        "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}})
    assert check_autoscaler(kube, KEDA).ok


def test_no_autoscaler_needs_nothing(kube, server):
    report = check_autoscaler(kube, "none")
    assert report.rows == () and report.ok
    assert not any("apiservices" in path for _, path, _ in server.requests)


def test_notebook_checks_on_each_target(kube, server, tmp_path):
    from tke_playbook.playbook import ClusterPlaybook, LocalPlaybook

    cluster = ClusterPlaybook(root=tmp_path, kube=kube).serving.autoscaler_checks(HPA)
    assert list(cluster.columns) == ["check", "result", "detail", "what to do"]
    assert cluster.iloc[0]["result"] == "FAIL" and "prometheus-adapter" in cluster.iloc[0]["what to do"]
    local = LocalPlaybook(root=tmp_path).serving
    keda = local.autoscaler_checks(KEDA).iloc[0]
    assert keda["result"] == "skip" and KEDA_CRD in keda["detail"]
    assert local.autoscaler_checks(ScaleOutSpec()).iloc[0]["result"] == "skip"
