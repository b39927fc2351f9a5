"""The whole deployment as an ordered list of manifests, as multi-document YAML, and as the chart's values.

Order: StorageClass (when the VPC, subnet and zone are known) → PVC → download worker ConfigMap → download Job →
API-key Secret → auth-proxy ConfigMap (public LoadBalancer) → Deployment or LeaderWorkerSet → Service.
Cross-spec mistakes (the server reading another PVC than the download writes, different namespaces), a model that
does not fit the chosen GPU and a pod referring to a ConfigMap, Secret or PVC that neither the plan creates nor the
user named as pre-existing fail here, before anything reaches a cluster.
"""

from __future__ import annotations

from ..errors import FitError, InvalidSpecError
from ..podworker.planner import DownloadPlan
from ..specs import fit
from ..specs.apikeys import check_api_key
from ..specs.download import DownloadSpec
from ..specs.serving import API_KEY_SECRET_KEY, ServiceType, ServingSpec, version_from_image
from ..specs.storage import StorageSpec
from ..specs.vllm_args import build_vllm_args
from ..specs.vllm_flags import command_string, parse_vllm_version, split_flags, translate
from .download import build_download_job, build_worker_configmap
from .scaleout import ScaleOutSpec, add_scale_out
from .serving import NCCL_ENV, build_serving_objects
from .storage import build_pvc, build_storage_class


def check_consistency(storage: StorageSpec | None, download: DownloadSpec | None = None, serving: ServingSpec | None = None) -> None:
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
    verdict = fit.check_fit(serving.model, serving.gpu, serving.max_model_len, serving.gpu_memory_utilization,
                        tensor_parallel=serving.tp_size, max_num_batched_tokens=serving.max_num_batched_tokens)
    if not verdict.fits:
        raise FitError(verdict.recommendation, obj=verdict)
    return verdict


def build_plan(storage: StorageSpec | None, download: DownloadSpec | None = None,
               serving: ServingSpec | None = None, *, download_plan: DownloadPlan | None = None,
               api_key: str | None = None, check_fit: bool = True,
               pre_existing=(), scale_out: ScaleOutSpec | None = None, key_salt: bytes | None = None) -> list[dict]:
    """The manifests in apply order. ``api_key`` is what the API-key Secret holds when the serving spec requires
    a key (read it back with ``kubectl get secret <name> -o jsonpath='{.data.api-key}' | base64 -d``); the caller
    chooses it - ``tke-playbook render`` takes ``$TKE_PLAYBOOK_API_KEY``, else draws one
    (:func:`tke_playbook.hostenv.generate_api_key`) - and it must follow ``specs.apikeys.API_KEY_RULE``.
    ``key_salt``: the secret salt of the pods' key-revision annotation (``hostenv.annotation_salt``; see
    ``manifests.serving.build_serving_objects``).
    ``pre_existing``: objects the pods may use that the plan does not create (``"Secret/name"`` or
    ``("Secret", "name")``); without ``storage`` the PVC counts as pre-existing. ``scale_out`` (a
    ``tke_playbook.scaleout.ScaleOutSpec``) adds an autoscaler; with more than one replica the plan also gets a
    PodDisruptionBudget and a topology spread (``tke_playbook.scaleout.add_scale_out``)."""
    check_consistency(storage, download, serving)
    manifests: list[dict] = []
    if storage is not None:
        if storage.creates_storage_class:
            manifests.append(build_storage_class(storage))
        manifests.append(build_pvc(storage))
    if download is not None:
        manifests.append(build_worker_configmap(download, download_plan))
        manifests.append(build_download_job(download, download_plan))
    if serving is not None:
        manifests += _serving_objects(serving, api_key, check_fit, key_salt)
        if scale_out is not None or serving.replicas > 1:
            manifests = add_scale_out(manifests, serving, scale_out)
    implied = [] if storage is not None else [("PersistentVolumeClaim", p) for p in (
        getattr(download, "pvc", None), serving.pvc_name if serving is not None and serving.pvc_enabled else None) if p]
    check_references(manifests, [*_pairs(pre_existing), *implied])
    return manifests


def _serving_objects(serving: ServingSpec, api_key: str | None, check_fit: bool, key_salt: bytes | None) -> list[dict]:
    if check_fit:
        check_serving_fit(serving)
    if serving.api_key_required and not api_key:
        raise InvalidSpecError(f"The plan needs the API key for Secret '{serving.api_key_secret}': pass api_key "
                               f"(tke-playbook render takes $TKE_PLAYBOOK_API_KEY, else draws one), or serve "
                               f"without a key", field="api_key", value=None)
    key = check_api_key(api_key) if serving.api_key_required else None
    return build_serving_objects(serving, key, key_salt)


