"""Every failure users hit gets a plain-words diagnosis from realistic pod status, events and log text."""

from __future__ import annotations

import pytest

from tke_playbook.specs.diagnosis import Severity, diagnose_log, diagnose_pod, diagnose_pvc, format_diagnoses


def _pod(name="vllm-e5-7d9f-abcde", phase="Pending", conditions=(), statuses=()):
    return {"metadata": {"name": name, "namespace": "ai"},
            "status": {"phase": phase, "conditions": list(conditions), "containerStatuses": list(statuses)}}


def _event(reason, message, type_="Warning"):
    return {"reason": reason, "message": message, "type": type_, "involvedObject": {"kind": "Pod"}}


def _cs(state=None, last=None, restarts=0):
    return {"name": "vllm", "image": "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801",
            "ready": False, "restartCount": restarts, "state": state or {}, "lastState": last or {}}


def _codes(diagnoses):
    return [d.code for d in diagnoses]


@pytest.mark.parametrize("message, code", [
    pytest.param("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
                 "3 No preemption victims found for incoming pod.", "no-free-gpu", id="no-free-gpu"),
    pytest.param("0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) didn't match Pod's node "
                 "affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for "
                 "scheduling.", "no-free-gpu", id="no-free-gpu-mixed"),
    pytest.param("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 "
                 "nodes are available: 3 Preemption is not helpful for scheduling.", "no-matching-node",
                 id="selector-matches-nothing"),
    pytest.param("0/2 nodes are available: 2 node(s) didn't match node selector.", "no-matching-node",
                 id="selector-old-wording"),
    pytest.param("0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 "
                 "nodes are available: 3 Preemption is not helpful for scheduling.", "pvc-unbound", id="pvc-unbound"),
    pytest.param('persistentvolumeclaim "ai-model" not found', "pvc-missing", id="pvc-missing"),
    pytest.param("0/1 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu: present}.",
                 "untolerated-taint", id="taint"),
])
def test_pending_pod_scheduling_failures(message, code):
    pod = _pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message}])
    found = diagnose_pod(pod, [_event("FailedScheduling", message)])
    assert code in _codes(found)
    hit = next(d for d in found if d.code == code)
    assert hit.evidence == message and hit.action and hit.subject == "pod vllm-e5-7d9f-abcde"


def test_full_gpu_node_is_the_cause_not_the_cpu_nodes_outside_the_selector():
    # realistic: one GPU node (full) and three CPU nodes the instance-type selector rules out
    message = ("0/5 nodes are available: 1 Insufficient nvidia.com/gpu, 3 node(s) didn't match Pod's node "
               "affinity/selector, 1 node(s) had untolerated taint {node-role.kubernetes.io/master: }.")
    found = diagnose_pod(_pod(), [_event("FailedScheduling", message)])
    assert _codes(found) == ["no-free-gpu", "untolerated-taint"]
    assert found[1].severity is Severity.WARNING


def test_no_free_gpu_says_to_add_a_gpu_node():
    found = diagnose_pod(_pod(), [_event("FailedScheduling", "0/3 nodes are available: 3 Insufficient "
                                                             "nvidia.com/gpu.")])
    assert found[0].severity is Severity.ERROR
    assert "GPU node" in found[0].action and "free GPU" in found[0].problem


@pytest.mark.parametrize("reason, message", [
    pytest.param("ImagePullBackOff", 'Back-off pulling image "ccr.ccs.tencentyun.com/x/vllm:v0.10.9"',
                 id="image-pull-backoff"),
    pytest.param("ErrImagePull", "rpc error: code = NotFound desc = failed to pull and unpack image: not found",
                 id="err-image-pull"),
])
def test_image_pull_failures(reason, message):
    found = diagnose_pod(_pod(statuses=[_cs(state={"waiting": {"reason": reason, "message": message}})]))
    assert _codes(found) == ["image-pull"]
    assert found[0].evidence == message and "imagePullSecrets" in found[0].action


