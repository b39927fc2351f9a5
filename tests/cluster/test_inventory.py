"""Nodes with instance type, GPU model/count and allocatable; PVCs, StorageClasses, events and logs."""

from __future__ import annotations

from fake_cluster import NS, add_node, add_pod, pod_crashed

from tke_playbook.kube import (cfs_storage_classes, list_nodes, list_pvcs, list_storage_classes, nodes_frame,
                               pod_events, pod_logs)
from tke_playbook.kube.inventory import current_pods


def test_list_nodes_describes_gpu_and_cpu_nodes(kube, server):
    add_node(server, "gpu-1", instance_type="PNV5b.8XLARGE96", gpus=1, product="NVIDIA-L20",
             extra_labels={"topology.kubernetes.io/zone": "ap-guangzhou-6"})
    add_node(server, "cpu-1", instance_type="SA5.LARGE8", gpus=0, cpu="3920m", memory="6Gi", ready=False)
    nodes = {n.name: n for n in list_nodes(kube)}
    gpu, cpu = nodes["gpu-1"], nodes["cpu-1"]
    assert (gpu.instance_type, gpu.gpu_model, gpu.gpu_count, gpu.zone, gpu.ready) == (
        "PNV5b.8XLARGE96", "L20", 1, "ap-guangzhou-6", True)
    assert gpu.gpu_memory_bytes > 40 * 2**30 and gpu.allocatable["nvidia.com/gpu"] == "1"
    assert (cpu.gpu_model, cpu.gpu_count, cpu.has_gpu, cpu.ready, cpu.allocatable["cpu"]) == (
        None, 0, False, False, "3920m")
    frame = nodes_frame([gpu, cpu])
    assert list(frame["node"]) == ["gpu-1", "cpu-1"] and list(frame["gpu"]) == ["L20", ""]
    assert list(frame["gpus"]) == [1, 0] and frame["gpu_memory"][0].endswith("GiB")


def test_pvcs_and_cfs_storage_classes(kube, server):
    server.put("storageclasses", {"metadata": {"name": "cfs"}, "provisioner": "com.tencent.cloud.csi.cfs"})
    server.put("storageclasses", {"metadata": {"name": "cbs"}, "provisioner": "com.tencent.cloud.csi.cbs"})
    server.put("persistentvolumeclaims", {"metadata": {"name": "ai-model", "labels": {"a": "b"}},
                                          "spec": {"storageClassName": "cfs"}}, NS)
    server.set_status("persistentvolumeclaims", "ai-model", NS, {"phase": "Bound"})
    classes = list_storage_classes(kube)
    assert [sc["metadata"]["name"] for sc in cfs_storage_classes(classes)] == ["cfs"]
    pvcs = list_pvcs(kube, NS, "a=b")
    assert [(p["metadata"]["name"], p["status"]["phase"]) for p in pvcs] == [("ai-model", "Bound")]
    assert list_pvcs(kube, NS, "a=c") == []


def test_pod_events_are_only_the_pods_own(kube, server):
    add_pod(server, NS, "p1")
    add_pod(server, NS, "p2")
    server.add_event(NS, "Pod", "p1", "FailedScheduling", "0/1 nodes are available")
    server.add_event(NS, "Pod", "p2", "Pulled", "pulled", "Normal")
    assert [e["reason"] for e in pod_events(kube, "p1", NS)] == ["FailedScheduling"]


def test_events_of_an_earlier_pod_with_the_same_name_are_left_out(kube, server):
    # a LeaderWorkerSet pod keeps its name when recreated: the old pod's "no free GPU" must not fail the new one
    pod = add_pod(server, NS, "vllm-e5-0")
    server.add_event(NS, "Pod", "vllm-e5-0", "FailedScheduling", "0/1 nodes are available: 1 Insufficient "
                     "nvidia.com/gpu.", uid="uid-of-the-deleted-pod")
    server.add_event(NS, "Pod", "vllm-e5-0", "Scheduled", "assigned", "Normal", uid=pod["metadata"]["uid"])
    assert [e["reason"] for e in pod_events(kube, pod)] == ["Scheduled"]
    assert len(pod_events(kube, "vllm-e5-0", NS)) == 2  # by name only, nothing to tell them apart


def test_pod_logs_fall_back_to_the_crashed_run(kube, server):
    add_pod(server, NS, "p")
    server.append_log(NS, "p", *[f"line {i}" for i in range(10)])
    assert pod_logs(kube, "p", 3, NS) == "line 7\nline 8\nline 9\n"
    pod = pod_crashed(server, NS, "p")
    assert pod_logs(kube, pod, 2) == "line 8\nline 9\n"  # current run is empty: the previous one is shown
    assert pod_logs(kube, "missing", 2, NS) == ""


def test_current_pods_judges_every_pod_when_replica_sets_cannot_be_listed():
    from kubernetes.client.exceptions import ApiException

    class Forbidden:  # RBAC lets the user read pods and Deployments, not ReplicaSets
        host = "https://cls.example:443"

        def request(self, *args, **kwargs):
            raise ApiException(status=403, reason="Forbidden")

    deployment = {"kind": "Deployment", "metadata": {"name": "d", "namespace": NS, "annotations": {
        "deployment.kubernetes.io/revision": "2"}}, "spec": {"selector": {"matchLabels": {"app": "d"}}}}
    pods = [{"metadata": {"name": "d-old", "labels": {"pod-template-hash": "1"}}},
            {"metadata": {"name": "d-gone", "deletionTimestamp": "2026-01-01T00:00:00Z"}}]
    assert [p["metadata"]["name"] for p in current_pods(Forbidden(), deployment, pods)] == ["d-old"]


def test_pod_logs_of_a_pod_with_the_auth_proxy_show_vllm(kube, server):
    # the API server answers 400 without ?container= for a pod with two containers (vLLM + auth proxy)
    server.put("pods", {"metadata": {"name": "two", "namespace": NS}, "spec": {"containers": [
        {"name": "vllm", "image": "vllm"}, {"name": "auth-proxy", "image": "nginx"}]}}, NS)
    server.append_log(NS, "two", "vllm says hello")
    assert pod_logs(kube, server.get("pods", "two", NS), 5) == "vllm says hello\n"
    assert pod_logs(kube, "two", 5, NS) == ""  # by name only, the container cannot be chosen: as the API server


def test_default_container_follows_kubectl():
    from tke_playbook.kube.inventory import default_container
    from tke_playbook.manifests.serving import build_deployment
    from tke_playbook.specs.serving import seed_profile

    template = build_deployment(seed_profile())["spec"]["template"]
    assert default_container(template) == "vllm"
    assert default_container({"spec": {"containers": [{"name": "only"}]}}) is None
