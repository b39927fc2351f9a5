"""explain_pvc() and wait_for_pvc_bound(): the PVC diagnosis rules applied to what the fake cluster reports."""

from __future__ import annotations

import pytest
from fake_cluster import NS

from tke_playbook.errors import ClusterError, WaitTimeoutError
from tke_playbook.kube.explain import explain_pvc, wait_for_pvc_bound


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
