"""Scripting what the cluster does on a :class:`FakeApiServer`: nodes, pods of Jobs and Deployments, failures."""

from __future__ import annotations

import contextlib
import time

GPU_PRODUCT = "nvidia.com/gpu.product"
NS = "team-a"  # the namespace the fixtures create


def compress(indexes) -> str:
    """{0,1,2,4} -> '0-2,4' (the format of status.completedIndexes)."""
    out, run = [], []
    for i in sorted(indexes):
        if run and i != run[-1] + 1:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(i)
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def add_node(server, name, *, instance_type="PNV5b.8XLARGE96", gpus=1, product="NVIDIA-L20", memory="371Gi",
             cpu="32", ready=True, extra_labels=None) -> dict:
    labels = {"node.kubernetes.io/instance-type": instance_type, "kubernetes.io/hostname": name}
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "300Gi"}
    if gpus:
        labels[GPU_PRODUCT] = product
        allocatable["nvidia.com/gpu"] = str(gpus)
    labels.update(extra_labels or {})
    node = server.put("nodes", {"metadata": {"name": name, "labels": labels}, "spec": {}})
    return server.set_status("nodes", name, "", {"allocatable": allocatable, "capacity": allocatable, "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "reason": "KubeletReady"}]}) or node


def container_status(name="main", *, state=None, last_state=None, ready=False, restarts=0) -> dict:
    return {"name": name, "image": "ccr.ccs.tencentyun.com/x/y:1", "imageID": "", "ready": ready,
            "restartCount": restarts, "state": state or {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
            "lastState": last_state or {}}


def add_pod(server, namespace, name, *, labels=None, owner=None, container="main", phase="Pending") -> dict:
    meta = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "controller": True,
                                    "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]
    server.put("pods", {"metadata": meta, "spec": {"containers": [{"name": container, "image": "busybox"}]}},
               namespace)
    return server.set_status("pods", name, namespace, {"phase": phase})


def job_pods(server, namespace, job_name, indexes, phase="Running") -> list[str]:
    job = server.get("jobs", job_name, namespace)
    names = []
    for i in indexes:
        name = f"{job_name}-{i}-abcde"
        labels = {"job-name": job_name, "batch.kubernetes.io/job-name": job_name,
                  "batch.kubernetes.io/job-completion-index": str(i)}
        add_pod(server, namespace, name, labels=labels, owner=job, phase=phase)
        names.append(name)
    server.set_status("jobs", job_name, namespace, {"active": len(names), "startTime": "2025-01-01T00:00:00Z"})
    return names


def _job_status(server, namespace, job_name) -> tuple[dict, dict]:
    job = server.get("jobs", job_name, namespace)
    return job, job.get("status") or {}


def _expand(text) -> set[int]:
    out = set()
    for part in filter(None, (text or "").split(",")):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def job_pods_succeed(server, namespace, job_name, indexes) -> dict:
    job, status = _job_status(server, namespace, job_name)
    for i in indexes:
        pod = f"{job_name}-{i}-abcde"
        if not server.exists("pods", pod, namespace):
            job_pods(server, namespace, job_name, [i])
        server.set_status("pods", pod, namespace, {"phase": "Succeeded", "containerStatuses": [container_status(
            state={"terminated": {"exitCode": 0, "reason": "Completed"}})]})
    done = _expand(status.get("completedIndexes")) | set(indexes)
    new = {"completedIndexes": compress(done), "succeeded": len(done),
           "active": max(0, (status.get("active") or 0) - len(indexes))}
    if len(done) >= (job["spec"].get("completions") or 1):
        new["conditions"] = [{"type": "SuccessCriteriaMet", "status": "True"},
                             {"type": "Complete", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}]
        new["completionTime"] = "2025-01-01T00:10:00Z"
    return server.set_status("jobs", job_name, namespace, new)


def job_pod_fails(server, namespace, job_name, index, *, log_lines=(), reason="Error", exit_code=1,
                  job_failed=True) -> dict:
    pod = f"{job_name}-{index}-abcde"
    if not server.exists("pods", pod, namespace):
        job_pods(server, namespace, job_name, [index])
    server.append_log(namespace, pod, *log_lines)
    server.set_status("pods", pod, namespace, {"phase": "Failed", "containerStatuses": [container_status(
        state={"terminated": {"exitCode": exit_code, "reason": reason}})]})
    _, status = _job_status(server, namespace, job_name)
    new = {"failed": (status.get("failed") or 0) + 1,
           "failedIndexes": compress(_expand(status.get("failedIndexes")) | {index})}
    if job_failed:
        new["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                              "message": "Job has reached the specified backoff limit"}]
    return server.set_status("jobs", job_name, namespace, new)


def pod_oom_killed(server, namespace, pod, container="main") -> dict:
    """The container was OOMKilled and is now in CrashLoopBackOff; its logs move to ``previous``."""
    server.logs[(namespace, pod, True)] = server.logs.pop((namespace, pod, False), [])
    return server.set_status("pods", pod, namespace, {"phase": "Running", "containerStatuses": [container_status(
        container, state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting"}},
        last_state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}, restarts=1)]})


def pod_crashed(server, namespace, pod, container="main", exit_code=1, restarts=1) -> dict:
    """The container exited with an error and restarts; the current logs become ``previous``."""
    server.logs[(namespace, pod, True)] = server.logs.pop((namespace, pod, False), [])
    return server.set_status("pods", pod, namespace, {"phase": "Running", "containerStatuses": [container_status(
        container, state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting"}},
        last_state={"terminated": {"exitCode": exit_code, "reason": "Error"}}, restarts=restarts)]})


def pod_waiting(server, namespace, pod, reason, message="", container="main") -> dict:
    return server.set_status("pods", pod, namespace, {"phase": "Pending", "containerStatuses": [container_status(
        container, state={"waiting": {"reason": reason, "message": message}})]})


def pod_unschedulable(server, namespace, pod, message) -> dict:
    server.add_event(namespace, "Pod", pod, "FailedScheduling", message)
    return server.set_status("pods", pod, namespace, {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]})


def pod_running(server, namespace, pod, ready=True, container="main") -> dict:
    return server.set_status("pods", pod, namespace, {"phase": "Running", "conditions": [
        {"type": "Ready", "status": str(ready)}], "containerStatuses": [container_status(container, ready=ready)]})


def deployment_ready(server, namespace, name, replicas=1) -> dict:
    return server.set_status("deployments", name, namespace, {
        "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
        "updatedReplicas": replicas, "observedGeneration": 1,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]})


def until(condition, timeout: float = 10.0) -> None:
    """Block a script step until ``condition()`` holds (so a step happens only after the code under test saw the
    previous state - no reliance on timing)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {condition}")
        time.sleep(0.01)


def serve_when_applied(server, spec, pod, *, lines=("INFO Application startup complete.",), ip="10.0.0.9",
                       namespace="default") -> None:
    """The cluster's side of a deploy of ``spec``: once its Deployment exists, a running pod ``pod`` with its labels
    logs ``lines``, the Service gets the balancer address ``ip`` and the Deployment becomes ready (run it in a
    thread beside the deploy)."""
    until(lambda: server.exists("deployments", spec.name, namespace))
    labels = server.get("deployments", spec.name, namespace)["spec"]["template"]["metadata"]["labels"]
    add_pod(server, namespace, pod, labels=labels, container="vllm")
    for line in lines:
        server.append_log(namespace, pod, line)
    pod_running(server, namespace, pod, container="vllm")
    until(lambda: server.exists("services", spec.name, namespace))
    server.set_status("services", spec.name, namespace, {"loadBalancer": {"ingress": [{"ip": ip}]}})
    deployment_ready(server, namespace, spec.name)


@contextlib.contextmanager
def cluster_with_nodes(*nodes, namespace="default"):
    """``(server, kube)``: a :class:`FakeApiServer` with ``namespace`` and one node per ``(name, add_node
    options)`` in ``nodes``, and the official client connected to it."""
    from fake_apiserver import FakeApiServer

    from tke_playbook.kube.client import Kube

    with FakeApiServer() as server:
        server.put("namespaces", {"metadata": {"name": namespace}})
        for name, options in nodes:
            add_node(server, name, **options)
        with Kube.from_host(server.url) as kube:
            yield server, kube


def requested(server, path_suffix: str):
    """A condition: the code under test has sent a request for a path ending with ``path_suffix``."""
    return lambda: any(path.endswith(path_suffix) for _, path, _ in list(server.requests))
