"""The whole deployment as an ordered list of manifests, as multi-document YAML, and as the chart's values.

Order: StorageClass (when the VPC and subnet are known) → PVC → download worker ConfigMap (when a download plan
is given: it needs the repository listing) → download Job → API-key Secret → Deployment or LeaderWorkerSet →
Service. Cross-spec mistakes (the server reading another PVC than the download writes, different namespaces)
and a model that does not fit the chosen GPU fail here, before anything reaches a cluster.
"""

from __future__ import annotations

import os
import secrets

import yaml

from .errors import FitError, InvalidSpecError
from .serving import ServiceType, ServingSpec, parse_vllm_version
from .serving_manifests import build_secret, build_service, build_workload
from .storage import StorageSpec, build_pvc, build_storage_class
from .vllm_args import build_vllm_args, command_string, split_flags, translate

API_KEY_ENV = "TKE_PLAYBOOK_API_KEY"


def check_consistency(storage: StorageSpec | None, download=None, serving: ServingSpec | None = None) -> None:
    """Raise :class:`InvalidSpecError` when the specs disagree about the PVC, the namespace or the model."""
    if storage is not None:
        if download is not None and download.pvc != storage.pvc_name:
            raise InvalidSpecError(f"The download writes to PVC '{download.pvc}' but the storage spec creates "
                                   f"'{storage.pvc_name}': use the same PVC name", field="pvc", value=download.pvc)
        if serving is not None and serving.pvc_enabled and serving.pvc_name != storage.pvc_name:
            raise InvalidSpecError(f"vLLM reads PVC '{serving.pvc_name}' but the storage spec creates "
                                   f"'{storage.pvc_name}': use the same PVC name", field="pvc_name",
                                   value=serving.pvc_name)
    namespaces = {s.namespace for s in (storage, download, serving) if s is not None}
    if len(namespaces) > 1:
        raise InvalidSpecError(f"The specs use different namespaces {sorted(namespaces)}: a PVC is only visible in "
                               f"its own namespace, so use one", field="namespace", value=sorted(namespaces))
    if download is not None and serving is not None and serving.pvc_enabled:
        if serving.pvc_path != download.model_path:
            raise InvalidSpecError(f"vLLM reads '{serving.pvc_path}' on the PVC but the download writes "
                                   f"'{download.model_path}': serve the downloaded model", field="pvc_path",
                                   value=serving.pvc_path)


def check_serving_fit(serving: ServingSpec):
    """The fit verdict for the spec's GPU (None when no GPU is named); raise :class:`FitError` if it does not fit."""
    if serving.gpu is None:
        return None
    from .fit import check_fit

    verdict = check_fit(serving.model, serving.gpu, serving.max_model_len, serving.gpu_memory_utilization,
                        tensor_parallel=serving.tp_size, max_num_batched_tokens=serving.max_num_batched_tokens)
    if not verdict.fits:
        raise FitError(verdict.recommendation, obj=verdict)
    return verdict


def build_plan(storage: StorageSpec | None, download=None, serving: ServingSpec | None = None, *,
               download_plan=None, api_key: str | None = None, check_fit: bool = True) -> list[dict]:
    """The manifests in apply order. ``api_key`` defaults to ``$TKE_PLAYBOOK_API_KEY``, else a random key
    (read it back with ``kubectl get secret <name> -o jsonpath='{.data.api-key}' | base64 -d``)."""
    check_consistency(storage, download, serving)
    manifests: list[dict] = []
    if storage is not None:
        if storage.creates_storage_class:
            manifests.append(build_storage_class(storage))
        manifests.append(build_pvc(storage))
    if download is not None:
        from .download.manifests import build_download_job, build_worker_configmap

        if download_plan is not None:
            manifests.append(build_worker_configmap(download, download_plan))
        manifests.append(build_download_job(download, download_plan))
    if serving is not None:
        if check_fit:
            check_serving_fit(serving)
        if serving.api_key_required:
            manifests.append(build_secret(serving, api_key or os.environ.get(API_KEY_ENV) or
                                          secrets.token_urlsafe(24)))
        manifests.append(build_workload(serving))
        if serving.service_enabled:
            manifests.append(build_service(serving))
    return manifests


