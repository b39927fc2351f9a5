"""Teardown finds what the toolkit created by its labels and keeps the PVC unless asked."""

from __future__ import annotations

import pytest
from fake_cluster import NS, job_pods

from tke_playbook.errors import WaitTimeoutError
from tke_playbook.kube import apply_all, find_created
from tke_playbook.kube.teardown import teardown
from tke_playbook.specs.labels import Component, common_labels


def _obj(api_version, kind, name, component, model=None, namespaced=True, **body):
    meta = {"name": name, "labels": common_labels(component, name, model)}
    if namespaced:
        meta["namespace"] = NS
    return dict({"apiVersion": api_version, "kind": kind, "metadata": meta}, **body)


def _toolkit_objects():
    template = {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
    return [
        _obj("storage.k8s.io/v1", "StorageClass", "cfs-ai", Component.STORAGE, namespaced=False,
             provisioner="com.tencent.cloud.csi.cfs"),
        _obj("v1", "PersistentVolumeClaim", "ai-model", Component.STORAGE, spec={"storageClassName": "cfs-ai"}),
        _obj("batch/v1", "Job", "download-bge-m3", Component.DOWNLOAD, "BAAI/bge-m3", spec=dict(template)),
        _obj("v1", "ConfigMap", "download-bge-m3-worker", Component.DOWNLOAD, "BAAI/bge-m3", data={}),
        _obj("apps/v1", "Deployment", "vllm-bge-m3", Component.SERVING, "BAAI/bge-m3", spec=dict(template)),
        _obj("v1", "Service", "vllm-bge-m3", Component.SERVING, "BAAI/bge-m3", spec={"ports": [{"port": 60000}]}),
        _obj("v1", "Secret", "vllm-bge-m3-api-key", Component.SERVING, "BAAI/bge-m3", data={}),
        _obj("apps/v1", "Deployment", "vllm-e5-mistral-7b-instruct", Component.SERVING,
             "intfloat/e5-mistral-7b-instruct", spec=dict(template)),
    ]


def _foreign():
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "someone-elses", "namespace": NS,
                                                                   "labels": {"app": "other"}}, "data": {}}


def test_teardown_deletes_toolkit_objects_and_keeps_the_pvc(kube, server):
    apply_all(kube, _toolkit_objects() + [_foreign()])
    job_pods(server, NS, "download-bge-m3", [0])
    deleted = teardown(kube, NS)
    names = [(r.kind, r.name) for r in deleted]
    assert names[:3] == [("Deployment", "vllm-bge-m3"), ("Deployment", "vllm-e5-mistral-7b-instruct"),
                         ("Service", "vllm-bge-m3")]
    assert ("Job", "download-bge-m3") in names and ("Secret", "vllm-bge-m3-api-key") in names
    assert server.exists("persistentvolumeclaims", "ai-model", NS)
    assert server.exists("storageclasses", "cfs-ai")
    assert server.exists("configmaps", "someone-elses", NS)
    assert not server.exists("pods", "download-bge-m3-0-abcde", NS)  # went with its Job
    assert all(policy == "Foreground" for *_, policy in server.store.deletions)


def test_teardown_of_one_model_leaves_the_other(kube, server):
    apply_all(kube, _toolkit_objects())
    deleted = teardown(kube, NS, model="intfloat/e5-mistral-7b-instruct")
    assert [(r.kind, r.name) for r in deleted] == [("Deployment", "vllm-e5-mistral-7b-instruct")]
    assert server.exists("deployments", "vllm-bge-m3", NS)


def test_full_teardown_removes_the_pvc_and_storage_class_when_asked(kube, server):
    apply_all(kube, _toolkit_objects())
    planned = find_created(kube, NS, keep_pvc=False)
    deleted = teardown(kube, NS, keep_pvc=False)
    assert deleted == planned
    assert [(r.kind, r.name) for r in deleted][-2:] == [("PersistentVolumeClaim", "ai-model"),
                                                       ("StorageClass", "cfs-ai")]
    assert not server.exists("persistentvolumeclaims", "ai-model", NS)
    assert teardown(kube, NS, keep_pvc=False) == []  # nothing left: a second run is a no-op


def test_teardown_includes_leader_worker_sets_when_the_crd_exists(kube, server):
    server.install_lws()
    apply_all(kube, [_obj("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "vllm-e5", Component.SERVING,
                          "intfloat/e5-mistral-7b-instruct", spec={"replicas": 1})])
    assert [(r.kind, r.name) for r in teardown(kube, NS)] == [("LeaderWorkerSet", "vllm-e5")]


def test_teardown_can_wait_until_objects_are_gone(kube, server, monkeypatch):
    apply_all(kube, _toolkit_objects()[:3])
    assert [r.name for r in teardown(kube, NS, wait=5, poll=0.05)] == ["download-bge-m3"]
    # an object held by a finalizer never goes: the wait ends with what is left
    apply_all(kube, _toolkit_objects()[2:3])
    monkeypatch.setattr(server.store, "delete", lambda *a, **k: {"kind": "Status", "status": "Success"})
    with pytest.raises(WaitTimeoutError, match="still exist: Job 'download-bge-m3'"):
        teardown(kube, NS, wait=0.2, poll=0.05)
