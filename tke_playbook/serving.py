"""What to serve and how: the vLLM serving spec (every key of the tutorial's vllm-inference-tke chart, and more).

A :class:`ServingSpec` is frozen and validated when built; object names derive from the model
(``vllm-<slug>``), so BGE and E5 can run side by side. The API key never sits in the spec or in a manifest's
env: the spec names the Secret holding it (``vllm-<slug>-api-key``, key ``api-key``).
:func:`seed_profile` reproduces the tutorial's values.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .catalog import TUTORIAL_MODEL, get_model
from .errors import InvalidSpecError
from .fit import ENCODER_STEP_TOKENS
from .names import slug, validate_name, validate_port, validate_quantity, validate_subdomain

TUTORIAL_IMAGE = "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801"
TUTORIAL_EXTRA_ARGS = ("--disable-log-requests", "--cuda-graph-sizes 1 2 4 8 16 24 32")
CONTAINER_PORT = 60000
API_KEY_SECRET_KEY = "api-key"
INTERNAL_LB_SUBNET_ANNOTATION = "service.kubernetes.io/qcloud-loadbalancer-internal-subnetid"
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


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


def parse_vllm_version(text: str) -> tuple[int, int, int]:
    """``'0.10.1'``, ``'v0.12'`` or an image tag like ``'v0.10.1-20250801'`` → ``(0, 10, 1)``."""
    match = _VERSION.match(str(text).strip())
    if not match:
        raise InvalidSpecError(f"vLLM version '{text}' is not a version: write it like '0.10.1'",
                               field="vllm_version", value=text)
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_from_image(image: str) -> str | None:
    """The vLLM version in an image tag (``…/vllm-openai:v0.10.1-20250801`` → ``'0.10.1'``), if it has one."""
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = _VERSION.match(tag)
    return ".".join(str(p) for p in parse_vllm_version(match.group(0))) if match else None


def _positive(value, what: str, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSpecError(f"{what} {value!r} must be a whole number of at least 1, such as {example}",
                               field=what, value=value)
    return value


def _pairs(value, what: str) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    try:
        return tuple((str(k), str(v)) for k, v in items)
    except (TypeError, ValueError):
        raise InvalidSpecError(f"{what} must be a mapping of names to values", field=what, value=value) from None


@dataclass(frozen=True)
class ServingSpec:
    """A vLLM embedding service. Fields mirror the chart's values; ``None`` means "derive it"."""

    model: str = TUTORIAL_MODEL
    served_model_name: str | None = None
    pvc_enabled: bool = True
    pvc_name: str = "ai-model"
    pvc_path: str | None = None            # sub-folder on the PVC; default the model id
    local_enabled: bool = False
    local_path: str | None = None          # hostPath; default /data0/<model id>
    replicas: int = 1
    lws_group_size: int = 1
    image: str = TUTORIAL_IMAGE
    image_pull_policy: PullPolicy = PullPolicy.IF_NOT_PRESENT
    api_key_required: bool = True
    api_key_secret: str | None = None      # default vllm-<slug>-api-key
    gpu_count: int = 1                     # nvidia.com/gpu per pod
    tp_size: int = 1
    pp_size: int = 1
    ep_enabled: bool = False
    max_model_len: int = 2048
    max_batch_size: int = 32
    extra_args: tuple[str, ...] = TUTORIAL_EXTRA_ARGS
    env: tuple[tuple[str, str], ...] = (("VLLM_WORKER_MULTIPROC_METHOD", "spawn"),)
    service_enabled: bool = True
    service_type: ServiceType = ServiceType.CLUSTER_IP
    service_port: int = CONTAINER_PORT
    lb_subnet_id: str | None = None        # for LoadBalancer-internal
    labels: tuple[tuple[str, str], ...] = ()
    pod_annotations: tuple[tuple[str, str], ...] = ()
    gpu_memory_utilization: float = 0.9
    vllm_version: str | None = None        # default: from the image tag
    max_num_batched_tokens: int | None = None  # default: set for encoder models, vLLM's own for decoders
    namespace: str = "default"
    node_instance_types: tuple[str, ...] = ()
    gpu: str | None = None                 # GPU model, for the fit check
    name: str | None = None                # default vllm-<slug>
    shm_size: str = "15Gi"
    startup_timeout_s: int = 3600
    cpu_request: str | None = None
    memory_request: str | None = None
    tolerate_gpu_taint: bool = True
    embedding_flag: bool | None = None     # --runner pooling / --task embed; None: only where the model needs it
    wait_for_model: bool = True            # init container waits for the download's completion marker
    model_wait_timeout_s: int = 7200

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass normalisation
        info = get_model(self.model)
        set_("model", info.hf_id)
        set_("served_model_name", self.served_model_name or info.hf_id)
        set_("pvc_path", (self.pvc_path or info.hf_id).strip("/"))
        set_("local_path", self.local_path or f"/data0/{info.hf_id}")
        set_("name", validate_name(self.name or f"vllm-{slug(info.hf_id)}", "Deployment name"))
        set_("api_key_secret", validate_subdomain(self.api_key_secret or f"{self.name}-api-key",
                                                  "API key Secret name"))
        set_("image_pull_policy", _enum(PullPolicy, self.image_pull_policy, "image_pull_policy"))
        set_("service_type", _enum(ServiceType, self.service_type, "service_type"))
        set_("extra_args", tuple(str(a) for a in ([self.extra_args] if isinstance(self.extra_args, str)
                                                  else self.extra_args)))
        set_("env", _pairs(self.env, "env"))
        set_("labels", _pairs(self.labels, "labels"))
        set_("pod_annotations", _pairs(self.pod_annotations, "pod_annotations"))
        set_("node_instance_types", tuple(self.node_instance_types))
        if not isinstance(self.image, str) or not self.image.strip() or any(c.isspace() for c in self.image):
            raise InvalidSpecError(f"image {self.image!r} is not an image reference: use e.g. '{TUTORIAL_IMAGE}'",
                                   field="image", value=self.image)
        version = self.vllm_version or version_from_image(self.image)
        if version is None:
            raise InvalidSpecError(f"Cannot tell the vLLM version from image '{self.image}': set vllm_version, "
                                   f"e.g. '0.10.1'", field="vllm_version", value=self.image)
        set_("vllm_version", ".".join(str(p) for p in parse_vllm_version(version)))
        if self.max_num_batched_tokens is None and info.is_encoder:
            set_("max_num_batched_tokens", max(ENCODER_STEP_TOKENS, self.max_model_len
                                               if isinstance(self.max_model_len, int) else 0))
        self._validate(info)

    def _validate(self, info) -> None:
        validate_name(self.namespace, "Namespace")
        validate_name(self.pvc_name, "PVC name")
        for what, value, example in (("replicas", self.replicas, 1), ("lws_group_size", self.lws_group_size, 1),
                                     ("gpu_count", self.gpu_count, 1), ("tp_size", self.tp_size, 1),
                                     ("pp_size", self.pp_size, 1), ("max_model_len", self.max_model_len, 2048),
                                     ("max_batch_size", self.max_batch_size, 32),
                                     ("startup_timeout_s", self.startup_timeout_s, 3600),
                                     ("model_wait_timeout_s", self.model_wait_timeout_s, 7200)):
            _positive(value, what, example)
        if self.max_num_batched_tokens is not None:
            _positive(self.max_num_batched_tokens, "max_num_batched_tokens", 16384)
            if self.max_num_batched_tokens < self.max_batch_size:
                raise InvalidSpecError(f"max_num_batched_tokens {self.max_num_batched_tokens} is below max_batch_size "
                                       f"{self.max_batch_size}: vLLM refuses to start; raise it",
                                       field="max_num_batched_tokens", value=self.max_num_batched_tokens)
            if self.max_num_batched_tokens < self.max_model_len:
                raise InvalidSpecError(f"max_num_batched_tokens {self.max_num_batched_tokens} is below max_model_len "
                                       f"{self.max_model_len}: a step must hold one whole sequence",
                                       field="max_num_batched_tokens", value=self.max_num_batched_tokens)
        if self.max_model_len > info.max_tokens:
            raise InvalidSpecError(f"max_model_len {self.max_model_len} is above {info.hf_id}'s limit of "
                                   f"{info.max_tokens} tokens: use at most {info.max_tokens}",
                                   field="max_model_len", value=self.max_model_len)
        gpus = self.gpu_count * self.lws_group_size
        if self.tp_size * self.pp_size != gpus:
            raise InvalidSpecError(f"tp_size × pp_size = {self.tp_size} × {self.pp_size} = "
                                   f"{self.tp_size * self.pp_size} does not match the {gpus} GPU(s) of a replica "
                                   f"(gpu_count {self.gpu_count} × lws_group_size {self.lws_group_size}): make them "
                                   f"equal", field="tp_size", value=(self.tp_size, self.pp_size))
        if self.pvc_enabled == self.local_enabled:
            raise InvalidSpecError("Enable exactly one model source: the PVC (pvc_enabled) or a node folder "
                                   "(local_enabled)", field="pvc_enabled", value=(self.pvc_enabled, self.local_enabled))
        if self.local_enabled and not self.local_path.startswith("/"):
            raise InvalidSpecError(f"local_path '{self.local_path}' must be an absolute path on the node",
                                   field="local_path", value=self.local_path)
        if ".." in self.pvc_path.split("/"):
            raise InvalidSpecError(f"pvc_path '{self.pvc_path}' must stay inside the PVC: remove '..'",
                                   field="pvc_path", value=self.pvc_path)
        validate_port(self.service_port, "service port")
        if not 0 < self.gpu_memory_utilization <= 1 or isinstance(self.gpu_memory_utilization, bool):
            raise InvalidSpecError(f"gpu_memory_utilization {self.gpu_memory_utilization!r} must be a fraction in "
                                   f"(0, 1], such as 0.9", field="gpu_memory_utilization",
                                   value=self.gpu_memory_utilization)
        validate_quantity(self.shm_size, "shm_size")
        for what in ("cpu_request", "memory_request"):
            if getattr(self, what) is not None:
                validate_quantity(getattr(self, what), what)
        for key, value in self.labels:
            _check_label(key, value)
        for key, _ in self.pod_annotations:
            _check_label(key, "", what="annotation")
        for key, _ in self.env:
            if not _ENV_NAME.match(key):
                raise InvalidSpecError(f"env name '{key}' is not a valid variable name", field="env", value=key)
            if key == "VLLM_API_KEY":
                raise InvalidSpecError("Do not put VLLM_API_KEY in env: the key belongs in a Secret; set "
                                       "api_key_required=True and the toolkit reads it from Secret "
                                       f"'{self.api_key_secret}'", field="env", value=key)
        if self.service_type is ServiceType.LOAD_BALANCER and not self.api_key_required:
            raise InvalidSpecError("A public LoadBalancer without an API key would let anyone on the internet use the "
                                   "model: set api_key_required=True, or use service type 'LoadBalancer-internal' or "
                                   "'ClusterIP'", field="service_type", value=self.service_type.value)
        if self.service_type is ServiceType.LOAD_BALANCER_INTERNAL and not (
                self.lb_subnet_id and re.match(r"^subnet-[a-z0-9]+$", self.lb_subnet_id)):
            raise InvalidSpecError(f"An internal LoadBalancer needs the subnet for its CLB: set lb_subnet_id to an id "
                                   f"like 'subnet-abcd1234' (got {self.lb_subnet_id!r})", field="lb_subnet_id",
                                   value=self.lb_subnet_id)
        if self.gpu is not None:
            from .hardware import get_gpu

            object.__setattr__(self, "gpu", get_gpu(self.gpu).name)

    @property
    def model_info(self):
        return get_model(self.model)

    @property
    def slug(self) -> str:
        return slug(self.model)

    @property
    def is_multi_node(self) -> bool:
        return self.lws_group_size > 1

    def replace(self, **changes) -> ServingSpec:
        """A copy with ``changes`` applied. What derives from a changed field is derived again: names from the
        model, the vLLM version from the image, the API-key Secret from the name, the token budget from the length."""
        if "model" in changes and changes["model"] != self.model:
            for derived in ("served_model_name", "pvc_path", "local_path", "name", "api_key_secret",
                            "max_num_batched_tokens"):
                changes.setdefault(derived, None)
        if "max_model_len" in changes and get_model(changes.get("model", self.model)).is_encoder:
            changes.setdefault("max_num_batched_tokens", None)
        if "image" in changes:  # the new image's tag tells its vLLM version (set vllm_version to override)
            changes.setdefault("vllm_version", None)
        if "name" in changes:
            changes.setdefault("api_key_secret", None)
        return dataclasses.replace(self, **changes)

    @classmethod
    def seed(cls) -> ServingSpec:
        return seed_profile()