def _pairs(pre_existing) -> list[tuple[str, str]]:
    pairs = []
    for item in pre_existing:
        kind, _, name = item.partition("/") if isinstance(item, str) else (item[0], "/", item[1])
        if kind not in REFERABLE or not name:
            raise InvalidSpecError(f"pre-existing object {item!r} must be written like 'Secret/hub-token' (kinds: "
                                   f"{', '.join(REFERABLE)})", field="pre_existing", value=item)
        pairs.append((kind, name))
    return pairs


REFERABLE = ("ConfigMap", "Secret", "PersistentVolumeClaim")


def pod_specs(manifest: dict) -> list[dict]:
    """The pod specs inside a workload manifest (Deployment, Job, StatefulSet, DaemonSet, LeaderWorkerSet, Pod)."""
    spec = manifest.get("spec") or {}
    if manifest.get("kind") == "Pod":
        return [spec]
    if manifest.get("kind") == "LeaderWorkerSet":
        lwt = spec.get("leaderWorkerTemplate") or {}
        return [t["spec"] for t in (lwt.get("leaderTemplate"), lwt.get("workerTemplate")) if t and "spec" in t]
    template = spec.get("template") or {}
    return [template["spec"]] if "spec" in template else []


def _volume_refs(volume: dict):
    if volume.get("configMap", {}).get("optional") is not True and "configMap" in volume:
        yield "ConfigMap", volume["configMap"]["name"]
    if volume.get("secret", {}).get("optional") is not True and "secret" in volume:
        yield "Secret", volume["secret"]["secretName"]
    if "persistentVolumeClaim" in volume:
        yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for source in volume.get("projected", {}).get("sources", ()):
        for key, kind in (("configMap", "ConfigMap"), ("secret", "Secret")):
            if key in source and source[key].get("optional") is not True:
                yield kind, source[key]["name"]


def _container_refs(container: dict):
    for env in container.get("env", ()):
        for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
            ref = (env.get("valueFrom") or {}).get(key)
            if ref and ref.get("optional") is not True:
                yield kind, ref["name"]
    for source in container.get("envFrom", ()):
        for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
            if key in source and source[key].get("optional") is not True:
                yield kind, source[key]["name"]


def references(manifest: dict) -> set[tuple[str, str]]:
    """The (kind, name) of every ConfigMap, Secret and PVC the manifest's pods need (optional ones left out)."""
    refs = set()
    for pod in pod_specs(manifest):
        for volume in pod.get("volumes", ()):
            refs.update(_volume_refs(volume))
        for container in (*pod.get("initContainers", ()), *pod.get("containers", ())):
            refs.update(_container_refs(container))
        refs.update(("Secret", s["name"]) for s in pod.get("imagePullSecrets", ()))
    return refs


def check_references(manifests: list[dict], pre_existing=()) -> None:
    """Raise :class:`InvalidSpecError` when a pod refers to a ConfigMap, Secret or PVC that the plan does not
    create and ``pre_existing`` (pairs ``(kind, name)``) does not name."""
    present = {(m.get("kind"), m.get("metadata", {}).get("name")) for m in manifests} | set(_pairs(pre_existing))
    for manifest in manifests:
        missing = sorted(references(manifest) - present)
        if missing:
            kind, name = missing[0]
            raise InvalidSpecError(f"{manifest['kind']}/{manifest['metadata']['name']} needs {kind} '{name}', which "
                                   f"the plan does not create: add it to the plan, or create it first and name it "
                                   f"as pre-existing ('{kind}/{name}')", field="pre_existing", value=missing)


def plan_notes(storage: StorageSpec | None, download: DownloadSpec | None = None,
               serving: ServingSpec | None = None, *, download_plan: DownloadPlan | None = None) -> list[str]:
    """Plain sentences about what the plan assumes or changed."""
    notes = []
    if storage is not None and not storage.creates_storage_class:
        notes.append(f"StorageClass '{storage.storage_class}' is not rendered (no vpc_id/subnet_id/zone): create it in "
                     f"the TKE console (file storage CFS, in the GPU node's zone) or pass --vpc-id, --subnet-id and "
                     f"--zone")
    if storage is not None and storage.creates_storage_class:
        notes.append(f"StorageClass '{storage.storage_class}': CFS in zone {storage.zone}, VPC {storage.vpc_id}, "
                     f"subnet {storage.subnet_id} (the subnet must be in that zone, as the GPU node), NFS v3")
    if serving is not None:
        notes += serving_notes(serving)
    return notes