def test_missing_api_key_secret_stops_the_container_from_starting():
    message = 'secret "vllm-e5-mistral-7b-instruct-api-key" not found'
    found = diagnose_pod(_pod(statuses=[_cs(state={"waiting": {"reason": "CreateContainerConfigError",
                                                               "message": message}})]))
    assert _codes(found) == ["config-missing"] and found[0].severity is Severity.ERROR
    assert found[0].evidence == message and "build_secret" in found[0].action


def test_oom_killed_container():
    pod = _pod(phase="Running", statuses=[_cs(state={"waiting": {"reason": "CrashLoopBackOff"}},
                                              last={"terminated": {"reason": "OOMKilled", "exitCode": 137}},
                                              restarts=3)])
    found = diagnose_pod(pod)
    assert _codes(found) == ["oom-killed"]  # the specific cause replaces the generic crash loop
    assert "memory limit" in found[0].action


@pytest.mark.parametrize("line", [
    pytest.param("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 224.00 MiB. GPU 0 has a total "
                 "capacity of 22.05 GiB of which 120.12 MiB is free.", id="torch-oom-error"),
    pytest.param("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", id="cuda-oom-runtime-error"),
])
def test_cuda_out_of_memory_in_the_vllm_log(line):
    log = f"INFO 08-01 10:00:01 [gpu_model_runner.py:1843] Starting to load model /data/model...\n{line}\n"
    found = diagnose_log(log)
    assert _codes(found) == ["cuda-oom"]
    action = found[0].action
    assert "larger GPU" in action and "--max-model-len" in action and "--gpu-memory-utilization" in action
    assert found[0].evidence == line


def test_kv_cache_too_small_in_the_vllm_log():
    log = ("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be "
           "stored in KV cache (21904). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
           "initializing the engine.")
    assert _codes(diagnose_log(log)) == ["kv-cache-too-small"]


@pytest.mark.parametrize("line", [
    pytest.param("OSError: /data/model does not appear to have a file named config.json. Checkout "
                 "'https://huggingface.co//data/model/tree/None' for available files.", id="no-config-json"),
    pytest.param("huggingface_hub.errors.HFValidationError: Repo id must be in the form 'repo_name' or "
                 "'namespace/repo_name': '/data/model'. Use `repo_type` argument if needed.", id="repo-id-form"),
    pytest.param("FileNotFoundError: [Errno 2] No such file or directory: '/data/model/config.json'",
                 id="no-such-file"),
    pytest.param("tke_playbook.errors.IncompleteModelError: Model folder /data/model has no completion marker "
                 "(.tke-playbook/COMPLETE): the download has not finished or was not verified.",
                 id="incomplete-model"),
    pytest.param("ValueError: Invalid repository ID or local directory specified: '/data/model'. Please verify "
                 "the following requirements: ...", id="vllm-invalid-local-directory"),
])
def test_model_path_missing_or_download_incomplete(line):
    found = diagnose_pod(_pod(phase="Running", statuses=[_cs(state={"waiting": {"reason": "CrashLoopBackOff"}},
                                                             last={"terminated": {"exitCode": 1}}, restarts=2)]),
                         log_text=f"INFO starting\n{line}\n")
    assert _codes(found) == ["model-missing"]
    assert "download" in found[0].action and found[0].evidence == line


def test_an_optional_file_missing_from_the_model_folder_is_not_a_missing_model():
    # the model folder exists; an optional file's absence is logged by libraries and means nothing
    log = "WARNING [Errno 2] No such file or directory: '/data/model/generation_config.json'\nINFO loading"
    assert diagnose_log(log) == []


def test_startup_probe_refused_while_loading_is_only_information():
    message = ('Startup probe failed: Get "http://10.0.3.17:60000/health": dial tcp 10.0.3.17:60000: connect: '
               "connection refused")
    found = diagnose_pod(_pod(phase="Running", statuses=[_cs(state={"running": {}})]),
                         [_event("Unhealthy", message)])
    assert _codes(found) == ["probe-during-load"] and found[0].severity is Severity.INFO
    assert "loading" in found[0].problem


