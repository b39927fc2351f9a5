"""The typed views parse what a real API server and the official client give: fields left out, JSON nulls,
numbers as strings, IntOrString ports, timestamps as datetimes in client models - and the cluster functions read
the views the same way they read the dicts."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kubernetes import client as k8s

from tke_playbook.kube.endpoint import plan_endpoint
from tke_playbook.kube.inventory import default_container, node_info
from tke_playbook.kube.wait import job_progress, rollout_state
from tke_playbook.specs.diagnosis import diagnose_pod, diagnose_pvc
from tke_playbook.specs.objects import (APIService, Condition, Job, KubeEvent, Node, ObjectMeta,
                                        PersistentVolumeClaim, Pod, Secret, Service, StorageClass, Workload)

SANITIZE = k8s.ApiClient().sanitize_for_serialization  # what Kube.to_dict does with a client model


@pytest.mark.parametrize("view", [Pod, Node, Job, Workload, Service, PersistentVolumeClaim, KubeEvent, StorageClass,
                                  APIService, Secret, ObjectMeta])
@pytest.mark.parametrize("obj", [{}, None, {"metadata": None, "spec": None, "status": None}, {"status": []}],
                         ids=["empty", "none", "nulls", "wrong-type"])
def test_every_view_parses_an_object_with_nothing_in_it(view, obj):
    parsed = view.from_api(obj)
    assert view.of(parsed) is parsed  # a view passes through


def test_missing_fields_take_the_apis_own_defaults():
    assert Pod.from_api({}).phase == "Pending" and PersistentVolumeClaim.from_api({}).phase == "Pending"
    assert Job.from_api({"spec": {"completions": None}}).completions == 1
    assert Workload.from_api({"spec": {}}).replicas == 1
    assert Workload.from_api({"spec": {"replicas": 0}}).replicas == 0  # scaled to zero is not "unset"
    assert Workload.from_api({"spec": {"replicas": None}}).replicas == 1
    assert Service.from_api({"spec": {}}).type == "ClusterIP"


def test_a_pod_from_the_official_client_model():
    created = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    model = k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name="vllm-0", namespace="ai", uid="u1", creation_timestamp=created,
                                  labels={"app": "vllm"}),
        spec=k8s.V1PodSpec(containers=[
            k8s.V1Container(name="vllm", ports=[k8s.V1ContainerPort(name="http", container_port=8000)]),
            k8s.V1Container(name="auth-proxy")]),
        status=k8s.V1PodStatus(
            phase="Running", conditions=[k8s.V1PodCondition(type="Ready", status="True")],
            container_statuses=[k8s.V1ContainerStatus(
                name="vllm", image="vllm:1", image_id="", ready=True, restart_count=2,
                state=k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()),
                last_state=k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
                    exit_code=137, reason="OOMKilled")))]))
    pod = Pod.from_api(SANITIZE(model))
    assert (pod.name, pod.meta.namespace, pod.meta.uid, pod.meta.labels) == ("vllm-0", "ai", "u1", {"app": "vllm"})
    assert pod.meta.creation_timestamp.startswith("2025-03-01T12:00:00")
    assert pod.ready and pod.restarts == 2 and pod.container_port("http") == 8000
    assert pod.container_port("metrics") is None
    (cs,) = pod.container_statuses
    assert cs.waiting.reason == "" and [(t.reason, t.exit_code) for t in cs.terminated] == [("OOMKilled", 137)]
    # the same pod as the REST API's JSON parses to the same view
    assert Pod.from_api(json.loads(json.dumps(SANITIZE(model)))) == pod


def test_a_pod_with_a_client_model_datetime_left_in():
    created = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    pod = Pod.from_api({"metadata": {"name": "p", "creationTimestamp": created, "deletionTimestamp": created}})
    assert pod.meta.creation_timestamp == created.isoformat() == pod.meta.deletion_timestamp


def test_numbers_as_strings_and_json_nulls():
    job = Job.from_api({"metadata": {"name": "dl", "generation": "3"},
                        "spec": {"completions": "4", "completionMode": "Indexed"},
                        "status": {"succeeded": "2", "active": None, "completedIndexes": None, "conditions": None}})
    assert (job.meta.generation, job.completions, job.indexed, job.succeeded, job.active) == (3, 4, True, 2, 0)
    assert job.completed_indexes == "" and job.conditions == ()
    pod = Pod.from_api({"status": {"containerStatuses": [{"name": "c", "restartCount": None, "state": None,
                                                          "lastState": {"terminated": {"reason": "Error"}}}]}})
    (cs,) = pod.container_statuses
    assert cs.restart_count == 0 and cs.terminated[0].exit_code is None and cs.terminated[0].reason == "Error"
    assert Workload.from_api({"status": {"readyReplicas": "not a number"}}).ready_replicas == 0
    assert Workload.from_api({"spec": {"replicas": True}}).replicas == 1  # a bool is not a count


def test_labels_and_allocatable_become_strings_nulls_dropped():
    node = Node.from_api({"metadata": {"name": "n", "labels": {"gpus": 4, "gone": None}},
                          "status": {"allocatable": {"nvidia.com/gpu": 1, "cpu": "7900m"},
                                     "conditions": [{"type": "Ready", "status": "True"}]}})
    assert node.meta.labels == {"gpus": "4"} and node.allocatable == {"nvidia.com/gpu": "1", "cpu": "7900m"}
    assert node.ready
    assert not Node.from_api({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}).ready
    assert not Node.from_api({"status": {"conditions": [{"type": "MemoryPressure", "status": "True"}]}}).ready


@pytest.mark.parametrize("target, expected", [(8000, 8000), ("8000", 8000), ("http", "http"), (None, None),
                                              ("", None)])
def test_service_target_port_is_an_int_or_a_name(target, expected):
    service = Service.from_api({"spec": {"ports": [{"port": 60000, "targetPort": target}]}})
    assert service.ports[0].target_port == expected


def test_service_ingress_takes_ip_or_hostname_and_skips_empty_entries():
    service = Service.from_api({"spec": {"type": "LoadBalancer"}, "status": {"loadBalancer": {"ingress": [
        {}, {"hostname": "lb.example"}, {"ip": "10.0.0.7"}]}}})
    assert service.ingress == ("lb.example", "10.0.0.7")


def test_event_timestamp_is_last_timestamp_else_event_time():
    # events written through events.k8s.io/v1 reach core/v1 readers with lastTimestamp null and eventTime set
    newer = KubeEvent.from_api({"reason": "Pulled", "lastTimestamp": None, "eventTime": "2025-03-01T12:00:01.000000Z",
                            "involvedObject": {"kind": "Pod", "uid": "u1"}})
    older = KubeEvent.from_api({"reason": "Scheduled", "lastTimestamp": "2025-03-01T12:00:00Z"})
    assert (newer.timestamp, newer.involved_uid, older.involved_uid) == ("2025-03-01T12:00:01.000000Z", "u1", "")
    assert older.timestamp < newer.timestamp


def test_conditions_true_first_in_the_order_asked():
    job = Job.from_api({"status": {"conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the "
                                                                                         "specified backoff limit"},
        {"type": "Complete", "status": "False"}]}})
    assert job.true_condition("Failed", "FailureTarget").type == "Failed"
    assert job.true_condition("Complete") is None and job.condition("Complete").false
    assert job.true_condition("Failed").summary() == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert Condition("Failed", "True", "", "only a message").summary() == "only a message"


def test_secret_keys_and_apiservice_service():
    secret = Secret.from_api({"data": {"api-key": "c2VjcmV0", "empty": None}, "stringData": {"x": "y"}})
    assert secret.data == {"api-key": "c2VjcmV0"} and secret.string_data == {"x": "y"}
    assert "c2VjcmV0" not in repr(secret)
    api = APIService.from_api({"spec": {"service": {"namespace": "monitoring", "name": "prometheus-adapter"}},
                               "status": {"conditions": [{"type": "Available", "status": "True"}]}})
    assert (api.service_namespace, api.service_name, api.condition("Available").true) == (
        "monitoring", "prometheus-adapter", True)


# --- the cluster functions take views as they take dicts ----------------------------------------------------

POD = {"metadata": {"name": "dl-0", "labels": {"batch.kubernetes.io/job-completion-index": "0"},
                    "annotations": {"kubectl.kubernetes.io/default-container": "vllm"}},
       "spec": {"containers": [{"name": "proxy"},
                               {"name": "vllm", "ports": [{"name": "http", "containerPort": 8000}]}]},
       "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
           {"name": "vllm", "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1}}}]}}
JOB = {"metadata": {"name": "dl"}, "spec": {"completions": 2, "completionMode": "Indexed"},
       "status": {"completedIndexes": "1", "active": 1}}
DEPLOYMENT = {"kind": "Deployment", "metadata": {"name": "vllm", "generation": 2},
              "spec": {"replicas": 1}, "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1}}
SERVICE = {"metadata": {"name": "vllm"}, "spec": {"ports": [{"port": 60000, "targetPort": "http"}]}}
NODE = {"metadata": {"name": "gpu-1", "labels": {"node.kubernetes.io/instance-type": "PNV5b.8XLARGE96",
                                                 "nvidia.com/gpu.product": "NVIDIA-L20"}},
        "status": {"allocatable": {"nvidia.com/gpu": "1", "cpu": "31", "memory": "90Gi"},
                   "conditions": [{"type": "Ready", "status": "True"}]}}


def test_functions_read_a_view_as_they_read_the_dict():
    assert job_progress(Job.of(JOB), [Pod.of(POD)]) == job_progress(JOB, [POD])
    assert job_progress(JOB, [POD]).per_index() == {0: "running", 1: "done"}
    assert rollout_state(Workload.of(DEPLOYMENT)) == rollout_state(DEPLOYMENT) and rollout_state(DEPLOYMENT).done
    assert plan_endpoint(Service.of(SERVICE), [Pod.of(POD)]) == plan_endpoint(SERVICE, [POD])
    assert plan_endpoint(SERVICE, [POD]).remote_port == 8000
    assert default_container(Pod.of(POD)) == default_container(POD) == "vllm"
    assert node_info(Node.of(NODE)) == node_info(NODE) and node_info(NODE).gpu_model
    assert diagnose_pod(Pod.of(POD), [KubeEvent.of({"reason": "Unhealthy", "message": "Startup probe failed: x"})]) == \
        diagnose_pod(POD, [{"reason": "Unhealthy", "message": "Startup probe failed: x"}])
    assert [d.code for d in diagnose_pod(POD)] == ["crash-loop"]
    pvc = {"metadata": {"name": "ai-model"}, "spec": {"storageClassName": None}}
    assert diagnose_pvc(PersistentVolumeClaim.of(pvc)) == diagnose_pvc(pvc)
    assert "(default)" in diagnose_pvc(pvc)[0].explanation
