"""Waiting for Jobs, Deployments and LeaderWorkerSets against the fake API server."""

from __future__ import annotations

import pytest
from fake_cluster import (NS, add_pod, deployment_ready, job_pod_fails, job_pods, job_pods_succeed, pod_crashed,
                          pod_oom_killed, pod_running, pod_unschedulable, pod_waiting, requested, until)

from tke_playbook.errors import ClusterError, DeploymentFailedError, JobFailedError, WaitTimeoutError
from tke_playbook.kube.apply import apply
from tke_playbook.kube.wait import (JobProgress, job_progress, new_lines, parse_indexes, rollout_state,
                                    wait_for_deployment, wait_for_job, wait_for_leader_worker_set)

FAST = {"poll": 1.0}
PROBE_REFUSED = ('Startup probe failed: Get "http://10.0.0.5:60000/health": dial tcp 10.0.0.5:60000: connect: '
                 "connection refused")


def _job(name="download-bge-m3", completions=3):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
            "spec": {"completions": completions, "parallelism": completions, "completionMode": "Indexed",
                     "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                                                              "containers": [{"name": "main", "image": "busybox"}]}}}}


def _deployment(name="vllm-bge-m3", replicas=1):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {"containers": [{"name": "vllm", "image": "vllm"}]}}}}


@pytest.mark.parametrize("text, expected", [
    pytest.param("", set(), id="empty"), pytest.param("3", {3}, id="single"),
    pytest.param("0-2,4,6-7", {0, 1, 2, 4, 6, 7}, id="ranges"),
])
def test_parse_indexes(text, expected):
    assert parse_indexes(text) == expected


def test_job_progress_reads_indexes_conditions_and_pods():
    job = {"metadata": {"name": "j"}, "spec": {"completions": 4, "completionMode": "Indexed"},
           "status": {"completedIndexes": "0,2", "failedIndexes": "3", "active": 1}}
    pods = [{"metadata": {"labels": {"batch.kubernetes.io/job-completion-index": "1"}}, "status": {"phase": "Running"}}]
    progress = job_progress(job, pods)
    assert (progress.completed, progress.failed, progress.pods, progress.state) == ({0, 2}, {3}, {1: "Running"},
                                                                                    "running")
    assert progress.per_index() == {0: "done", 1: "running", 2: "done", 3: "failed"}
    assert progress.fraction == 0.5 and progress.summary() == "Job j: 2/4 indexes done, 1 failed ([3]), 1 running"


@pytest.mark.parametrize("previous, current, expected", [
    pytest.param([], ["a", "b"], ["a", "b"], id="first-tail"),
    pytest.param(["a", "b", "c"], ["b", "c", "d", "e"], ["d", "e"], id="window-moved"),
    pytest.param(["a", "b"], ["a", "b"], [], id="nothing-new"),
    pytest.param(["x", "y"], ["restarted"], ["restarted"], id="container-restarted"),
])
def test_new_lines(previous, current, expected):
    assert new_lines(previous, current) == expected


def test_job_completes_with_per_index_progress(kube, server, script):
    apply(kube, _job())
    seen: list[JobProgress] = []
    script(lambda: until(lambda: seen),  # the wait has seen the Job before any pod exists
           lambda: job_pods(server, NS, "download-bge-m3", [0, 1, 2]),
           lambda: job_pods_succeed(server, NS, "download-bge-m3", [1]),
           lambda: until(lambda: any(p.completed == {1} for p in seen)),
           lambda: job_pods_succeed(server, NS, "download-bge-m3", [0, 2]))
    final = wait_for_job(kube, "download-bge-m3", NS, timeout=30, on_progress=seen.append, **FAST)
    assert final.state == "complete" and final.completed == {0, 1, 2}
    assert seen[0].completed == set() and seen[-1] == final
    steps = list(dict.fromkeys(tuple(sorted(p.completed)) for p in seen))
    assert steps == [(), (1,), (0, 1, 2)]  # per-index progress, only forward


def test_failed_job_raises_with_the_failing_pods_last_log_lines(kube, server, script):
    apply(kube, _job())
    log = [f"downloading shard {i}" for i in range(60)] + ["httpx.ConnectError: [Errno 111] Connection refused",
                                                         "DownloadError: model-00002-of-00003.safetensors failed"]
    script(lambda: job_pods(server, NS, "download-bge-m3", [0, 1, 2]),
           lambda: job_pod_fails(server, NS, "download-bge-m3", 1, log_lines=log))
    with pytest.raises(JobFailedError) as exc:
        wait_for_job(kube, "download-bge-m3", NS, timeout=30, tail_lines=5, **FAST)
    err = exc.value
    assert err.logs.splitlines() == log[-5:]
    assert "BackoffLimitExceeded" in str(err) and "DownloadError" in str(err) and err.obj.failed == {1}


