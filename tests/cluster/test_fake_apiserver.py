"""The fake API server honours what the cluster layer relies on, driven through the real kubernetes client."""

from __future__ import annotations

import json
import threading

import pytest
from fake_cluster import NS
from kubernetes import watch
from kubernetes.client.exceptions import ApiException


def _cm(name, labels=None, data=None):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data or {"k": "v"}}


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_create_get_and_conflict_bodies(kube):
    created = kube.core.create_namespaced_config_map(NS, _cm("one"))
    assert created.metadata.resource_version and created.metadata.uid
    with pytest.raises(ApiException) as exc:
        kube.core.create_namespaced_config_map(NS, _cm("one"))
    assert exc.value.status == 409 and _status(exc.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as exc:
        kube.core.read_namespaced_config_map("missing", NS)
    assert exc.value.status == 404 and _status(exc.value)["kind"] == "Status"


@pytest.mark.parametrize("name", [pytest.param("", id="name-missing"), pytest.param("Bad_Name", id="name-invalid")])
def test_invalid_names_get_422(kube, name):
    with pytest.raises(ApiException) as exc:
        kube.core.create_namespaced_config_map(NS, _cm(name))
    assert exc.value.status == 422 and _status(exc.value)["reason"] == "Invalid"


def test_replace_with_stale_resource_version_conflicts(kube):
    first = kube.to_dict(kube.core.create_namespaced_config_map(NS, _cm("rv")))
    kube.core.patch_namespaced_config_map("rv", NS, {"data": {"k": "changed"}})
    with pytest.raises(ApiException) as exc:
        kube.core.replace_namespaced_config_map("rv", NS, first)
    assert exc.value.status == 409 and _status(exc.value)["reason"] == "Conflict"
    fresh = kube.to_dict(kube.core.read_namespaced_config_map("rv", NS))
    fresh["data"] = {"k": "replaced"}
    assert kube.core.replace_namespaced_config_map("rv", NS, fresh).data == {"k": "replaced"}
    assert int(fresh["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_list_filters_by_label_selector(kube):
    kube.core.create_namespaced_config_map(NS, _cm("a", {"app": "x", "tier": "1"}))
    kube.core.create_namespaced_config_map(NS, _cm("b", {"app": "y"}))
    names = lambda sel: [c.metadata.name for c in kube.core.list_namespaced_config_map(NS, label_selector=sel).items]
    assert names("app=x") == ["a"]
    assert names("app!=x") == ["b"]
    assert names("tier") == ["a"]
    assert names("!tier") == ["b"]


def test_watch_streams_changes_after_resource_version(kube, server):
    listed = kube.core.list_namespaced_config_map(NS)
    rv = listed.metadata.resource_version
    timer = threading.Timer(0.2, lambda: server.put("configmaps", _cm("late"), NS))
    timer.start()
    events = []
    for event in watch.Watch().stream(kube.core.list_namespaced_config_map, NS, resource_version=rv,
                                      timeout_seconds=5):
        events.append((event["type"], event["object"].metadata.name))
        break
    timer.join()
    assert events == [("ADDED", "late")]


def test_watch_ends_at_timeout_seconds(kube):
    rv = kube.core.list_namespaced_config_map(NS).metadata.resource_version
    assert list(watch.Watch().stream(kube.core.list_namespaced_config_map, NS, resource_version=rv,
                                     timeout_seconds=1)) == []


def test_pod_logs_honour_tail_lines_and_previous(kube, server):
    from fake_cluster import add_pod

    add_pod(server, NS, "p")
    server.append_log(NS, "p", "one", "two", "three")
    server.append_log(NS, "p", "crashed run", previous=True)
    assert kube.core.read_namespaced_pod_log("p", NS, tail_lines=2) == "two\nthree\n"
    assert kube.core.read_namespaced_pod_log("p", NS, previous=True) == "crashed run\n"
    with pytest.raises(ApiException) as exc:
        kube.core.read_namespaced_pod_log("nope", NS)
    assert exc.value.status == 404


def test_delete_cascades_to_owned_objects_unless_orphaned(kube, server):
    from fake_cluster import job_pods

    for name in ("j1", "j2"):
        server.put("jobs", {"metadata": {"name": name}, "spec": {"completions": 1, "template": {}}}, NS)
        job_pods(server, NS, name, [0])
    kube.batch.delete_namespaced_job("j1", NS, propagation_policy="Foreground")
    kube.batch.delete_namespaced_job("j2", NS, propagation_policy="Orphan")
    assert not server.exists("pods", "j1-0-abcde", NS)
    assert server.exists("pods", "j2-0-abcde", NS)
    assert ("jobs", NS, "j1", "Foreground") in server.store.deletions


def test_leader_worker_set_api_is_served_only_with_its_crd(kube, server):
    with pytest.raises(ApiException) as exc:
        kube.custom.list_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", NS, "leaderworkersets")
    assert exc.value.status == 404
    server.install_lws()
    assert kube.custom.list_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", NS,
                                                     "leaderworkersets")["items"] == []