def serving_notes(serving: ServingSpec) -> list[str]:
    """What the serving objects assume: flag translations, the key, exposure, security, resources."""
    _, changes = build_vllm_args(serving, with_notes=True)
    notes = [f"vLLM {serving.vllm_version}: {c}" for c in changes]
    image_version = version_from_image(serving.image)
    if image_version is not None and image_version != serving.vllm_version:
        notes.append(f"the command line is built for vLLM {serving.vllm_version} but image '{serving.image}' says "
                     f"{image_version}: set --image to a {serving.vllm_version} image")
    if serving.api_key_required:
        notes.append(f"the API key lives in Secret '{serving.api_key_secret}' (key 'api-key'); vLLM reads it "
                     f"from env VLLM_API_KEY through secretKeyRef")
    notes += _exposure_notes(serving)
    notes.append(_security_note(serving))
    notes.append(f"each vLLM pod requests {serving.cpu_request} CPU and {serving.memory_request} memory (weights "
                 f"through the page cache + 8 GiB; /dev/shm is a {serving.shm_size} memory volume on top when used)")
    verdict = check_serving_fit(serving) if serving.gpu else None
    if verdict is not None:
        notes.append(verdict.summary())
    return notes


def _exposure_notes(serving: ServingSpec) -> list[str]:
    notes = []
    if serving.uses_auth_proxy:
        notes.append("public LoadBalancer: the Service targets an nginx sidecar that requires 'Authorization: "
                     "Bearer <key>' on every path except /health (vLLM's own key guards only /v1…, leaving /pooling, "
                     "/score, /metrics open); the Service never points at vLLM's port 60000")
    if serving.uses_auth_proxy and serving.is_multi_node:
        notes.append("the LeaderWorkerSet's pods use the host network (for Ray): vLLM's port 60000 and Ray's ports "
                     "are open on the GPU nodes' own addresses, which the Service does not govern - keep them closed "
                     "to the internet in the nodes' security group")
    if serving.service_type is not ServiceType.CLUSTER_IP and not serving.lb_source_ranges:
        notes.append("no lb_source_ranges (--lb-source-range): any address that reaches the load balancer may try "
                     "the API")
    return notes


def _security_note(serving: ServingSpec) -> str:
    if serving.is_multi_node:
        return ("the LeaderWorkerSet keeps the chart's privileged, host-network, host-IPC pods running as root: Ray "
                "and NCCL between nodes need them; no service-account token is mounted")
    return ("vLLM pods: no service-account token, no privilege escalation, all capabilities dropped, seccomp "
            "RuntimeDefault; vLLM runs as the image's user (root): that the vllm-openai image works as non-root is "
            "not established, so the toolkit does not force it")


HELM_KEY_ENV = "TKE_PLAYBOOK_VLLM_API_KEY"  # env the chart's pods read the key from (secretKeyRef)


def chart_limit(serving: ServingSpec) -> tuple[str, dict] | None:
    """What the tutorial's chart cannot express of ``serving``: ``(why, changes)``, where ``changes`` (ServingSpec
    fields) give the nearest deployment the chart can make ({} when there is none), or None when it can."""
    if serving.service_type is ServiceType.LOAD_BALANCER_INTERNAL:
        return ("cannot make an internal LoadBalancer (it sets no Service annotations)",
                {"service_type": ServiceType.CLUSTER_IP, "lb_subnet_id": None, "lb_source_ranges": ()})
    if serving.uses_auth_proxy:
        return ("cannot put the authenticating proxy in front of vLLM, and vLLM's own key leaves /pooling, /score "
                "and /metrics open on a public LoadBalancer", {"service_type": ServiceType.CLUSTER_IP,
                                                                "lb_source_ranges": ()})
    if serving.lb_source_ranges:
        return "cannot set loadBalancerSourceRanges", {"lb_source_ranges": ()}
    clash = sorted({k for k, _ in serving.env} & {k for k, _ in NCCL_ENV}) if serving.is_multi_node else []
    if clash:
        return (f"always writes {', '.join(clash)} for a LeaderWorkerSet, so env would hold them twice (drop them "
                f"from env)", {})
    return None


_CLI_FIX = {ServiceType.LOAD_BALANCER_INTERNAL: "render the toolkit's manifests instead, or use --service-type ClusterIP",
            ServiceType.LOAD_BALANCER: "use --service-type ClusterIP with --helm-values (reach it with kubectl "
                                       "port-forward), or render the toolkit's manifests instead"}


