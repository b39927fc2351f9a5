"""Kubernetes objects for a cluster download: the Indexed Job, the worker ConfigMap and the hub-token Secret.

Pure builders returning plain dicts. The Job runs the library's own worker source (shipped in a ConfigMap, not
baked into an image) in a plain Python image; each pod downloads the shard of its ``JOB_COMPLETION_INDEX``.
Pods carry labels their pod anti-affinity really selects, so the scheduler spreads them one per node.

Network needs of a pod, besides the hub: the plain image (``python:3.11-slim``) has no httpx, so each pod runs
``pip install 'httpx>=0.27,<1'`` when it starts - from PyPI, or from ``DownloadSpec.pip_index_url`` (a PyPI
mirror reachable from the download nodes, e.g. Tencent Cloud's). An image that already has httpx skips the
install. When pip cannot reach its index the pod stops within a minute or two (2 retries, 20 s timeout)
with a message saying so and exit status 2; the Job carries the same fact in its
``tke-playbook.io/pip-install`` annotation. The worker ConfigMap is mounted as optional: a pod started
before the ConfigMap exists stops at once with a message naming it, instead of waiting in ContainerCreating.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..labels import COMPONENT, INSTANCE, Component, common_labels
from ..names import validate_subdomain
from .spec import TOKEN_SECRET, TOKEN_SECRET_KEY, DownloadSpec
from .tokens import TOKEN_ENV_IN_POD, reveal

WORKER_DIR = "/opt/tke-playbook"
DATA_DIR = "/data"
PLAN_KEY = "plan.json"
HTTPX_REQUIREMENT = "httpx>=0.27,<1"
_PACKAGE = Path(__file__).resolve().parent
# ConfigMap key -> the library file shipped to the pods (stdlib + httpx only).
WORKER_FILES = {"worker.py": _PACKAGE / "worker.py", "transfer.py": _PACKAGE / "transfer.py",
                "progress.py": _PACKAGE / "progress.py",
                "modelfolder.py": _PACKAGE.parent / "modelfolder.py"}


def _labels(spec: DownloadSpec) -> dict[str, str]:
    return common_labels(Component.DOWNLOAD, spec.job_name, spec.model)


PIP_EXIT = 2     # the pod's exit status when httpx cannot be installed
PLAN_EXIT = 2    # ... and when the worker ConfigMap is missing


def pip_source(spec: DownloadSpec) -> str:
    """Where download pods pip-install httpx from, in words."""
    return spec.pip_index_url or "PyPI (https://pypi.org/simple)"


def worker_command(spec: DownloadSpec) -> list[str]:
    """Check the ConfigMap is mounted, install httpx into the plain image unless it has it (bounded retries and
    timeout, a clear message when the index is out of reach), then run the shipped worker on this pod's shard."""
    index = f" --index-url {shlex.quote(spec.pip_index_url)}" if spec.pip_index_url else ""
    plan = f"{WORKER_DIR}/{PLAN_KEY}"
    script = (
        f"if [ ! -f {plan} ]; then echo \"tke-playbook: {plan} is missing: apply ConfigMap '{spec.configmap_name}' "
        f"(the download worker and its shard plan) in namespace '{spec.namespace}' before the Job\" >&2; "
        f"exit {PLAN_EXIT}; fi; "
        f"if ! python -c 'import httpx' 2>/dev/null; then "
        f"python -m pip install --quiet --no-cache-dir --disable-pip-version-check --retries 2 --timeout 20{index} "
        f"'{HTTPX_REQUIREMENT}' || {{ echo \"tke-playbook: could not pip install {HTTPX_REQUIREMENT} from "
        f"{pip_source(spec)}: the download node needs a route to it. Set pip_index_url to a PyPI mirror the node "
        f"can reach, or use an image that has httpx\" >&2; exit {PIP_EXIT}; }}; fi; "
        f"exec python {WORKER_DIR}/worker.py --plan {plan} --root {DATA_DIR}")
    return ["sh", "-c", script]


