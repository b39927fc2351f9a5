"""What to serve and how: the vLLM serving spec (every key of the tutorial's vllm-inference-tke chart, and more).

A :class:`ServingSpec` is frozen and validated when built; object names derive from the model
(``vllm-<slug>``), so BGE and E5 can run side by side. The API key never sits in the spec or in a manifest's
env: the spec names the Secret holding it (``vllm-<slug>-api-key``, key ``api-key``).
:func:`seed_profile` reproduces the tutorial's values.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InvalidSpecError
from .catalog import TUTORIAL_MODEL, ModelInfo, get_model
from .fit import ENCODER_STEP_TOKENS, check_tensor_parallel
from .hardware import MAX_GPUS_PER_NODE, NodeType, get_gpu, get_node_type
from .names import slug, unknown, validate_label, validate_name, validate_port, validate_quantity, validate_subdomain
from .storage import DEFAULT_PVC
from .vllm_args import CONTAINER_PORT, VERSION_PATTERN, build_vllm_args, parse_vllm_version

TUTORIAL_IMAGE = "ccr.ccs.tencentyun.com/tke-ai-playbook/vllm-openai:v0.10.1-20250801"
TUTORIAL_EXTRA_ARGS = ("--disable-log-requests", "--cuda-graph-sizes 1 2 4 8 16 24 32")
LATEST_VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"  # the newest vLLM whose parser was checked (facts.md, section 3)
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


@dataclass(frozen=True)
class ServingSpec:
    """A vLLM embedding service. Fields mirror the chart's values; ``None`` means "derive it"."""

    model: str = TUTORIAL_MODEL
    served_model_name: str | None = None
    pvc_enabled: bool = True
    pvc_name: str = DEFAULT_PVC
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
    lb_source_ranges: tuple[str, ...] = ()  # CIDRs allowed to reach a LoadBalancer (loadBalancerSourceRanges)
    proxy_image: str = PROXY_IMAGE         # the authenticating reverse proxy of a public LoadBalancer
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
    cpu_request: str | None = None         # default: 4 per GPU
    memory_request: str | None = None      # default: the weights plus 8 GiB (see default_memory_request)
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
        set_("node_instance_types", _instance_types(self.node_instance_types))
        set_("lb_source_ranges", _cidrs(self.lb_source_ranges))
        self._derive_requests(info)
        self._derive_version()
        if self.max_num_batched_tokens is None and info.is_encoder:
            set_("max_num_batched_tokens", max(ENCODER_STEP_TOKENS, self.max_model_len
                                               if isinstance(self.max_model_len, int) else 0))
        self._validate(info)

    def _derive_version(self) -> None:
        if not isinstance(self.image, str) or not self.image.strip() or any(c.isspace() for c in self.image):
            raise InvalidSpecError(f"image {self.image!r} is not an image reference: use e.g. '{TUTORIAL_IMAGE}'",
                                   field="image", value=self.image)
        version = self.vllm_version if self.vllm_version is not None else version_from_image(self.image)
        if version is None:
            raise InvalidSpecError(f"Cannot tell the vLLM version from image '{self.image}': set vllm_version, "
                                   f"e.g. '0.10.1'", field="vllm_version", value=self.image)
        object.__setattr__(self, "vllm_version", ".".join(str(p) for p in parse_vllm_version(version)))

    def _derive_requests(self, info: ModelInfo) -> None:
        if isinstance(self.gpu_count, int) and not isinstance(self.gpu_count, bool) and self.gpu_count >= 1:
            object.__setattr__(self, "cpu_request", self.cpu_request or str(4 * self.gpu_count))
        object.__setattr__(self, "memory_request", self.memory_request or default_memory_request(info))

    def _validate(self, info: ModelInfo) -> None:
        validate_name(self.namespace, "Namespace")
        validate_name(self.pvc_name, "PVC name")
        for what, value, example in (("gpu_count", self.gpu_count, 1), ("tp_size", self.tp_size, 1),
                                     ("pp_size", self.pp_size, 1), ("max_model_len", self.max_model_len, 2048),
                                     ("max_batch_size", self.max_batch_size, 32),
                                     ("startup_timeout_s", self.startup_timeout_s, 3600),
                                     ("model_wait_timeout_s", self.model_wait_timeout_s, 7200)):
            _positive(value, what, example)
        for what, value in (("replicas", self.replicas), ("lws_group_size", self.lws_group_size)):
            _positive(value, what, 1, MAX_INT32)  # int32 in the Kubernetes API
        self._validate_lengths(info)
        self._validate_layout()
        self._validate_values()
        self._validate_env()
        self._validate_exposure()
        if self.gpu is not None:
            object.__setattr__(self, "gpu", get_gpu(self.gpu).name)
        # the command line for this vLLM version: extra_args that version rejects, bad pooler JSON or a flag the
        # spec controls fail here, where the spec is written
        build_vllm_args(self)

    def _validate_lengths(self, info: ModelInfo) -> None:
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

    def _validate_layout(self) -> None:
        check_node_types(self)
        check_tensor_parallel(self.model, self.tp_size)
        gpus = self.gpu_count * self.lws_group_size
        if self.tp_size * self.pp_size != gpus:
            raise InvalidSpecError(f"tp_size × pp_size = {self.tp_size} × {self.pp_size} = "
                                   f"{self.tp_size * self.pp_size} does not match the {gpus} GPU(s) of a replica "
                                   f"(gpu_count {self.gpu_count} × lws_group_size {self.lws_group_size}): make them "
                                   f"equal", field="tp_size", value=(self.tp_size, self.pp_size))
        if self.pvc_enabled == self.local_enabled:
            raise InvalidSpecError("Enable exactly one model source: the PVC (pvc_enabled) or a node folder "
                                   "(local_enabled)", field="pvc_enabled", value=(self.pvc_enabled, self.local_enabled))
        if self.local_enabled and (not self.local_path.startswith("/") or self.local_path.rstrip("/").count("/") < 2):
            raise InvalidSpecError(f"local_path '{self.local_path}' must be an absolute path on the node, inside a "
                                   f"folder (such as /data0/<model id>): the pods mount its parent",
                                   field="local_path", value=self.local_path)
        if ".." in self.pvc_path.split("/"):
            raise InvalidSpecError(f"pvc_path '{self.pvc_path}' must stay inside the PVC: remove '..'",
                                   field="pvc_path", value=self.pvc_path)

    def _validate_values(self) -> None:
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
            validate_label(key, value)
        for key, _ in self.pod_annotations:
            validate_label(key, "", what="annotation")

    def _validate_env(self) -> None:
        for key, _ in self.env:
            if not _ENV_NAME.fullmatch(key):
                raise InvalidSpecError(f"env name '{key}' is not a valid variable name", field="env", value=key)
            if key in ("VLLM_API_KEY", "TKE_PLAYBOOK_VLLM_API_KEY"):
                raise InvalidSpecError(f"Do not put {key} in env: the key belongs in a Secret; set "
                                       "api_key_required=True and the toolkit reads it from Secret "
                                       f"'{self.api_key_secret}'", field="env", value=key)
        names = [key for key, _ in self.env]
        if len(names) != len(set(names)):
            raise InvalidSpecError(f"env names {sorted({n for n in names if names.count(n) > 1})} appear twice: keep "
                                   f"one of each (Kubernetes refuses duplicates)", field="env", value=names)

    def _validate_exposure(self) -> None:
        if self.service_type is ServiceType.LOAD_BALANCER and not self.api_key_required:
            raise InvalidSpecError("A public LoadBalancer without an API key would let anyone on the internet use the "
                                   "model: set api_key_required=True, or use service type 'LoadBalancer-internal' or "
                                   "'ClusterIP'", field="service_type", value=self.service_type.value)
        if self.service_type is ServiceType.LOAD_BALANCER_INTERNAL and not (
                self.lb_subnet_id and re.fullmatch(r"subnet-[a-z0-9]+", self.lb_subnet_id)):
            raise InvalidSpecError(f"An internal LoadBalancer needs the subnet for its CLB: set lb_subnet_id to an id "
                                   f"like 'subnet-abcd1234' (got {self.lb_subnet_id!r})", field="lb_subnet_id",
                                   value=self.lb_subnet_id)
        if self.lb_source_ranges and self.service_type is ServiceType.CLUSTER_IP:
            raise InvalidSpecError("lb_source_ranges restrict who reaches a LoadBalancer: use them with service type "
                                   "'LoadBalancer' or 'LoadBalancer-internal', not 'ClusterIP'",
                                   field="lb_source_ranges", value=self.lb_source_ranges)
        if not isinstance(self.proxy_image, str) or not self.proxy_image.strip() or any(
                c.isspace() for c in self.proxy_image):
            raise InvalidSpecError(f"proxy_image {self.proxy_image!r} is not an image reference: use e.g. "
                                   f"'{PROXY_IMAGE}'", field="proxy_image", value=self.proxy_image)

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

    def replace(self, **changes) -> ServingSpec:
        """A copy with ``changes`` applied. What derives from a changed field is derived again: names from the
        model, the vLLM version from the image, the API-key Secret from the name, the token budget from the length,
        the memory request from the model and the CPU request from the GPUs (unless ``changes`` sets them)."""
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
        if "model" in changes and changes["model"] != self.model:
            changes.setdefault("memory_request", None)
        if "gpu_count" in changes and changes["gpu_count"] != self.gpu_count:
            changes.setdefault("cpu_request", None)
        return dataclasses.replace(self, **changes)

    @classmethod
    def seed(cls) -> ServingSpec:
        return seed_profile()