def _chart_cannot(serving: ServingSpec) -> str | None:
    limit = chart_limit(serving)
    if limit is None:
        return None
    fix = _CLI_FIX.get(serving.service_type, "render the toolkit's manifests") if "service_type" in limit[1] else \
        "render the toolkit's manifests"
    return f"The vllm-inference-tke chart {limit[0]}: {fix}"


def _helm_extra_args(serving: ServingSpec) -> list[str]:
    version = parse_vllm_version(serving.vllm_version)
    argv = build_vllm_args(serving)
    start = argv.index("--max-num-seqs") + 2
    end = len(argv) - 4  # --host 0.0.0.0 --port 60000
    groups = [g for g in split_flags([command_string(argv[start:end])]) if g != ["--enable-expert-parallel"]]
    groups, _ = translate(groups, version)  # already translated: a no-op that re-checks
    extra = [command_string(g) for g in groups]
    if serving.api_key_required:  # the chart's bash expands it; bash stops with the message when it is empty
        extra.append(f'--api-key "${{{HELM_KEY_ENV}:?the API key Secret {serving.api_key_secret} is missing}}"')
    return extra


def build_helm_values(serving: ServingSpec) -> dict:
    """Values for the tutorial's ``vllm-inference-tke`` chart. The chart always writes ``VLLM_API_KEY`` from
    ``server.apiKey`` (left empty here, so the key is never in the values): the key reaches vLLM as ``--api-key``
    from env ``TKE_PLAYBOOK_VLLM_API_KEY``, which ``server.env`` takes from the Secret. CPU and memory requests
    go through ``server.resources``. Settings the chart cannot express raise :class:`InvalidSpecError`."""
    problem = _chart_cannot(serving)
    if problem:
        raise InvalidSpecError(problem, field="service_type", value=serving.service_type.value)
    env = [{"name": k, "value": v} for k, v in serving.env]
    if serving.api_key_required:
        env.append({"name": HELM_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": serving.api_key_secret,
                                                                        "key": API_KEY_SECRET_KEY}}})
    gpus = serving.gpu_count
    values = {
        "model": {"name": serving.served_model_name,
                  "pvc": {"enabled": serving.pvc_enabled, "name": serving.pvc_name, "path": serving.pvc_path},
                  "local": {"enabled": serving.local_enabled, "path": serving.local_path}},
        "server": {
            "replicas": serving.replicas, "lwsGroupSize": serving.lws_group_size, "image": serving.image,
            "imagePullPolicy": serving.image_pull_policy.value, "apiKey": "",
            "resources": {"requests": {"nvidia.com/gpu": gpus, "cpu": serving.cpu_request,
                                       "memory": serving.memory_request},
                          "limits": {"nvidia.com/gpu": gpus}},
            "args": {"tpSize": serving.tp_size, "ppSize": serving.pp_size, "epEnabled": serving.ep_enabled,
                     "maxModelLen": serving.max_model_len, "maxBatchSize": serving.max_batch_size},
            "extraArgs": _helm_extra_args(serving),
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


CHART_SHM_SIZE, CHART_STARTUP_S = "15Gi", 3600  # fixed in the chart's templates/server.yaml


def helm_values_notes(serving: ServingSpec) -> list[str]:
    """What installing the chart with these values gives up compared with the toolkit's own manifests."""
    notes = ["the chart's pods do not wait for the download (no init container): install after it has finished",
             "the chart's Deployment uses a rolling update: on a single-GPU node `helm upgrade` leaves the new pod "
             "Pending; scale to 0 first (kubectl scale deploy/<release> --replicas 0) or uninstall and install",
             "the chart sets no GPU toleration, securityContext or automountServiceAccountToken: false"]
    if serving.shm_size != CHART_SHM_SIZE:
        notes.append(f"the chart fixes /dev/shm at {CHART_SHM_SIZE}: shm_size {serving.shm_size} is not applied")
    if serving.startup_timeout_s != CHART_STARTUP_S:
        notes.append(f"the chart fixes the startup probe at {CHART_STARTUP_S} s (360 × 10 s): startup_timeout_s "
                     f"{serving.startup_timeout_s} is not applied")
    if serving.api_key_required:
        notes.insert(0, f"the API key is read from Secret '{serving.api_key_secret}' (env {HELM_KEY_ENV}) and "
                        f"passed as --api-key (visible in the pod's process list); apiKey stays empty. The chart "
                        f"does not create the Secret: kubectl -n {serving.namespace} create secret generic "
                        f"{serving.api_key_secret} --from-literal=api-key=\"$TKE_PLAYBOOK_API_KEY\"")
    return notes
