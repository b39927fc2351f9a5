"""Kubernetes objects for a cluster download: the Indexed Job, the worker ConfigMap and the hub-token Secret.

Pure builders returning plain dicts. The Job runs the library's own worker source (shipped in the ConfigMap, not
baked into an image) in a plain Python image that needs nothing else: the worker is standard library only, so
pods install nothing and reach only the hub. The ConfigMap is always part of a plan: it carries the request
(model, repository, revision, include/exclude, shards, mode) and, when the plan was made with the hub's listing,
the plan itself. Without the listing (``render`` without hub access) the pods list the hub themselves; the first
one pins its listing for the Job run (keyed by the Job's uid from the downward API), so every index computes the
same byte-balanced plan. Pods carry labels their anti-affinity really selects, so the scheduler spreads them one
per node. They run without a service-account token, without privilege escalation and with every capability
dropped; the image's user (root in python:3.11-slim) keeps write access to a fresh CFS volume - set
``run_as_user`` when the PVC is writable by another uid.
"""

from __future__ import annotations

import json

from ..errors import InvalidSpecError
from ..podworker.planner import DownloadPlan, require_plan_for, request_of
from ..podworker.shipped import shipped_files
from ..specs.download import TOKEN_SECRET, TOKEN_SECRET_KEY, DownloadSpec
from ..specs.labels import COMPONENT, INSTANCE, Component, common_labels
from ..specs.names import validate_subdomain
from ..specs.tokens import TOKEN_ENV_IN_POD, reveal

WORKER_DIR = "/opt/tke-playbook"
DATA_DIR = "/data"
PLAN_KEY = "plan.json"
RUN_ID_LABEL = "batch.kubernetes.io/controller-uid"
# Kept for plan.py's notes until its owner drops them: pods install nothing any more.
HTTPX_REQUIREMENT = "nothing (the download worker is standard library only)"
PIP_EXIT = PLAN_EXIT = 2


def _labels(spec: DownloadSpec) -> dict[str, str]:
    return common_labels(Component.DOWNLOAD, spec.job_name, spec.model)


def plan_document(spec: DownloadSpec, plan: DownloadPlan | None = None) -> dict:
    """What ``plan.json`` holds: the spec's request and, when made with the listing, the plan."""
    if plan is not None:
        require_plan_for(spec, plan)
    return {"format": 2, "request": request_of(spec), "plan": plan.to_dict() if plan is not None else None}


def build_worker_configmap(spec: DownloadSpec, plan: DownloadPlan | None = None) -> dict:
    """The worker's source (:mod:`tke_playbook.podworker`'s own files, one ConfigMap key each) and the plan document
    as JSON."""
    data = shipped_files()
    data[PLAN_KEY] = json.dumps(plan_document(spec, plan), indent=1)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": spec.configmap_name, "namespace": spec.namespace, "labels": _labels(spec)},
            "data": data}


def worker_command(spec: DownloadSpec) -> list[str]:
    """Run the shipped worker on this pod's shard (``JOB_COMPLETION_INDEX``)."""
    return ["python", f"{WORKER_DIR}/worker.py", "--plan", f"{WORKER_DIR}/{PLAN_KEY}", "--root", DATA_DIR]


def _affinity(spec: DownloadSpec) -> dict:
    term = {"labelSelector": {"matchLabels": {COMPONENT: Component.DOWNLOAD, INSTANCE: spec.job_name}},
            "topologyKey": "kubernetes.io/hostname"}
    if spec.require_spread:
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": term}]}}


def _annotations(spec: DownloadSpec, plan: DownloadPlan | None) -> dict[str, str]:
    notes = {"tke-playbook.io/worker-configmap": spec.configmap_name,
             "tke-playbook.io/listing": "in the ConfigMap's plan" if plan is not None else
             f"listed by the pods at run time ({spec.source.value} {spec.repo_id} at '{spec.revision}')"}
    if plan is not None:
        notes["tke-playbook.io/plan-id"] = plan.plan_id
    return notes