def test_liveness_probe_killing_a_loading_server_is_an_error():
    message = ('Liveness probe failed: Get "http://10.0.3.17:60000/health": context deadline exceeded '
               "(Client.Timeout exceeded while awaiting headers)")
    found = diagnose_pod(_pod(phase="Running", statuses=[_cs(state={"running": {}}, restarts=1)]),
                         [_event("Unhealthy", message), _event("Killing", "Container vllm failed liveness probe, "
                                                                          "will be restarted", "Normal")])
    assert _codes(found) == ["probe-killed"] and found[0].severity is Severity.ERROR
    assert "startup probe" in found[0].action


def test_one_liveness_failure_without_a_restart_is_a_warning_not_an_error():
    # a single timeout under load does not kill the container (failureThreshold in a row do): waits go on
    message = ('Liveness probe failed: Get "http://10.0.3.17:60000/health": context deadline exceeded '
               "(Client.Timeout exceeded while awaiting headers)")
    found = diagnose_pod(_pod(phase="Running", statuses=[_cs(state={"running": {}})]),
                         [_event("Unhealthy", message)])
    assert _codes(found) == ["liveness-failing"] and found[0].severity is Severity.WARNING


def test_healthy_pod_has_no_findings():
    pod = _pod(phase="Running", statuses=[_cs(state={"running": {}})])
    assert diagnose_pod(pod, [_event("Pulled", "Successfully pulled image", "Normal")], "INFO ready") == []


@pytest.mark.parametrize("events, code, severity", [
    pytest.param([], "pvc-unbound", Severity.WARNING, id="pending-no-events"),
    pytest.param([_event("ProvisioningFailed", 'storageclass.storage.k8s.io "cfs" not found')],
                 "storage-class-missing", Severity.ERROR, id="storage-class-missing"),
    pytest.param([_event("ProvisioningFailed", 'failed to provision volume with StorageClass "cfs": rpc error: '
                                               "code = Internal desc = CreateCfsFileSystem failed")],
                 "pvc-provisioning-failed", Severity.ERROR, id="provisioning-failed"),
    pytest.param([_event("ProvisioningFailed", 'failed to provision volume with StorageClass "cfs": rpc error: '
                                               "code = DeadlineExceeded desc = context deadline exceeded")],
                 "pvc-provisioning-failed", Severity.WARNING, id="provisioning-timeout-is-retried"),
    pytest.param([_event("WaitForFirstConsumer", "waiting for first consumer to be created before binding",
                         "Normal")], "pvc-wait-for-consumer", Severity.INFO, id="wait-for-first-consumer"),
])
def test_pvc_not_bound(events, code, severity):
    pvc = {"metadata": {"name": "ai-model"}, "spec": {"storageClassName": "cfs"}, "status": {"phase": "Pending"}}
    found = diagnose_pvc(pvc, events)
    assert (_codes(found)[0], found[0].severity) == (code, severity)
    assert found[0].subject == "pvc ai-model"


def test_bound_pvc_is_fine():
    assert diagnose_pvc({"metadata": {"name": "ai-model"}, "status": {"phase": "Bound"}}) == []


def test_findings_read_as_sentences():
    text = format_diagnoses(diagnose_log("torch.OutOfMemoryError: CUDA out of memory.", subject="pod p"))
    assert text.startswith("- ERROR [pod p]: The GPU ran out of memory.") and "What to do:" in text


def test_a_crash_cause_outranks_the_probe_failures_it_causes():
    pod = _pod(phase="Running", statuses=[_cs(state={"waiting": {"reason": "CrashLoopBackOff"}},
                                              last={"terminated": {"exitCode": 1}}, restarts=2)])
    events = [_event("Unhealthy", 'Startup probe failed: Get "http://10.0.3.17:60000/health": dial tcp '
                                  "10.0.3.17:60000: connect: connection refused")]
    found = diagnose_pod(pod, events, "torch.OutOfMemoryError: CUDA out of memory.")
    assert _codes(found) == ["cuda-oom"]


def test_unknown_crash_keeps_the_generic_finding():
    pod = _pod(phase="Running", statuses=[_cs(state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                                              last={"terminated": {"exitCode": 2}}, restarts=2)])
    found = diagnose_pod(pod, [], "Traceback (most recent call last):\nKeyError: 'pooler'")
    assert _codes(found) == ["crash-loop"] and "code 2" in found[0].explanation