def test_job_failure_from_a_full_volume_carries_a_diagnosis(kube, server, script):
    apply(kube, _job(completions=1))
    script(lambda: job_pod_fails(server, NS, "download-bge-m3", 0,
                                 log_lines=["OSError: [Errno 28] No space left on device"]))
    with pytest.raises(JobFailedError) as exc:
        wait_for_job(kube, "download-bge-m3", NS, timeout=30, **FAST)
    assert [d.code for d in exc.value.diagnosis] == ["disk-full"]


def test_job_pod_that_cannot_be_scheduled_fails_fast(kube, server, script):
    apply(kube, _job(completions=1))
    script(lambda: job_pods(server, NS, "download-bge-m3", [0], phase="Pending"),
           lambda: pod_unschedulable(server, NS, "download-bge-m3-0-abcde",
                                     "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."))
    with pytest.raises(JobFailedError) as exc:
        wait_for_job(kube, "download-bge-m3", NS, timeout=30, **FAST)
    assert exc.value.diagnosis[0].code == "no-matching-node"


def test_job_timeout_says_what_was_last_seen(kube, server):
    apply(kube, _job(completions=2))
    job_pods(server, NS, "download-bge-m3", [0, 1])
    job_pods_succeed(server, NS, "download-bge-m3", [0])
    with pytest.raises(WaitTimeoutError, match=r"1/2 indexes done, 1 running") as exc:
        wait_for_job(kube, "download-bge-m3", NS, timeout=0.5, **FAST)
    assert isinstance(exc.value, TimeoutError) and exc.value.obj.completed == {0}


def test_waiting_for_a_missing_job_says_apply_it_first(kube):
    with pytest.raises(ClusterError, match="does not exist: apply it first"):
        wait_for_job(kube, "nope", NS, timeout=1)


def test_deployment_becomes_ready_with_a_live_log_tail(kube, server, script):
    apply(kube, _deployment())
    pod = "vllm-bge-m3-6d5f-abcde"
    lines, notes = [], []
    script(lambda: add_pod(server, NS, pod, labels={"app": "vllm-bge-m3"}, container="vllm"),
           lambda: server.append_log(NS, pod, "INFO Starting vLLM API server", "INFO Loading weights took 41.2 s"),
           lambda: server.add_event(NS, "Pod", pod, "Unhealthy", PROBE_REFUSED),
           lambda: until(lambda: notes and len(lines) == 2),
           lambda: server.append_log(NS, pod, "INFO Application startup complete."),
           lambda: (pod_running(server, NS, pod, container="vllm"), deployment_ready(server, NS, "vllm-bge-m3")))
    state = wait_for_deployment(kube, "vllm-bge-m3", NS, timeout=30, on_log=lines.append, on_diagnosis=notes.append,
                                poll=0.05)
    assert state.done and state.summary() == "Deployment vllm-bge-m3: 1/1 ready"
    assert lines == ["INFO Starting vLLM API server", "INFO Loading weights took 41.2 s",
                     "INFO Application startup complete."]
    assert [d.code for d in notes] == ["probe-during-load"]


@pytest.mark.parametrize("break_it, code", [
    pytest.param(lambda s, pod: (s.append_log(NS, pod, "torch.OutOfMemoryError: CUDA out of memory. Tried to "
                                                       "allocate 1.00 GiB"), pod_crashed(s, NS, pod, "vllm")),
                 "cuda-oom", id="cuda-oom"),
    pytest.param(lambda s, pod: pod_oom_killed(s, NS, pod, "vllm"), "oom-killed", id="oom-killed"),
    pytest.param(lambda s, pod: pod_waiting(s, NS, pod, "ImagePullBackOff", 'Back-off pulling image "vllm:typo"',
                                            "vllm"), "image-pull", id="image-pull"),
    pytest.param(lambda s, pod: (s.append_log(NS, pod, "OSError: /data/model does not appear to have a file named "
                                                       "config.json."), pod_crashed(s, NS, pod, "vllm")),
                 "model-missing", id="model-missing"),
    pytest.param(lambda s, pod: pod_unschedulable(s, NS, pod, "0/3 nodes are available: 3 Insufficient "
                                                              "nvidia.com/gpu."), "no-free-gpu", id="no-free-gpu"),
])
def test_deployment_failures_stop_the_wait_with_a_diagnosis(kube, server, script, break_it, code):
    apply(kube, _deployment())
    pod = "vllm-bge-m3-6d5f-abcde"
    script(lambda: add_pod(server, NS, pod, labels={"app": "vllm-bge-m3"}, container="vllm"),
           lambda: break_it(server, pod))
    with pytest.raises(DeploymentFailedError) as exc:
        wait_for_deployment(kube, "vllm-bge-m3", NS, timeout=30, poll=0.05)
    assert exc.value.diagnosis[0].code == code
    assert "will not become ready" in str(exc.value)