def _whole_share(total: int, parts: int, what: str, over: str) -> int:
    if total % parts:
        raise InvalidSpecError(f"{what} = {total} does not split evenly over {parts} {over}: make it a multiple of "
                               f"{parts}", field="tp_size", value=(total, parts))
    return total // parts


def layout_changes(spec: ServingSpec, *, tp: int | None = None, pp: int | None = None, nodes: int | None = None,
                   gpus: int | None = None) -> dict:
    """The one layout rule, for the form and the command line: a replica's GPUs are tp × pp, spread over ``nodes``
    pods, so GPUs per pod = tp × pp ÷ nodes. Given tp (the form's tpSize), the GPUs per pod follow; given only the
    GPUs per pod and/or the nodes (``render --gpus/--nodes``), tensor parallel spans every GPU of the replica
    (tp = gpus × nodes ÷ pp). What is not given keeps ``spec``'s value. Returns the ServingSpec fields to replace;
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


def seed_profile() -> ServingSpec:
    """The tutorial's values: e5-mistral-7b-instruct from PVC ai-model on one L20, public LoadBalancer on port
    60000 - with the API key required, kept in a Secret and checked on every path but /health by an nginx proxy."""
    return ServingSpec(model=TUTORIAL_MODEL, service_type=ServiceType.LOAD_BALANCER, api_key_required=True,
                       gpu="L20")
