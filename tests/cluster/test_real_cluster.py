"""The same flows against a real cluster from KUBECONFIG (skipped otherwise).

Every test works in its own uniquely named, labelled namespace that is deleted in the end, whatever happens.
The image is busybox (override with TKE_PLAYBOOK_TEST_IMAGE, e.g. a mirror reachable from the nodes).
"""

from __future__ import annotations

import os
import uuid

import pytest

from tke_playbook.errors import JobFailedError
from tke_playbook.kube import (Cascade, apply_all, connect, delete, get, list_nodes, list_objects, list_pods,
                               pod_logs, run_preflight, wait_for_job)
from tke_playbook.kube.apply import apply
from tke_playbook.kube.teardown import teardown
from tke_playbook.specs.labels import Component, common_labels, selector

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs a real cluster: set KUBECONFIG")]
IMAGE = os.environ.get("TKE_PLAYBOOK_TEST_IMAGE", "busybox:1.36")


@pytest.fixture(scope="module")
def kube():
    with connect() as connection:
        yield connection


@pytest.fixture
def namespace(kube):
    name = f"tke-playbook-test-{uuid.uuid4().hex[:8]}"
    ns = {"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": name, "labels": common_labels(Component.STORAGE, name)}}
    apply(kube, ns)
    try:
        yield name
    finally:
        delete(kube, ns, Cascade.BACKGROUND)


def _job(name, namespace, command, completions=1):
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": common_labels(Component.DOWNLOAD, name)},
            "spec": {"completions": completions, "parallelism": completions, "completionMode": "Indexed",
                     "backoffLimit": 0, "ttlSecondsAfterFinished": 600, "template": {
                         "metadata": {"labels": common_labels(Component.DOWNLOAD, name)},
                         "spec": {"restartPolicy": "Never", "containers": [
                             {"name": "main", "image": IMAGE, "command": ["sh", "-c", command],
                              "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}}


def test_apply_is_idempotent_and_teardown_finds_it(kube, namespace):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "probe", "namespace": namespace, "labels": common_labels(Component.DOWNLOAD, "probe")},
        "data": {"x": "1"}}
    first, second = apply_all(kube, [cm, dict(cm, data={"x": "2"})])
    assert first["metadata"]["uid"] == second["metadata"]["uid"] and second["data"] == {"x": "2"}
    assert [o["metadata"]["name"] for o in list_objects(kube, "v1", "ConfigMap", namespace, selector())] == ["probe"]
    assert [r.name for r in teardown(kube, namespace)] == ["probe"]
    assert get(kube, cm) is None or get(kube, cm)["metadata"].get("deletionTimestamp")


def test_indexed_job_completes_and_its_logs_are_read(kube, namespace):
    apply(kube, _job("echo", namespace, 'echo "index $JOB_COMPLETION_INDEX done"', completions=2))
    progress = wait_for_job(kube, "echo", namespace, timeout=300)
    assert progress.completed == {0, 1}
    pods = list_pods(kube, namespace, "job-name=echo")
    assert any("done" in pod_logs(kube, pod, 5) for pod in pods)


def test_failing_job_carries_its_log(kube, namespace):
    apply(kube, _job("boom", namespace, "echo 'No space left on device'; exit 3"))
    with pytest.raises(JobFailedError) as exc:
        wait_for_job(kube, "boom", namespace, timeout=300)
    assert "No space left on device" in exc.value.logs
    assert [d.code for d in exc.value.diagnosis][:1] == ["disk-full"]


def test_inventory_and_preflight_answer(kube):
    assert list_nodes(kube)
    report = run_preflight(kube)
    assert report.rows[0].check == "cluster reachable" and report.rows[0].ok
