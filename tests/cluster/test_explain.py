"""explain(): the diagnosis rules applied to what the fake cluster reports for the toolkit's pods and PVCs."""

from __future__ import annotations

import pytest

from fake_cluster import NS, add_pod, pod_oom_killed, pod_unschedulable
from tke_playbook.cluster.explain import explain, explain_pod, explain_pvc, wait_for_pvc_bound
from tke_playbook.errors import ClusterError, WaitTimeoutError
from tke_playbook.labels import Component, common_labels


def test_explain_covers_the_toolkits_pods_and_pvcs(kube, server):
    server.put("persistentvolumeclaims", {"metadata": {"name": "ai-model", "labels": common_labels(
        Component.STORAGE, "ai-model")}, "spec": {"storageClassName": "cfs"}}, NS)
    server.add_event(NS, "PersistentVolumeClaim", "ai-model", "ProvisioningFailed",
                     'storageclass.storage.k8s.io "cfs" not found')
    labels = common_labels(Component.SERVING, "vllm-bge-m3", "BAAI/bge-m3")
    add_pod(server, NS, "vllm-bge-m3-1", labels=labels)
    pod_unschedulable(server, NS, "vllm-bge-m3-1", "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    add_pod(server, NS, "unrelated", labels={"app": "x"})
    pod_unschedulable(server, NS, "unrelated", "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    found = explain(kube, NS)
    assert {(d.subject, d.code) for d in found} == {("pvc ai-model", "storage-class-missing"),
                                                    ("pod vllm-bge-m3-1", "no-free-gpu")}


def test_explain_pod_by_name_reads_the_crashed_runs_log(kube, server):
    add_pod(server, NS, "vllm-1", container="vllm")
    server.append_log(NS, "vllm-1", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    pod_oom_killed(server, NS, "vllm-1", "vllm")
    assert [d.code for d in explain_pod(kube, "vllm-1", NS)] == ["oom-killed", "cuda-oom"]


def test_explain_pvc_bound_is_quiet_and_missing_is_an_error(kube, server):
    server.put("persistentvolumeclaims", {"metadata": {"name": "ok"}, "spec": {}}, NS)
    server.set_status("persistentvolumeclaims", "ok", NS, {"phase": "Bound"})
    assert explain_pvc(kube, "ok", NS) == []
    with pytest.raises(ClusterError, match="read PVC nope"):
        explain_pvc(kube, "nope", NS)


def _pvc(server, name="ai-model"):
    server.put("persistentvolumeclaims", {"metadata": {"name": name}, "spec": {"storageClassName": "cfs"}}, NS)


def test_wait_for_pvc_bound_returns_once_bound(kube, server, script):
    _pvc(server)
    script(lambda: server.set_status("persistentvolumeclaims", "ai-model", NS, {"phase": "Bound"}))
    assert wait_for_pvc_bound(kube, "ai-model", NS, timeout=30, poll=0.05)["status"]["phase"] == "Bound"


def test_wait_for_pvc_bound_returns_at_once_for_wait_for_first_consumer(kube, server):
    _pvc(server)
    server.add_event(NS, "PersistentVolumeClaim", "ai-model", "WaitForFirstConsumer",
                     "waiting for first consumer to be created before binding", "Normal")
    assert wait_for_pvc_bound(kube, "ai-model", NS, timeout=30, poll=0.05)["metadata"]["name"] == "ai-model"


def test_wait_for_pvc_bound_fails_on_a_missing_storage_class_and_times_out_otherwise(kube, server):
    _pvc(server)
    with pytest.raises(WaitTimeoutError, match="(?s)to be Bound.*Pending, not Bound"):
        wait_for_pvc_bound(kube, "ai-model", NS, timeout=0.2, poll=0.05)
    server.add_event(NS, "PersistentVolumeClaim", "ai-model", "ProvisioningFailed",
                     'storageclass.storage.k8s.io "cfs" not found')
    with pytest.raises(ClusterError, match="(?s)will not bind.*StorageClass cfs does not exist"):
        wait_for_pvc_bound(kube, "ai-model", NS, timeout=30, poll=0.05)