_LABEL = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _check_label(key: str, value: str, what: str = "label") -> None:
    prefix, _, name = key.rpartition("/")
    if prefix:
        validate_subdomain(prefix, f"label prefix in '{key}'")
    if not name or len(name) > 63 or not _LABEL.match(name):
        raise InvalidSpecError(f"{what} key '{key}' is not valid: use letters, digits, '-', '_' and '.' (at most 63), "
                               f"optionally after a prefix like 'example.com/'", field=f"{what}s", value=key)
    if len(value) > 63 or (value and not _LABEL.match(value)):
        raise InvalidSpecError(f"label value '{value}' for '{key}' is not valid: use letters, digits, '-', '_' and "
                               f"'.', at most 63 characters", field="labels", value=value)


def _enum(kind, value, what):
    if isinstance(value, kind):
        return value
    for member in kind:
        if str(value).lower() in (member.value.lower(), member.name.lower()):
            return member
    from .names import unknown

    raise unknown(what.replace("_", " "), str(value), [m.value for m in kind])


def seed_profile() -> ServingSpec:
    """The tutorial's values: e5-mistral-7b-instruct from PVC ai-model on one L20, public LoadBalancer on port
    60000 - with the API key required and kept in a Secret."""
    return ServingSpec(model=TUTORIAL_MODEL, service_type=ServiceType.LOAD_BALANCER, api_key_required=True,
                       gpu="L20")