def plan_notes(storage: StorageSpec | None, download=None, serving: ServingSpec | None = None, *,
               download_plan=None) -> list[str]:
    """Plain sentences about what the plan assumes or changed."""
    notes = []
    if storage is not None and not storage.creates_storage_class:
        notes.append(f"StorageClass '{storage.storage_class}' is not rendered (no vpc_id/subnet_id): create it in the "
                     f"TKE console (file storage CFS, in the GPU node's zone) or pass --vpc-id and --subnet-id")
    if download is not None and download_plan is None:
        notes.append(f"ConfigMap '{download.configmap_name}' (the download worker and its shard plan) is NOT "
                     f"rendered: it needs the repository's file listing from the hub. Until it exists the Job's pods "
                     f"stop at once with a message naming it. Render with --list-files (asks the hub; "
                     f"{download.source.endpoint_env} points at a mirror) or let the notebook/workflow apply it")
    if download is not None:
        from .download.manifests import HTTPX_REQUIREMENT

        index = download.pip_index_url or "PyPI"
        notes.append(f"download pods run 'pip install {HTTPX_REQUIREMENT}' from {index} at start (image "
                     f"{download.image}): the download nodes need a route to it - set pip_index_url "
                     f"(--pip-index-url) to a reachable mirror, or the pods fail saying so")
    if serving is not None:
        _, changes = build_vllm_args(serving, with_notes=True)
        notes += [f"vLLM {serving.vllm_version}: {c}" for c in changes]
        if serving.api_key_required:
            notes.append(f"the API key lives in Secret '{serving.api_key_secret}' (key 'api-key'); vLLM reads it "
                         f"from env VLLM_API_KEY through secretKeyRef")
        verdict = check_serving_fit(serving) if serving.gpu else None
        if verdict is not None:
            notes.append(verdict.summary())
    return notes


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


REDACTED = "<redacted>"


def redact_secrets(manifests: list[dict]) -> list[dict]:
    """Copies of ``manifests`` with every Secret's ``data``/``stringData`` values replaced by ``<redacted>``
    (the inputs are not changed). For showing a plan; apply the unredacted one."""
    out = []
    for manifest in manifests:
        if manifest.get("kind") == "Secret":
            manifest = {**manifest, **{key: {k: REDACTED for k in manifest[key]}
                                       for key in ("data", "stringData") if isinstance(manifest.get(key), dict)}}
        out.append(manifest)
    return out


_redact = redact_secrets


def plan_to_yaml(manifests: list[dict], notes=(), *, redact_secrets: bool = False) -> str:
    """Multi-document YAML (``---`` between objects), keys in builder order; ``notes`` become leading comments.
    ``redact_secrets=True`` shows Secret values as ``<redacted>``: use it for anything displayed or saved
    (notebook outputs, logs); the redacted YAML cannot be applied."""
    if redact_secrets:
        manifests = _redact(manifests)
    head = "".join(f"# {line}\n" for note in notes for line in str(note).splitlines())
    # width: never fold long lines, so the vLLM command reads (and greps) as one line
    docs = [yaml.dump(m, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=2**20) for m in manifests]
    return head + "---\n" + "---\n".join(docs)


def build_helm_values(serving: ServingSpec) -> dict:
    """Values for the tutorial's ``vllm-inference-tke`` chart. The API key stays in the Secret: ``apiKey`` is
    empty and ``server.env`` adds ``VLLM_API_KEY`` from ``secretKeyRef`` (the later env entry wins)."""
    if serving.service_type is ServiceType.LOAD_BALANCER_INTERNAL:
        raise InvalidSpecError("The vllm-inference-tke chart cannot make an internal LoadBalancer (it sets no Service "
                               "annotations): render the toolkit's manifests instead, or use 'ClusterIP'",
                               field="service_type", value=serving.service_type.value)
    version = parse_vllm_version(serving.vllm_version)
    argv = build_vllm_args(serving)
    start = argv.index("--max-num-seqs") + 2
    end = len(argv) - 4  # --host 0.0.0.0 --port 60000
    groups = [g for g in split_flags([command_string(argv[start:end])]) if g != ["--enable-expert-parallel"]]
    groups, _ = translate(groups, version)  # already translated: a no-op that re-checks
    env = [{"name": k, "value": v} for k, v in serving.env]
    if serving.api_key_required:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": serving.api_key_secret,
                                                                           "key": "api-key"}}})
    values = {
        "model": {"name": serving.served_model_name,
                  "pvc": {"enabled": serving.pvc_enabled, "name": serving.pvc_name, "path": serving.pvc_path},
                  "local": {"enabled": serving.local_enabled, "path": serving.local_path}},
        "server": {
            "replicas": serving.replicas, "lwsGroupSize": serving.lws_group_size, "image": serving.image,
            "imagePullPolicy": serving.image_pull_policy.value, "apiKey": "",
            "resources": {"requests": {"nvidia.com/gpu": serving.gpu_count},
                          "limits": {"nvidia.com/gpu": serving.gpu_count}},
            "args": {"tpSize": serving.tp_size, "ppSize": serving.pp_size, "epEnabled": serving.ep_enabled,
                     "maxModelLen": serving.max_model_len, "maxBatchSize": serving.max_batch_size},
            "extraArgs": [command_string(g) for g in groups],
            "env": env,
            "service": {"enabled": serving.service_enabled, "type": serving.service_type.kubernetes_type,
                        "port": serving.service_port},
        },
        "labels": dict(serving.labels),
        "podAnnotations": dict(serving.pod_annotations),
    }
    if serving.node_instance_types:
        values["instanceType"] = list(serving.node_instance_types)
    return values