def test_old_replica_sets_crashing_pod_does_not_fail_the_fixed_rollout(kube, server, script):
    # the user fixed --max-model-len and applied again: revision 2's pod loads while revision 1's pod, still
    # crash-looping with CUDA out of memory, waits to be scaled down - its failure belongs to the old spec
    deployment = _deployment()
    deployment["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    apply(kube, deployment)
    for revision, template_hash in (("1", "6d5f"), ("2", "7c8e")):
        labels = {"app": "vllm-bge-m3", "pod-template-hash": template_hash}
        server.put("replicasets", {"metadata": {"name": f"vllm-bge-m3-{template_hash}", "labels": labels,
                                                "annotations": {"deployment.kubernetes.io/revision": revision}}}, NS)
    old, new = "vllm-bge-m3-6d5f-aaaaa", "vllm-bge-m3-7c8e-bbbbb"
    add_pod(server, NS, old, labels={"app": "vllm-bge-m3", "pod-template-hash": "6d5f"}, container="vllm")
    server.append_log(NS, old, "torch.OutOfMemoryError: CUDA out of memory.")
    pod_crashed(server, NS, old, "vllm")
    add_pod(server, NS, new, labels={"app": "vllm-bge-m3", "pod-template-hash": "7c8e"}, container="vllm")
    server.append_log(NS, new, "INFO loading the model")
    lines = []
    script(lambda: until(lambda: lines),
           lambda: (pod_running(server, NS, new, container="vllm"), deployment_ready(server, NS, "vllm-bge-m3")))
    state = wait_for_deployment(kube, "vllm-bge-m3", NS, timeout=30, on_log=lines.append, poll=0.05)
    assert state.done and lines == ["INFO loading the model"]


def test_crashed_server_error_carries_the_previous_runs_log(kube, server):
    apply(kube, _deployment())
    pod = "vllm-bge-m3-6d5f-abcde"
    add_pod(server, NS, pod, labels={"app": "vllm-bge-m3"}, container="vllm")
    server.append_log(NS, pod, "INFO loading", "torch.OutOfMemoryError: CUDA out of memory.")
    pod_crashed(server, NS, pod, "vllm")
    with pytest.raises(DeploymentFailedError) as exc:
        wait_for_deployment(kube, "vllm-bge-m3", NS, timeout=30, poll=0.05)
    assert exc.value.logs.splitlines() == ["INFO loading", "torch.OutOfMemoryError: CUDA out of memory."]


def test_unschedulable_pod_waits_while_the_autoscaler_adds_a_node(kube, server):
    apply(kube, _deployment())
    pod = "vllm-bge-m3-6d5f-abcde"
    add_pod(server, NS, pod, labels={"app": "vllm-bge-m3"}, container="vllm")
    pod_unschedulable(server, NS, pod, "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    server.add_event(NS, "Pod", pod, "TriggeredScaleUp", "pod triggered scale-up: [{np-gpu 0->1 (max: 2)}]",
                     "Normal")
    with pytest.raises(WaitTimeoutError, match="(?s)0/1 ready.*free GPU"):
        wait_for_deployment(kube, "vllm-bge-m3", NS, timeout=0.3, poll=0.05)


def test_progress_deadline_exceeded_fails_the_wait(kube, server):
    apply(kube, _deployment())
    server.set_status("deployments", "vllm-bge-m3", NS, {"conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": 'ReplicaSet "vllm-bge-m3-6d5f" has timed out progressing.'}]})
    with pytest.raises(DeploymentFailedError, match="ProgressDeadlineExceeded"):
        wait_for_deployment(kube, "vllm-bge-m3", NS, timeout=30, poll=0.05)


def test_rollout_state_needs_the_new_generation():
    dep = {"kind": "Deployment", "metadata": {"name": "d", "generation": 2},
           "spec": {"replicas": 1}, "status": {"readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}}
    assert not rollout_state(dep).done
    dep["status"]["observedGeneration"] = 2
    assert rollout_state(dep).done


def test_leader_worker_set_ready_follows_the_leader_log(kube, server, script):
    server.install_lws()
    apply(kube, {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                 "metadata": {"name": "vllm-e5", "namespace": NS}, "spec": {"replicas": 1, "leaderWorkerTemplate": {
                     "size": 2}}})
    lws = {"leaderworkerset.sigs.k8s.io/name": "vllm-e5"}
    for index in ("1", "0"):
        add_pod(server, NS, f"vllm-e5-0{'-' + index if index != '0' else ''}",
                labels=dict(lws, **{"leaderworkerset.sigs.k8s.io/worker-index": index}), container="vllm")
    server.append_log(NS, "vllm-e5-0", "INFO leader: ray cluster up")
    server.append_log(NS, "vllm-e5-0-1", "INFO worker joined")
    lines = []
    script(lambda: until(requested(server, "/pods/vllm-e5-0/log")),
           lambda: server.set_status("leaderworkersets", "vllm-e5", NS, {"readyReplicas": 1, "replicas": 1}))
    state = wait_for_leader_worker_set(kube, "vllm-e5", NS, timeout=30, on_log=lines.append, poll=0.05)
    assert state.done and lines == ["INFO leader: ray cluster up"]