def _env(spec: DownloadSpec) -> list[dict]:
    env = [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
           {"name": "TKE_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{RUN_ID_LABEL}']"}}}]
    if spec.endpoint:
        env.append({"name": spec.source.endpoint_env, "value": spec.endpoint})
    if spec.token_secret:
        env.append({"name": TOKEN_ENV_IN_POD, "valueFrom": {"secretKeyRef": {
            "name": spec.token_secret, "key": TOKEN_SECRET_KEY, "optional": True}}})
    return env


def _security(spec: DownloadSpec) -> tuple[dict, dict]:
    """(pod securityContext, container securityContext)."""
    pod = {"seccompProfile": {"type": "RuntimeDefault"}}
    if spec.run_as_user is not None:
        pod.update({"runAsUser": spec.run_as_user, "runAsGroup": spec.run_as_user,
                    "runAsNonRoot": spec.run_as_user != 0})
    container = {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                 "capabilities": {"drop": ["ALL"]}}
    return pod, container


def _pod_spec(spec: DownloadSpec) -> dict:
    pod_security, container_security = _security(spec)
    pod_spec = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "affinity": _affinity(spec),
        "containers": [{
            "name": "worker", "image": spec.image, "imagePullPolicy": "IfNotPresent",
            "command": worker_command(spec), "env": _env(spec), "securityContext": container_security,
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "volumeMounts": [{"name": "model-store", "mountPath": DATA_DIR},
                             {"name": "worker", "mountPath": WORKER_DIR, "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "model-store", "persistentVolumeClaim": {"claimName": spec.pvc}},
                    {"name": "worker", "configMap": {"name": spec.configmap_name}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = spec.node_selector_dict
    return pod_spec


def build_download_job(spec: DownloadSpec, plan: DownloadPlan | None = None) -> dict:
    """The batch/v1 Indexed Job: ``completions`` shards, ``parallelism`` pods at a time, one pod per node."""
    if plan is not None:
        require_plan_for(spec, plan)
    labels = _labels(spec)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": spec.job_name, "namespace": spec.namespace, "labels": labels,
                     "annotations": _annotations(spec, plan)},
        "spec": {
            "completionMode": "Indexed", "completions": spec.completions, "parallelism": spec.parallelism,
            "backoffLimitPerIndex": spec.backoff_limit_per_index,
            # what Kubernetes 1.28 (per-index limit behind a feature gate there) applies to the whole Job instead
            "backoffLimit": spec.backoff_limit_per_index * spec.completions,
            "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": dict(labels)}, "spec": _pod_spec(spec)},
        },
    }


def build_token_secret(token, *, name: str = TOKEN_SECRET, namespace: str = "default",
                       spec: DownloadSpec | None = None) -> dict:
    """The Secret holding a hub token under key ``token`` (give a HubToken or str; it is never printed)."""
    value = reveal(token)
    if not value:
        raise InvalidSpecError("The hub token is empty: set HF_TOKEN or MODELSCOPE_API_TOKEN, or pass the token",
                               field="token", value=None)
    if spec is not None:
        name, namespace = spec.token_secret or name, spec.namespace
    validate_subdomain(name, "token Secret name")
    labels = _labels(spec) if spec is not None else common_labels(Component.DOWNLOAD, name)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "stringData": {TOKEN_SECRET_KEY: value}}


def build_download_objects(spec: DownloadSpec, plan=None, token=None) -> list[dict]:
    """Everything a cluster download applies, in order: the token Secret (when a token is given), the worker
    ConfigMap, the Job. Without ``plan`` the pods list the hub themselves."""
    objects = [build_token_secret(token, spec=spec)] if reveal(token) and spec.token_secret else []
    return objects + [build_worker_configmap(spec, plan), build_download_job(spec, plan)]
