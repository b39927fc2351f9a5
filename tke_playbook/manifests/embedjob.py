"""Kubernetes objects for bulk embedding: the Indexed Job and its ConfigMap.

The pods run the toolkit's own standard-library worker (:mod:`tke_playbook.podworker.embedworker`, shipped in the
ConfigMap with the plan) on the stock Python image and install nothing; each reads its chunk shard from the PVC,
sends it to the deployed Service and writes ``.npy`` shards and records back to the PVC; the last one verifies
them all and writes the manifest. A failed or killed pod is replaced (``backoffLimitPerIndex``) and resumes from
the rows its predecessor synced. Pure builders: no I/O.
"""

from __future__ import annotations

import json

from ..errors import InvalidSpecError
from ..podworker import embedworker
from ..podworker.shipped import DOWNLOAD_FILES, EMBED_WORKER, shipped_files
from ..specs.embedjob import COMPONENT, EmbedJobSpec
from ..specs.labels import common_labels
from ..specs.serving import API_KEY_SECRET_KEY
from .download import DATA_DIR, WORKER_DIR

PLAN_KEY = "embed-plan.json"
WORKER = EMBED_WORKER


def worker_files(plan: dict) -> dict[str, str]:
    """What the ConfigMap carries (and the local target lays out): the worker's files and the plan."""
    files = shipped_files((*DOWNLOAD_FILES, WORKER))
    files[PLAN_KEY] = json.dumps(plan, indent=1)
    return files


def _labels(spec: EmbedJobSpec) -> dict[str, str]:
    return common_labels(COMPONENT, spec.name, spec.model)


def check_plan_fits(spec: EmbedJobSpec, plan: dict) -> None:
    if len(plan["shards"]) != spec.shards:
        raise InvalidSpecError(f"the plan has {len(plan['shards'])} shards but the Job {spec.shards} indexes: stage "
                               f"the corpus with shards={spec.shards}", field="shards", value=len(plan["shards"]))
    if plan["model"] != spec.model or plan["endpoint"] != spec.endpoint.rstrip("/"):
        raise InvalidSpecError(f"the plan embeds with {plan['model']} at {plan['endpoint']}, the Job is for "
                               f"{spec.model} at {spec.endpoint}: make the plan for this endpoint", field="model",
                               value=plan["model"])


def build_embed_configmap(spec: EmbedJobSpec, plan: dict) -> dict:
    check_plan_fits(spec, plan)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": _labels(spec)},
            "data": worker_files(plan)}


def _env(spec: EmbedJobSpec) -> list[dict]:
    env = [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    if spec.api_key_secret:
        env.append({"name": embedworker.API_KEY_ENV, "valueFrom": {"secretKeyRef": {
            "name": spec.api_key_secret, "key": API_KEY_SECRET_KEY, "optional": False}}})
    return env


def _pod_spec(spec: EmbedJobSpec) -> dict:
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "worker", "image": spec.image, "imagePullPolicy": "IfNotPresent",
            "command": ["python", f"{WORKER_DIR}/{WORKER}", "--plan", f"{WORKER_DIR}/{PLAN_KEY}", "--root", DATA_DIR],
            "env": _env(spec),
            "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}},
            "volumeMounts": [{"name": "corpus", "mountPath": DATA_DIR},
                             {"name": "worker", "mountPath": WORKER_DIR, "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "corpus", "persistentVolumeClaim": {"claimName": spec.pvc}},
                    {"name": "worker", "configMap": {"name": spec.name}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }


def build_embed_job(spec: EmbedJobSpec, plan: dict) -> dict:
    """The batch/v1 Indexed Job: one index per chunk shard, ``parallelism`` pods at a time."""
    check_plan_fits(spec, plan)
    labels = _labels(spec)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels,
                     "annotations": {"tke-playbook.io/corpus": plan["corpus"], "tke-playbook.io/output": plan["output"],
                                     "tke-playbook.io/plan-key": plan["key"]}},
        "spec": {
            "completionMode": "Indexed", "completions": spec.shards, "parallelism": spec.parallelism,
            "backoffLimitPerIndex": spec.backoff_limit_per_index,
            "backoffLimit": spec.backoff_limit_per_index * spec.shards,
            "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": dict(labels)}, "spec": _pod_spec(spec)},
        },
    }


def build_embed_objects(spec: EmbedJobSpec, plan: dict) -> list[dict]:
    """What a cluster run applies, in order: the ConfigMap (worker and plan), then the Job."""
    return [build_embed_configmap(spec, plan), build_embed_job(spec, plan)]
