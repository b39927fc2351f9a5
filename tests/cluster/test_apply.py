"""Idempotent server-side apply and cascading delete over any manifest kind."""

from __future__ import annotations

import pytest
from fake_cluster import NS

from tke_playbook.errors import ApplyError, ClusterError, InvalidSpecError, UnknownNameError
from tke_playbook.kube import Cascade, ObjectRef, apply_all, delete, get, list_objects
from tke_playbook.kube.apply import apply
from tke_playbook.kube.client import Kube
from tke_playbook.specs.labels import Component, common_labels, selector, selector_matching


def _cm(name, data="1", namespace=NS):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": common_labels(Component.DOWNLOAD, name, "BAAI/bge-m3")}, "data": {"x": data}}


def _job(name):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS, "labels":
            common_labels(Component.DOWNLOAD, name)}, "spec": {"completions": 2, "completionMode": "Indexed",
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}


def test_apply_creates_then_updates_in_place(kube, server):
    first = apply(kube, _cm("cfg", "1"))
    second = apply(kube, _cm("cfg", "2"))
    assert second["data"] == {"x": "2"}
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    method, path, query = server.requests[-1]
    assert (method, query["fieldManager"], query["force"]) == ("PATCH", "tke-playbook", "true")


def test_apply_is_idempotent_for_every_kind_the_toolkit_uses(kube, server):
    server.install_lws()
    manifests = [
        _cm("cfg"), _job("download-bge-m3"),
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "cfs"},
         "provisioner": "com.tencent.cloud.csi.cfs"},
        {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
         "metadata": {"name": "vllm-e5", "namespace": NS}, "spec": {"replicas": 1}},
    ]
    once = apply_all(kube, manifests)
    twice = apply_all(kube, manifests)
    assert [o["metadata"]["uid"] for o in once] == [o["metadata"]["uid"] for o in twice]
    assert get(kube, ObjectRef("storage.k8s.io/v1", "StorageClass", "cfs"))["provisioner"].endswith(".cfs")


def test_apply_fills_in_the_namespace(kube):
    manifest = _cm("no-ns")
    del manifest["metadata"]["namespace"]
    assert apply(kube, manifest, namespace=NS)["metadata"]["namespace"] == NS


def test_refused_manifest_says_what_and_what_to_do(kube):
    with pytest.raises(ApplyError, match="ConfigMap 'Bad_Name'.*Invalid.*idempotent") as exc:
        apply(kube, _cm("Bad_Name"))
    assert exc.value.cause.status == 422


def test_changing_an_immutable_field_says_to_delete_first(kube):
    apply(kube, _job("download-bge-m3"))
    changed = _job("download-bge-m3")
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:1.37"
    with pytest.raises(ApplyError, match="field is immutable.*delete it first"):
        apply(kube, changed)
    assert apply(kube, _job("download-bge-m3"))["spec"]["completions"] == 2  # unchanged: still idempotent


def test_apply_all_reports_what_was_applied_before_a_failure(kube):
    with pytest.raises(ApplyError, match=r"Applied before the failure \(1 of 3\): ConfigMap 'good'"):
        apply_all(kube, [_cm("good"), _cm("Bad_Name"), _cm("never")])
    assert get(kube, _cm("never")) is None


def test_apply_without_lws_crd_says_how_to_install_it(kube):
    lws = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
           "metadata": {"name": "vllm-e5", "namespace": NS}, "spec": {}}
    with pytest.raises(ApplyError, match="no LeaderWorkerSet CRD.*lwsGroupSize to 1"):
        apply(kube, lws)


@pytest.mark.parametrize("manifest, error", [
    pytest.param({"kind": "ConfigMap", "metadata": {"name": "x"}}, InvalidSpecError, id="no-api-version"),
    pytest.param("not a dict", InvalidSpecError, id="not-a-dict"),
    pytest.param({"apiVersion": "v1", "kind": "ConfigMapp", "metadata": {"name": "x"}}, UnknownNameError,
                 id="unknown-kind-suggests"),
])
def test_bad_manifests_are_refused_before_any_call(kube, server, manifest, error):
    before = len(server.requests)
    with pytest.raises(error):
        apply(kube, manifest)
    assert len(server.requests) == before


def test_delete_cascades_and_tolerates_missing_objects(kube, server):
    from fake_cluster import job_pods

    apply(kube, _job("download-x"))
    job_pods(server, NS, "download-x", [0, 1])
    assert delete(kube, _job("download-x"), cascade="Background") is True
    assert ("jobs", NS, "download-x", "Background") in server.store.deletions
    assert not server.exists("pods", "download-x-0-abcde", NS)
    assert delete(kube, _job("download-x")) is False
    with pytest.raises(UnknownNameError, match="Did you mean 'Foreground'"):
        delete(kube, _job("download-x"), cascade="Forground")
    assert Cascade("Orphan") is Cascade.ORPHAN


def test_list_objects_by_label_and_missing_api(kube):
    apply(kube, _cm("a"))
    apply(kube, _job("download-a"))
    found = list_objects(kube, "v1", "ConfigMap", NS, selector(Component.DOWNLOAD))
    assert [(o["kind"], o["metadata"]["name"]) for o in found] == [("ConfigMap", "a")]
    assert list_objects(kube, "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", NS) == []


def test_one_selector_string_for_the_toolkits_labels_and_for_match_labels(kube):
    assert selector() == "app.kubernetes.io/managed-by=tke-playbook"
    assert selector(Component.DOWNLOAD, "download-a", model="BAAI/bge-m3") == (
        "app.kubernetes.io/managed-by=tke-playbook,app.kubernetes.io/component=download,"
        "app.kubernetes.io/instance=download-a,tke-playbook.io/model=bge-m3")
    assert selector_matching({"b": "2", "a": "1"}) == "a=1,b=2" and selector_matching(None) == ""
    apply(kube, _cm("a"))
    apply(kube, _cm("b"))
    only_a = list_objects(kube, "v1", "ConfigMap", NS, selector_matching(common_labels(Component.DOWNLOAD, "a")))
    assert [o["metadata"]["name"] for o in only_a] == ["a"]


def test_unreachable_server_is_a_cluster_error_in_plain_words():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    kube = Kube.from_host(f"http://127.0.0.1:{port}")
    with pytest.raises(ClusterError, match="Cannot reach the Kubernetes API at http://127.0.0.1"):
        apply(kube, _cm("x"))
