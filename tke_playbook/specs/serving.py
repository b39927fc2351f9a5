"""What to serve and how: the user's serving choices and the resolved vLLM serving spec (every key of the
tutorial's vllm-inference-tke chart, and more).

Two types. :class:`ServingChoices` is what a person chooses - a form, the command line, a profile, your own code -
with ``None`` for "derive it"; each value is checked on its own when the choices are built. :func:`resolve` turns
choices into a :class:`ServingSpec`: every derived value filled (object names from the model, ``vllm-<slug>``, so
BGE and E5 run side by side; the vLLM version from the image tag; the token budget, CPU and memory requests), the
spec checked as a whole (the GPU layout, the lengths, the exposure, the extra arguments for that vLLM version).
Both are frozen; neither writes to itself. ``spec.replace(...)`` changes the choices a spec was resolved from and
resolves again, so what derives from a changed value is derived again.

The API key never sits in a spec or in a manifest's env: the spec names the Secret holding it
(``vllm-<slug>-api-key``, key ``api-key``). :func:`seed_profile` reproduces the tutorial's values;
:func:`layout_changes` is the one GPU-layout rule (GPUs per pod = tp × pp ÷ nodes) for the form and the CLI.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InvalidSpecError
from .catalog import CAUSAL_LM_EMBEDDERS, TUTORIAL_MODEL, ModelInfo, PoolingMode, get_model, list_models
from .fit import ENCODER_STEP_TOKENS, check_tensor_parallel
from .hardware import MAX_GPUS_PER_NODE, NodeType, get_gpu, get_node_type
from .names import slug, unknown, validate_label, validate_name, validate_port, validate_quantity, validate_subdomain
from .plain import PlainSpec, field_values
from .storage import DEFAULT_PVC
from .vllm_flags import (POOLER_FLAGS, RETRIEVAL_CHECKED_FROM, VERSION_PATTERN, check_extra_args, parse_vllm_version,
                         user_flags)

CONTAINER_PORT = 60000  # the port vLLM listens on in the pod (the chart's); the one owner of 60000
TUTORIAL_IMAGE = "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801"
TUTORIAL_EXTRA_ARGS = ("--disable-log-requests", "--cuda-graph-sizes 1 2 4 8 16 24 32")
LATEST_VLLM_IMAGE = "vllm/vllm-openai:v0.34.0"  # the newest vLLM whose parser was checked (vllm_flags)
PROXY_IMAGE = "nginx:1.28.0-alpine"          # official nginx image, pinned; has envsubst (its templates feature)
PROXY_PORT = 60080                            # the auth proxy in front of vLLM (public LoadBalancer only)
API_KEY_SECRET_KEY = "api-key"
INTERNAL_LB_SUBNET_ANNOTATION = "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_INT32 = 2**31 - 1  # Kubernetes' replicas (Deployment, LeaderWorkerSet) and LWS size are int32
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


class ServiceType(str, enum.Enum):
    """How the Service is reached: in the cluster only, from the VPC, or from the internet."""

    CLUSTER_IP = "ClusterIP"
    LOAD_BALANCER_INTERNAL = "LoadBalancer-internal"  # TKE private CLB in a subnet of the VPC
    LOAD_BALANCER = "LoadBalancer"                    # TKE public CLB: needs an API key

    @property
    def kubernetes_type(self) -> str:
        return "ClusterIP" if self is ServiceType.CLUSTER_IP else "LoadBalancer"


class PullPolicy(str, enum.Enum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


def version_from_image(image: str) -> str | None:
    """The vLLM version in an image tag (``…/vllm-openai:v0.10.1-20250801`` → ``'0.10.1'``), if it has one."""
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = VERSION_PATTERN.match(tag)
    return ".".join(str(p) for p in parse_vllm_version(match.group(0))) if match else None


def _positive(value, what: str, example: int, most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most is not None and value > most):
        allowed = f"from 1 to {most:,}" if most is not None else "of at least 1"
        raise InvalidSpecError(f"{what} {value!r} must be a whole number {allowed}, such as {example}",
                               field=what, value=value)
    return value


def _pairs(value, what: str) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    try:
        return tuple((str(k), str(v)) for k, v in items)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"{what} must be a mapping of names to values", field=what, value=value) from None


def _extra_args(value) -> tuple[str, ...]:
    return tuple(str(a) for a in ([value] if isinstance(value, str) else value))


def _image(value, what: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise InvalidSpecError(f"{what} {value!r} is not an image reference: use e.g. '{example}'", field=what,
                               value=value)
    return value


# --- the checks of each value on its own (choices and resolved spec alike) ---------------------------------

def _check_identity(s) -> None:
    get_model(s.model)
    if s.name is not None:
        validate_name(s.name, "Deployment name")
    if s.api_key_secret is not None:
        validate_subdomain(s.api_key_secret, "API key Secret name")
    _enum(PullPolicy, s.image_pull_policy, "image_pull_policy")
    _enum(ServiceType, s.service_type, "service_type")
    _enum(PoolingMode, s.pooling_mode, "pooling_mode")
    if s.matryoshka is not None and not isinstance(s.matryoshka, bool):
        raise InvalidSpecError(f"matryoshka {s.matryoshka!r} must be True, False or None (as the model card says)",
                               field="matryoshka", value=s.matryoshka)


def _check_collections(s) -> None:
    _extra_args(s.extra_args)
    for what in ("env", "labels", "pod_annotations"):
        _pairs(getattr(s, what), what)
    _instance_types(s.node_instance_types)
    _cidrs(s.lb_source_ranges)


def _check_image(s) -> None:
    _image(s.image, "image", TUTORIAL_IMAGE)
    if s.vllm_version is not None:
        parse_vllm_version(s.vllm_version)


# whole numbers of at least 1: (field, example, most)
_COUNTS = (("gpu_count", 1, None), ("tp_size", 1, None), ("pp_size", 1, None), ("max_model_len", 2048, None),
           ("max_batch_size", 32, None), ("startup_timeout_s", 3600, None), ("model_wait_timeout_s", 7200, None),
           ("replicas", 1, MAX_INT32), ("lws_group_size", 1, MAX_INT32))  # int32 in the Kubernetes API


def _check_counts(s) -> None:
    validate_name(s.namespace, "Namespace")
    validate_name(s.pvc_name, "PVC name")
    for what, example, most in _COUNTS:
        _positive(getattr(s, what), what, example, most)
    if s.max_num_batched_tokens is not None:
        _positive(s.max_num_batched_tokens, "max_num_batched_tokens", 16384)


def _check_values(s) -> None:
    validate_port(s.service_port, "service port")
    if not 0 < s.gpu_memory_utilization <= 1 or isinstance(s.gpu_memory_utilization, bool):
        raise InvalidSpecError(f"gpu_memory_utilization {s.gpu_memory_utilization!r} must be a fraction in "
                               f"(0, 1], such as 0.9", field="gpu_memory_utilization",
                               value=s.gpu_memory_utilization)
    validate_quantity(s.shm_size, "shm_size")
    for what in ("cpu_request", "memory_request"):
        if getattr(s, what) is not None:
            validate_quantity(getattr(s, what), what)
    for key, value in _pairs(s.labels, "labels"):
        validate_label(key, value)
    for key, _ in _pairs(s.pod_annotations, "pod_annotations"):
        validate_label(key, "", what="annotation")


def _check_env_names(s) -> None:
    names = [key for key, _ in _pairs(s.env, "env")]
    for key in names:
        if not _ENV_NAME.fullmatch(key):
            raise InvalidSpecError(f"env name '{key}' is not a valid variable name", field="env", value=key)
    if len(names) != len(set(names)):
        raise InvalidSpecError(f"env names {sorted({n for n in names if names.count(n) > 1})} appear twice: keep "
                               f"one of each (Kubernetes refuses duplicates)", field="env", value=names)


def _check_proxy_and_gpu(s) -> None:
    _image(s.proxy_image, "proxy_image", PROXY_IMAGE)
    if s.gpu is not None:
        get_gpu(s.gpu)


FIELD_CHECKS = (_check_identity, _check_collections, _check_image, _check_counts, _check_values, _check_env_names,
                _check_proxy_and_gpu)


@dataclass(frozen=True)
class ServingChoices(PlainSpec):
    """What a person chooses for a vLLM embedding service: the chart's values and more, ``None`` meaning "derive
    it" (see :func:`resolve`). Each value is checked on its own when the choices are built; :func:`resolve`
    checks them together and fills in what derives."""

    model: str = TUTORIAL_MODEL
    served_model_name: str | None = None   # default: the model id
    pvc_enabled: bool = True
    pvc_name: str = DEFAULT_PVC
    pvc_path: str | None = None            # sub-folder on the PVC; default the model id
    local_enabled: bool = False
    local_path: str | None = None          # hostPath; default /data0/<model id>
    replicas: int = 1
    lws_group_size: int = 1
    image: str = TUTORIAL_IMAGE
    image_pull_policy: PullPolicy | str = PullPolicy.IF_NOT_PRESENT
    api_key_required: bool = True
    api_key_secret: str | None = None      # default vllm-<slug>-api-key
    gpu_count: int = 1                     # nvidia.com/gpu per pod
    tp_size: int = 1
    pp_size: int = 1
    ep_enabled: bool = False
    max_model_len: int = 2048
    max_batch_size: int = 32
    extra_args: tuple[str, ...] | str = TUTORIAL_EXTRA_ARGS
    env: tuple[tuple[str, str], ...] | Mapping[str, str] = (("VLLM_WORKER_MULTIPROC_METHOD", "spawn"),)
    service_enabled: bool = True
    service_type: ServiceType | str = ServiceType.CLUSTER_IP
    service_port: int = CONTAINER_PORT
    lb_subnet_id: str | None = None        # for LoadBalancer-internal
    lb_source_ranges: tuple[str, ...] | str = ()  # CIDRs allowed to reach a LoadBalancer (loadBalancerSourceRanges)
    proxy_image: str = PROXY_IMAGE         # the authenticating reverse proxy of a public LoadBalancer
    labels: tuple[tuple[str, str], ...] | Mapping[str, str] = ()
    pod_annotations: tuple[tuple[str, str], ...] | Mapping[str, str] = ()
    gpu_memory_utilization: float = 0.9
    vllm_version: str | None = None        # default: from the image tag
    max_num_batched_tokens: int | None = None  # default: set for encoder models, vLLM's own for decoders
    namespace: str = "default"
    node_instance_types: tuple[str, ...] | str = ()
    gpu: str | None = None                 # GPU model, for the fit check
    name: str | None = None                # default vllm-<slug>
    shm_size: str = "15Gi"
    startup_timeout_s: int = 3600
    cpu_request: str | None = None         # default: 4 per GPU
    memory_request: str | None = None      # default: the weights plus 8 GiB (see default_memory_request)
    tolerate_gpu_taint: bool = True
    embedding_flag: bool | None = None     # --runner pooling / --task embed; None: only where the model needs it
    wait_for_model: bool = True            # init container waits for the download's completion marker
    model_wait_timeout_s: int = 7200
    pooling_mode: PoolingMode | str = PoolingMode.DENSE  # bge-m3: sparse or multi-vector instead (one per server)
    matryoshka: bool | None = None         # serve `dimensions`; None: where the model is MRL-trained and vLLM checked

    def __post_init__(self):
        for check in FIELD_CHECKS:
            check(self)

    def replace(self, **changes) -> ServingChoices:
        """These choices with ``changes`` applied (what is left ``None`` is derived again on resolution)."""
        return dataclasses.replace(self, **changes)

    def resolve(self) -> ServingSpec:
        """The resolved spec (:func:`resolve`)."""
        return resolve(self)


@dataclass(frozen=True)
class ServingSpec:
    """A vLLM embedding service with every value resolved (build it with :func:`resolve`): the fields of
    :class:`ServingChoices` with nothing left to derive - ``max_num_batched_tokens`` stays None only where vLLM's
    own budget applies (decoder models), ``gpu`` only when no GPU is named (no fit check), ``lb_subnet_id`` only
    for a Service that is not an internal load balancer. Checked as a whole when built; never written to; always
    what its :attr:`choices` resolve to. Change it with :meth:`replace`."""

    model: str
    served_model_name: str
    pvc_enabled: bool
    pvc_name: str
    pvc_path: str
    local_enabled: bool
    local_path: str
    replicas: int
    lws_group_size: int
    image: str
    image_pull_policy: PullPolicy
    api_key_required: bool
    api_key_secret: str
    gpu_count: int
    tp_size: int
    pp_size: int
    ep_enabled: bool
    max_model_len: int
    max_batch_size: int
    extra_args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    service_enabled: bool
    service_type: ServiceType
    service_port: int
    lb_subnet_id: str | None
    lb_source_ranges: tuple[str, ...]
    proxy_image: str
    labels: tuple[tuple[str, str], ...]
    pod_annotations: tuple[tuple[str, str], ...]
    gpu_memory_utilization: float
    vllm_version: str
    max_num_batched_tokens: int | None
    namespace: str
    node_instance_types: tuple[str, ...]
    gpu: str | None
    name: str
    shm_size: str
    startup_timeout_s: int
    cpu_request: str
    memory_request: str
    tolerate_gpu_taint: bool
    embedding_flag: bool
    wait_for_model: bool
    model_wait_timeout_s: int
    pooling_mode: PoolingMode
    matryoshka: bool
    _choices: ServingChoices = field(repr=False, compare=False)  # what it was resolved from (see replace)

    def __post_init__(self):
        for check in FIELD_CHECKS + WHOLE_CHECKS:
            check(self)

    @property
    def choices(self) -> ServingChoices:
        """The choices this spec was resolved from."""
        return self._choices

    @property
    def uses_auth_proxy(self) -> bool:
        """A public LoadBalancer puts an authenticating nginx in front of vLLM: vLLM's own API key guards only
        ``/v1`` (and, in 0.33, ``/v2``, ``/inference``, ``/cohere``), leaving ``/pooling``, ``/score``,
        ``/metrics`` … open."""
        return self.service_type is ServiceType.LOAD_BALANCER

    @property
    def model_info(self):
        return get_model(self.model)

    @property
    def slug(self) -> str:
        return slug(self.model)

    @property
    def is_multi_node(self) -> bool:
        return self.lws_group_size > 1

    @property
    def hf_overrides(self) -> dict:
        """vLLM's ``--hf-overrides`` for this spec ({} = none): what the checkpoint always needs (a Qwen3 reranker),
        the model class of a pooling mode other than dense (bge-m3's BgeM3EmbeddingModel), Matryoshka."""
        info = self.model_info
        overrides = dict(json.loads(info.hf_overrides)) if info.hf_overrides else {}
        if self.pooling_mode is not PoolingMode.DENSE and info.modes_hf_overrides:
            overrides.update(json.loads(info.modes_hf_overrides))
        if self.matryoshka:
            overrides["is_matryoshka"] = True
        return overrides

    def replace(self, **changes) -> ServingSpec:
        """The spec resolved from this one's choices with ``changes`` applied: what derives from a changed value is
        derived again (names from the model, the vLLM version from the image, the API-key Secret from the name,
        the token budget from the length, the requests from the model and the GPUs) unless it was chosen."""
        return resolve(self._choices.replace(**changes))

    def to_dict(self) -> dict:
        """Every resolved value as plain JSON-able data, and under ``choices`` what it was resolved from."""
        return {**field_values(self), "choices": self._choices.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> ServingSpec:
        """The spec :meth:`to_dict` recorded, resolved again from its choices (a record without ``choices``, as
        older versions wrote, counts every value in it as chosen)."""
        return resolve(ServingChoices.from_dict(data.get("choices") or data))

    @classmethod
    def seed(cls) -> ServingSpec:
        return seed_profile()


# --- resolution: what derives, then the checks of the whole ------------------------------------------------

def _names(c: ServingChoices, info: ModelInfo) -> dict:
    name = c.name or f"vllm-{slug(info.hf_id)}"
    return {"model": info.hf_id, "served_model_name": c.served_model_name or info.hf_id,
            "pvc_path": (c.pvc_path or info.hf_id).strip("/"), "local_path": c.local_path or f"/data0/{info.hf_id}",
            "name": name, "api_key_secret": c.api_key_secret or f"{name}-api-key"}


def _normalised(c: ServingChoices, info: ModelInfo) -> dict:
    return {"image_pull_policy": _enum(PullPolicy, c.image_pull_policy, "image_pull_policy"),
            "service_type": _enum(ServiceType, c.service_type, "service_type"),
            "extra_args": _extra_args(c.extra_args), "env": _pairs(c.env, "env"),
            "labels": _pairs(c.labels, "labels"), "pod_annotations": _pairs(c.pod_annotations, "pod_annotations"),
            "node_instance_types": _instance_types(c.node_instance_types),
            "lb_source_ranges": _cidrs(c.lb_source_ranges),
            "gpu": get_gpu(c.gpu).name if c.gpu is not None else None,
            "pooling_mode": _enum(PoolingMode, c.pooling_mode, "pooling_mode")}


def _vllm_version(c: ServingChoices) -> str:
    version = c.vllm_version if c.vllm_version is not None else version_from_image(c.image)
    if version is None:
        raise InvalidSpecError(f"Cannot tell the vLLM version from image '{c.image}': set vllm_version, e.g. "
                               f"'0.10.1'", field="vllm_version", value=c.image)
    return ".".join(str(p) for p in parse_vllm_version(version))


def _engine(c: ServingChoices, info: ModelInfo) -> dict:
    """The vLLM version (from the image tag), the token budget of a step (encoders: at least one whole sequence
    and the toolkit's step size; decoders: vLLM's own), the embedding-mode flag (where the checkpoint needs it)
    and the pod's requests (4 CPUs per GPU; the weights plus 8 GiB)."""
    batched = c.max_num_batched_tokens
    if batched is None and info.is_encoder:
        batched = max(ENCODER_STEP_TOKENS, c.max_model_len)
    dense = _enum(PoolingMode, c.pooling_mode, "pooling_mode") is PoolingMode.DENSE
    flag = c.embedding_flag if c.embedding_flag is not None else (info.hf_id in CAUSAL_LM_EMBEDDERS or not dense)
    version = _vllm_version(c)
    matryoshka = c.matryoshka if c.matryoshka is not None else (
        info.matryoshka and parse_vllm_version(version) >= RETRIEVAL_CHECKED_FROM)
    return {"vllm_version": version, "max_num_batched_tokens": batched, "embedding_flag": flag,
            "matryoshka": matryoshka,
            "cpu_request": c.cpu_request or str(4 * c.gpu_count),
            "memory_request": c.memory_request or default_memory_request(info)}


# what resolution derives, in this order: each returns the fields it fills
DERIVATIONS = (_names, _normalised, _engine)


def _resolved_values(choices: ServingChoices) -> dict:
    info = get_model(choices.model)
    values = {f.name: getattr(choices, f.name) for f in dataclasses.fields(ServingChoices)}
    for derive in DERIVATIONS:
        values.update(derive(choices, info))
    return values


def resolve(choices: ServingChoices) -> ServingSpec:
    """The one resolution of serving choices: every derived value filled (:data:`DERIVATIONS`), then the spec
    checked as a whole (:data:`WHOLE_CHECKS`). Raises InvalidSpecError (or UnknownNameError) with one line that says
    what to change."""
    if not isinstance(choices, ServingChoices):
        raise InvalidSpecError(f"resolve needs ServingChoices, not {type(choices).__name__}: build them with "
                               f"ServingChoices(...)", field="choices", value=type(choices).__name__)
    return ServingSpec(**_resolved_values(choices), _choices=choices)


def _check_resolved(s: ServingSpec) -> None:
    """A ServingSpec is what its choices resolve to, value for value (so ``replace`` never loses a change)."""
    if not isinstance(s._choices, ServingChoices):
        raise InvalidSpecError("A ServingSpec is built by resolve(ServingChoices(...))", field="choices",
                               value=type(s._choices).__name__)
    expected = _resolved_values(s._choices)
    wrong = next((k for k, v in expected.items() if getattr(s, k) != v), None)
    if wrong is not None:
        raise InvalidSpecError(f"ServingSpec {wrong} {getattr(s, wrong)!r} is not what its choices resolve to "
                               f"({expected[wrong]!r}): change a spec with spec.replace({wrong}=...) or build it with "
                               f"resolve(ServingChoices(...))", field=wrong, value=getattr(s, wrong))


def _check_lengths(s: ServingSpec) -> None:
    info = s.model_info
    if s.max_num_batched_tokens is not None:
        if s.max_num_batched_tokens < s.max_batch_size:
            raise InvalidSpecError(f"max_num_batched_tokens {s.max_num_batched_tokens} is below max_batch_size "
                                   f"{s.max_batch_size}: vLLM refuses to start; raise it",
                                   field="max_num_batched_tokens", value=s.max_num_batched_tokens)
        if s.max_num_batched_tokens < s.max_model_len:
            raise InvalidSpecError(f"max_num_batched_tokens {s.max_num_batched_tokens} is below max_model_len "
                                   f"{s.max_model_len}: a step must hold one whole sequence",
                                   field="max_num_batched_tokens", value=s.max_num_batched_tokens)
    if s.max_model_len > info.max_tokens:
        raise InvalidSpecError(f"max_model_len {s.max_model_len} is above {info.hf_id}'s limit of "
                               f"{info.max_tokens} tokens: use at most {info.max_tokens}",
                               field="max_model_len", value=s.max_model_len)


def _check_layout(s: ServingSpec) -> None:
    check_node_types(s)
    check_tensor_parallel(s.model, s.tp_size)
    gpus = s.gpu_count * s.lws_group_size
    if s.tp_size * s.pp_size != gpus:
        raise InvalidSpecError(f"tp_size × pp_size = {s.tp_size} × {s.pp_size} = {s.tp_size * s.pp_size} does not "
                               f"match the {gpus} GPU(s) of a replica (gpu_count {s.gpu_count} × lws_group_size "
                               f"{s.lws_group_size}): make them equal", field="tp_size", value=(s.tp_size, s.pp_size))


def _check_source(s: ServingSpec) -> None:
    if s.pvc_enabled == s.local_enabled:
        raise InvalidSpecError("Enable exactly one model source: the PVC (pvc_enabled) or a node folder "
                               "(local_enabled)", field="pvc_enabled", value=(s.pvc_enabled, s.local_enabled))
    if s.local_enabled and (not s.local_path.startswith("/") or s.local_path.rstrip("/").count("/") < 2):
        raise InvalidSpecError(f"local_path '{s.local_path}' must be an absolute path on the node, inside a folder "
                               f"(such as /data0/<model id>): the pods mount its parent", field="local_path",
                               value=s.local_path)
    if ".." in s.pvc_path.split("/"):
        raise InvalidSpecError(f"pvc_path '{s.pvc_path}' must stay inside the PVC: remove '..'", field="pvc_path",
                               value=s.pvc_path)


def _check_env_secrets(s: ServingSpec) -> None:
    for key, _ in s.env:
        if key in ("VLLM_API_KEY", "TKE_PLAYBOOK_VLLM_API_KEY"):
            raise InvalidSpecError(f"Do not put {key} in env: the key belongs in a Secret; set api_key_required=True "
                                   f"and the toolkit reads it from Secret '{s.api_key_secret}'", field="env",
                                   value=key)


def _check_exposure(s: ServingSpec) -> None:
    if s.service_type is ServiceType.LOAD_BALANCER and not s.api_key_required:
        raise InvalidSpecError("A public LoadBalancer without an API key would let anyone on the internet use the "
                               "model: set api_key_required=True, or use service type 'LoadBalancer-internal' or "
                               "'ClusterIP'", field="service_type", value=s.service_type.value)
    if s.service_type is ServiceType.LOAD_BALANCER_INTERNAL and not (
            s.lb_subnet_id and re.fullmatch(r"subnet-[a-z0-9]+", s.lb_subnet_id)):
        raise InvalidSpecError(f"An internal LoadBalancer needs the subnet for its CLB: set lb_subnet_id to an id "
                               f"like 'subnet-abcd1234' (got {s.lb_subnet_id!r})", field="lb_subnet_id",
                               value=s.lb_subnet_id)
    if s.lb_source_ranges and s.service_type is ServiceType.CLUSTER_IP:
        raise InvalidSpecError("lb_source_ranges restrict who reaches a LoadBalancer: use them with service type "
                               "'LoadBalancer' or 'LoadBalancer-internal', not 'ClusterIP'",
                               field="lb_source_ranges", value=s.lb_source_ranges)


def _check_command_line(s: ServingSpec) -> None:
    # extra_args the chosen vLLM rejects, bad pooler JSON or a flag the spec controls fail here, where the spec is
    # written (the rules of vllm_flags; the command line itself is built only for the manifests)
    check_extra_args(s.extra_args, s.vllm_version)


def _check_modes(s: ServingSpec) -> None:
    """A pooling mode the model has, Matryoshka only where the model was trained for it (its model card)."""
    info, mode = s.model_info, s.pooling_mode
    if mode not in info.pooling_modes:
        able = ", ".join(m.hf_id for m in list_models() if mode in m.pooling_modes)
        raise InvalidSpecError(f"{info.hf_id} serves only dense vectors: pooling_mode '{mode.value}' needs {able}; "
                               f"use pooling_mode 'dense'", field="pooling_mode", value=mode.value)
    if s.matryoshka and not info.matryoshka:
        raise InvalidSpecError(f"{info.hf_id} is not Matryoshka-trained, so cut vectors lose quality vLLM would not "
                               f"warn about: leave matryoshka unset, or choose a Qwen3-Embedding model",
                               field="matryoshka", value=s.matryoshka)


def _check_retrieval_flags(s: ServingSpec) -> None:
    """The retrieval flags only on releases whose parser was checked with them, and never twice."""
    info, mode, overrides = s.model_info, s.pooling_mode, s.hf_overrides
    if (overrides or mode is not PoolingMode.DENSE) and parse_vllm_version(s.vllm_version) < RETRIEVAL_CHECKED_FROM:
        what = "its pooling mode" if mode is not PoolingMode.DENSE else (
            "Matryoshka" if set(overrides) == {"is_matryoshka"} else "its --hf-overrides")
        raise InvalidSpecError(f"vLLM {s.vllm_version} was not checked with the flags {info.hf_id} needs for {what} "
                               f"(--hf-overrides, the pooler's task): use vLLM 0.33.0 or later, e.g. image "
                               f"{LATEST_VLLM_IMAGE}", field="vllm_version", value=s.vllm_version)
    given = {group[0] for group in user_flags(s.extra_args)}
    if overrides and "--hf-overrides" in given:
        raise InvalidSpecError(f"extra_args sets --hf-overrides, which the toolkit writes for {info.hf_id} "
                               f"({json.dumps(overrides)}): drop it from extra_args", field="extra_args",
                               value=s.extra_args)
    if mode is not PoolingMode.DENSE and given & set(POOLER_FLAGS):
        raise InvalidSpecError(f"extra_args sets --pooler-config, which pooling_mode '{mode.value}' writes "
                               f"({{\"task\": \"{mode.pooling_task}\"}}): drop it, or use pooling_mode 'dense'",
                               field="extra_args", value=s.extra_args)


WHOLE_CHECKS = (_check_resolved, _check_lengths, _check_layout, _check_source, _check_env_secrets, _check_exposure,
                _check_command_line, _check_modes, _check_retrieval_flags)


def _whole_share(total: int, parts: int, what: str, over: str) -> int:
    if total % parts:
        raise InvalidSpecError(f"{what} = {total} does not split evenly over {parts} {over}: make it a multiple of "
                               f"{parts}", field="tp_size", value=(total, parts))
    return total // parts


def layout_changes(spec: ServingChoices | ServingSpec, *, tp: int | None = None, pp: int | None = None,
                   nodes: int | None = None, gpus: int | None = None) -> dict:
    """The one layout rule, for the form and the command line: a replica's GPUs are tp × pp, spread over ``nodes``
    pods, so GPUs per pod = tp × pp ÷ nodes. Given tp (the form's tpSize), the GPUs per pod follow; given only the
    GPUs per pod and/or the nodes (``render --gpus/--nodes``), tensor parallel spans every GPU of the replica
    (tp = gpus × nodes ÷ pp). What is not given keeps ``spec``'s value. Returns the fields to replace in its choices;
    InvalidSpecError when the numbers are not whole numbers of at least 1 or do not split evenly."""
    for what, value in (("tp_size", tp), ("pp_size", pp), ("lws_group_size", nodes), ("gpu_count", gpus)):
        if value is not None:
            _positive(value, what, 1)
    nodes_given = nodes is not None
    nodes = nodes if nodes_given else spec.lws_group_size
    pp = pp if pp is not None else spec.pp_size
    if tp is None and (gpus is not None or nodes_given):
        gpus = gpus if gpus is not None else spec.gpu_count
        tp = _whole_share(gpus * nodes, pp, f"GPUs per replica {gpus} × {nodes}", "pipeline stages (pp_size)")
    else:
        tp = tp if tp is not None else spec.tp_size
        if gpus is None:
            gpus = _whole_share(tp * pp, nodes, f"tp_size × pp_size {tp} × {pp}", "nodes (lws_group_size)")
    return {"tp_size": tp, "pp_size": pp, "lws_group_size": nodes, "gpu_count": gpus}


def _instance_types(value) -> tuple[str, ...]:
    """Node instance types to pin vLLM to: each is a value of the ``node.kubernetes.io/instance-type`` label."""
    items = (value,) if isinstance(value, str) else tuple(value or ())
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InvalidSpecError(f"node instance type {item!r} is empty: name a node type such as "
                                   f"'PNV5b.8XLARGE96', or pin none", field="node_instance_types", value=item)
        validate_label(INSTANCE_TYPE_LABEL, item, what="node instance type")
    return tuple(items)


def check_on_node(spec: ServingSpec, node: NodeType) -> None:
    """Refuse a spec whose pods cannot run on ``node``: a pod needs gpu_count GPUs (tp × pp ÷ nodes) of the spec's
    GPU model, and the node has ``node.gpu_count`` of ``node.gpu``."""
    have = node.gpu_count if node.gpu is not None else 0
    if spec.gpu_count > have:
        raise InvalidSpecError(f"a pod needs {spec.gpu_count} GPUs (tp_size {spec.tp_size} × pp_size {spec.pp_size} ÷ "
                               f"{spec.lws_group_size} node(s)) but node type {node.name} has {have}: lower tp_size "
                               f"to at most {max(have, 1)} or choose a node type with more GPUs", field="tp_size",
                               value=spec.tp_size)
    if spec.gpu is not None and node.gpu is not None and get_gpu(spec.gpu).name != node.gpu.name:
        raise InvalidSpecError(f"gpu {spec.gpu} is not the GPU of node type {node.name} ({node.gpu.name}): set gpu to "
                               f"{node.gpu.name}, or choose a node type with {spec.gpu}", field="gpu", value=spec.gpu)


def node_changes(node: NodeType | None) -> dict:
    """The ServingSpec fields that follow the node type chosen in 00: the GPU model the fit check and MFU use (when
    the catalog knows it; else none) and the instance type the pods are pinned to (node affinity)."""
    if node is None:
        return {}
    try:
        gpu = get_gpu(node.gpu.name).name if node.gpu is not None else None
    except LookupError:
        gpu = None
    try:
        pinned = _instance_types((node.name,))
    except InvalidSpecError:  # a node without an instance-type label, named by its node name: pin nothing
        pinned = ()
    return {"gpu": gpu, "node_instance_types": pinned}


def node_gpu_name(instance_types, default: str | None = None) -> str | None:
    """The GPU model of the first of ``instance_types`` the catalog knows (what the fit check should use), else
    ``default``."""
    for name in instance_types or ():
        try:
            node = get_node_type(name)
        except LookupError:
            continue
        return node.gpu.name if node.gpu is not None else default
    return default


def check_node_types(spec: ServingSpec) -> None:
    """A pod fits one node: no more GPUs than the pinned node types have (those the catalog knows), and never more
    than :data:`MAX_GPUS_PER_NODE`."""
    if spec.gpu_count > MAX_GPUS_PER_NODE:
        raise InvalidSpecError(f"gpu_count {spec.gpu_count} is more GPUs than one node has (at most "
                               f"{MAX_GPUS_PER_NODE}): use 1 to {MAX_GPUS_PER_NODE} per pod, and more nodes "
                               f"(lws_group_size) for a bigger replica", field="gpu_count", value=spec.gpu_count)
    for name in spec.node_instance_types:
        try:
            node = get_node_type(name)
        except LookupError:
            continue  # a type the catalog does not know (a cluster's own): checked against the node in 03
        check_on_node(spec, node)


def default_memory_request(info: ModelInfo) -> str:
    """Host memory a vLLM pod asks for: its weights (loaded through the page cache) plus 8 GiB for the runtime."""
    return f"{math.ceil(info.weight_bytes / 2**30) + 8}Gi"


def _cidrs(value) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value or ())
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=True)))
        except ValueError as exc:
            raise InvalidSpecError(f"source range {item!r} is not a CIDR block ({exc}): write it like "
                                   f"'203.0.113.0/24'", field="lb_source_ranges", value=item) from None
    return tuple(out)


def _enum(kind, value, what):
    if isinstance(value, kind):
        return value
    for member in kind:
        if str(value).lower() in (member.value.lower(), member.name.lower()):
            return member
    raise unknown(what.replace("_", " "), str(value), [m.value for m in kind])


def seed_choices() -> ServingChoices:
    """The tutorial's choices: e5-mistral-7b-instruct from PVC ai-model on one L20, public LoadBalancer on port
    60000 - with the API key required, kept in a Secret and checked on every path but /health by an nginx proxy."""
    return ServingChoices(model=TUTORIAL_MODEL, service_type=ServiceType.LOAD_BALANCER, api_key_required=True,
                          gpu="L20")


def seed_profile() -> ServingSpec:
    """The tutorial's serving spec (:func:`seed_choices`, resolved)."""
    return resolve(seed_choices())