def build_worker_configmap(spec: DownloadSpec, plan) -> dict:
    """The worker's source, read from the library's own files, and the plan as JSON."""
    data = {key: path.read_text(encoding="utf-8") for key, path in WORKER_FILES.items()}
    data[PLAN_KEY] = plan.to_json() if hasattr(plan, "to_json") else str(plan)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": spec.configmap_name, "namespace": spec.namespace, "labels": _labels(spec)},
            "data": data}


def _affinity(spec: DownloadSpec) -> dict:
    term = {"labelSelector": {"matchLabels": {COMPONENT: Component.DOWNLOAD, INSTANCE: spec.job_name}},
            "topologyKey": "kubernetes.io/hostname"}
    if spec.require_spread:
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": term}]}}


def _annotations(spec: DownloadSpec, plan) -> dict[str, str]:
    notes = {"tke-playbook.io/pip-install": f"pods pip-install {HTTPX_REQUIREMENT} from {pip_source(spec)} at start "
                                           f"unless the image has httpx",
             "tke-playbook.io/worker-configmap": spec.configmap_name}
    if plan is not None:
        notes["tke-playbook.io/plan-id"] = plan.plan_id
    return notes


def build_download_job(spec: DownloadSpec, plan=None) -> dict:
    """The batch/v1 Indexed Job: ``completions`` shards, ``parallelism`` pods at a time, one pod per node."""
    if plan is not None and len(plan.shards) != spec.completions:
        from ..errors import InvalidSpecError

        raise InvalidSpecError(f"The plan has {len(plan.shards)} shards but the spec asks for {spec.completions} "
                               f"completions: build the plan from this spec", field="completions",
                               value=spec.completions)
    env = [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "PIP_ROOT_USER_ACTION", "value": "ignore"}]
    if spec.endpoint:
        env.append({"name": spec.source.endpoint_env, "value": spec.endpoint})
    if spec.token_secret:
        env.append({"name": TOKEN_ENV_IN_POD, "valueFrom": {"secretKeyRef": {
            "name": spec.token_secret, "key": TOKEN_SECRET_KEY, "optional": True}}})
    pod_spec = {
        "restartPolicy": "Never",
        "affinity": _affinity(spec),
        "containers": [{
            "name": "worker", "image": spec.image, "imagePullPolicy": "IfNotPresent",
            "command": worker_command(spec), "env": env,
            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
            "volumeMounts": [{"name": "model-store", "mountPath": DATA_DIR},
                             {"name": "worker", "mountPath": WORKER_DIR, "readOnly": True}],
        }],
        "volumes": [{"name": "model-store", "persistentVolumeClaim": {"claimName": spec.pvc}},
                    {"name": "worker", "configMap": {"name": spec.configmap_name, "optional": True}}],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = spec.node_selector_dict
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
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def build_token_secret(token, *, name: str = TOKEN_SECRET, namespace: str = "default",
                       spec: DownloadSpec | None = None) -> dict:
    """The Secret holding a hub token under key ``token`` (give a HubToken or str; it is never printed)."""
    value = reveal(token)
    if not value:
        from ..errors import InvalidSpecError

        raise InvalidSpecError("The hub token is empty: set HF_TOKEN or MODELSCOPE_API_TOKEN, or pass the token",
                               field="token", value=None)
    if spec is not None:
        name, namespace = spec.token_secret or name, spec.namespace
    validate_subdomain(name, "token Secret name")
    labels = _labels(spec) if spec is not None else common_labels(Component.DOWNLOAD, name)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "stringData": {TOKEN_SECRET_KEY: value}}


def build_download_objects(spec: DownloadSpec, plan, token=None) -> list[dict]:
    """Everything a cluster download applies, in order: the token Secret (when a token is given), the worker
    ConfigMap, the Job."""
    objects = [build_token_secret(token, spec=spec)] if reveal(token) and spec.token_secret else []
    return objects + [build_worker_configmap(spec, plan), build_download_job(spec, plan)]
