"""GPUs and TKE node types the toolkit knows, and nodes described from their labels and allocatable resources.

``memory_bytes`` of a GPU is what the driver reports as total memory (``nvidia-smi``), which is what vLLM's
``--gpu-memory-utilization`` is a fraction of; ``nominal_gb`` is the marketing size. Figures marked
``verified=False`` come from third-party tables or are estimates: check them before relying on them.
The fit check (``check_fit``, ``FitVerdict``) lives in :mod:`tke_playbook.specs.fit`, which imports this module.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass

from .names import quantity_to_float, unknown

MiB = 2**20
GiB = 2**30


@dataclass(frozen=True)
class GpuType:
    """One GPU model. ``products`` are regexes matched against ``nvidia.com/gpu.product`` node labels."""

    name: str
    memory_bytes: int
    nominal_gb: int
    bf16: bool = True
    products: tuple[str, ...] = ()
    verified: bool = True
    note: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GiB


class NodeRole(str, enum.Enum):
    GPU = "gpu"            # serves models
    DOWNLOAD = "download"  # CPU node with a public IP, pulls weights onto the PVC
    GENERAL = "general"


@dataclass(frozen=True)
class NodeType:
    """A node: its instance type, CPUs, memory and GPUs. ``gpu`` is None for CPU nodes (or an unknown GPU)."""

    name: str
    cpu: float
    memory_bytes: int
    gpu: GpuType | None
    gpu_count: int
    role: NodeRole
    verified: bool = True
    note: str = ""

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GiB

    @property
    def gpu_memory_bytes(self) -> int:
        return self.gpu.memory_bytes * self.gpu_count if self.gpu else 0


_EST = "driver-reported memory estimated from the nominal size; not verified"
GPUS: tuple[GpuType, ...] = (
    GpuType("T4", 15360 * MiB, 16, bf16=False, products=(r"T4(?!\d)",)),
    GpuType("A10", 23028 * MiB, 24, products=(r"A10(?![0-9])",)),
    GpuType("V100-32GB", 32768 * MiB, 32, bf16=False, products=(r"V100",)),
    GpuType("A100-40GB", 40960 * MiB, 40, products=(r"A100(?!.*80G)",)),
    GpuType("L20", 46068 * MiB, 48, products=(r"L20(?!\d)",), verified=False, note=_EST),
    GpuType("L40", 46068 * MiB, 48, products=(r"L40(?!S)",)),
    GpuType("L40S", 46068 * MiB, 48, products=(r"L40S",)),
    GpuType("A100-80GB", 81920 * MiB, 80, products=(r"A100.*80G",)),
    GpuType("H100", 81559 * MiB, 80, products=(r"H100",)),
    GpuType("H800", 81559 * MiB, 80, products=(r"H800",), verified=False, note=_EST),
    GpuType("H20", 97871 * MiB, 96, products=(r"H20(?!\d)",), verified=False, note=_EST),
)
_GPU_INDEX = {g.name.lower(): g for g in GPUS}
_GPU_ALIASES = {"v100": "V100-32GB", "nvidia l20": "L20", "l40s-48gb": "L40S"}

# Dense bf16 tensor-core peak in TFLOP/s: SPEC SHEET values (no sparsity), not measurements; verify before relying
# on them (facts.md section 9: an H200 measured ~790 against its ~989 spec). H100/H800 are the SXM figures.
# T4 and V100 have no bf16. Used for model FLOPs utilisation (tke_playbook.capacity.efficiency).
PEAK_BF16_TFLOPS = {"A10": 125.0, "A100-40GB": 312.0, "A100-80GB": 312.0, "L20": 119.5, "L40": 181.0,
                    "L40S": 362.0, "H100": 989.0, "H800": 989.0, "H20": 148.0}


def peak_bf16_tflops(gpu: "str | GpuType") -> float | None:
    """The GPU's dense bf16 peak (spec sheet TFLOP/s), or None when unknown or without bf16."""
    return PEAK_BF16_TFLOPS.get(get_gpu(gpu).name)


_TABLE = "from a third-party table of Tencent instance types; not verified against Tencent's own docs"


def _node(name, cpu, mem_gib, gpu, count, role=NodeRole.GPU, verified=False, note=_TABLE) -> NodeType:
    return NodeType(name, float(cpu), mem_gib * GiB, _GPU_INDEX[gpu.lower()] if gpu else None, count, role,
                    verified, note)


NODE_TYPES: tuple[NodeType, ...] = (
    _node("PNV5b.8XLARGE96", 32, 96, "L20", 1, verified=True,
          note="the tutorial's GPU node: one 48 GB GPU (L20); 32 vCPU / 96 GiB from the instance name"),
    _node("SA5.LARGE8", 4, 8, None, 0, NodeRole.DOWNLOAD, verified=True,
          note="the tutorial's download node (3 of them, public IP, >=300 GB disk); 4 vCPU / 8 GiB"),
    _node("PNV5b.16XLARGE192", 64, 192, "L20", 2),
    _node("PNV5b.32XLARGE384", 128, 384, "L20", 4),
    _node("PNV4.7XLARGE116", 28, 116, "A10", 1),
    _node("PNV4.14XLARGE232", 56, 232, "A10", 2),
    _node("GN7.2XLARGE32", 8, 32, "T4", 1),
    _node("GN7.5XLARGE80", 20, 80, "T4", 1),
    _node("GN10Xp.2XLARGE40", 10, 40, "V100-32GB", 1),
    _node("GT4.4XLARGE96", 16, 96, "A100-40GB", 1),
    _node("GT4.8XLARGE192", 32, 192, "A100-40GB", 2),
)
_NODE_INDEX = {n.name.lower(): n for n in NODE_TYPES}
# The most GPUs one node carries: NVIDIA's HGX/DGX boards hold 8 (NVLink/NVSwitch), and so do the largest GPU
# instance types of the public clouds. A pod's nvidia.com/gpu above this cannot be scheduled on any node.
MAX_GPUS_PER_NODE = 8

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"   # NVIDIA GPU feature discovery, e.g. "NVIDIA-L20"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"     # MiB, from GPU feature discovery
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_RESOURCE = "nvidia.com/gpu"
QGPU_CORE_RESOURCE = "tke.cloud.tencent.com/qgpu-core"  # TKE qGPU sharing: 100 per physical GPU


def get_gpu(name: str | GpuType) -> GpuType:
    """A known GPU by name, case-insensitively (``'l20'``, ``'A100-80GB'``); did-you-mean otherwise."""
    if isinstance(name, GpuType):
        return name
    key = str(name).strip().lower()
    key = _GPU_ALIASES.get(key, key).lower()
    if key in _GPU_INDEX:
        return _GPU_INDEX[key]
    variants = [g.name for g in GPUS if g.name.lower().startswith(key + "-")]  # "a100" -> both A100 sizes
    raise unknown("GPU", str(name), variants or [g.name for g in GPUS])


def get_node_type(name: str | NodeType) -> NodeType:
    """A known TKE instance type (``'PNV5b.8XLARGE96'``), case-insensitively; did-you-mean otherwise."""
    if isinstance(name, NodeType):
        return name
    found = _NODE_INDEX.get(str(name).strip().lower())
    if found is None:
        raise unknown("node type", str(name), [n.name for n in NODE_TYPES])
    return found


def node_type_to_dict(node: NodeType) -> dict:
    """A node type as plain JSON data (what 00 records for the later notebooks)."""
    gpu = node.gpu
    return {"name": node.name, "cpu": node.cpu, "memory_bytes": int(node.memory_bytes), "gpu_count": node.gpu_count,
            "role": node.role.value, "verified": node.verified, "note": node.note,
            "gpu": None if gpu is None else {"name": gpu.name, "memory_bytes": int(gpu.memory_bytes),
                                             "nominal_gb": gpu.nominal_gb, "bf16": gpu.bf16}}


def node_type_from_dict(data: dict) -> NodeType:
    """The node type :func:`node_type_to_dict` recorded: a known GPU by name, else as described."""
    gpu = data.get("gpu")
    if gpu is not None:
        known = _GPU_INDEX.get(str(gpu.get("name", "")).lower())
        if known is not None and known.memory_bytes == gpu.get("memory_bytes", known.memory_bytes):
            gpu = known
        else:
            gpu = GpuType(str(gpu["name"]), int(gpu["memory_bytes"]), int(gpu.get("nominal_gb") or 0),
                          bool(gpu.get("bf16", True)), verified=False, note="described from the cluster's node labels")
    return NodeType(str(data["name"]), float(data.get("cpu") or 0), int(data.get("memory_bytes") or 0), gpu,
                    int(data.get("gpu_count") or 0), NodeRole(data.get("role") or NodeRole.GPU.value),
                    bool(data.get("verified", False)), str(data.get("note") or ""))


def gpu_from_product(product: str, memory_mib: int | None = None) -> GpuType | None:
    """The known GPU whose product pattern matches a ``nvidia.com/gpu.product`` value, or None."""
    text = product.upper().replace("_", "-").replace(" ", "-")
    for gpu in sorted(GPUS, key=lambda g: -len(g.name)):  # longest names first: L40S before L40
        if any(re.search(pattern, text) for pattern in gpu.products):
            if gpu.name.startswith("A100") and memory_mib:  # the product label may omit the size
                gpu = _GPU_INDEX["a100-80gb" if memory_mib > 60000 else "a100-40gb"]
            return gpu
    return None


def _int(value) -> int:
    try:
        return int(quantity_to_float(str(value)))
    except (ValueError, TypeError):
        return 0


def _memory_mib(value) -> int | None:
    """GPU feature discovery writes MiB as a plain number; hand-made labels sometimes carry a unit ("80Gi")."""
    text = str(value or "").strip()
    if not text:
        return None
    return (int(text) if text.isdigit() else _int(text) // MiB) or None


def _described_gpu(product: str | None, memory_mib: int | None, known: NodeType | None) -> tuple[GpuType | None, list[str]]:
    """The GPU a node's labels describe: the product label's known GPU, else one described from the labels, else
    the known instance type's; with the memory label's size when it differs. Also what the labels leave unknown."""
    gpu = gpu_from_product(product, memory_mib) if product else None
    notes = []
    if gpu is None and product:
        notes.append(f"GPU product '{product}' is not in the toolkit's list")
        if memory_mib:
            gpu = GpuType(product, memory_mib * MiB, round(memory_mib / 1024), products=(re.escape(product),),
                          verified=False, note="unknown GPU model described from node labels")
    gpu = gpu or (known.gpu if known is not None else None)
    if gpu is not None and memory_mib and memory_mib * MiB != gpu.memory_bytes:
        gpu = dataclasses.replace(gpu, memory_bytes=memory_mib * MiB, note="memory from the node's gpu.memory label")
    return gpu, notes


# where a node's GPU count comes from, first found wins: (mapping, key, GPUs per unit)
_GPU_COUNT_SOURCES = (("allocatable", GPU_RESOURCE, 1), ("allocatable", QGPU_CORE_RESOURCE, 100),
                      ("labels", GPU_COUNT_LABEL, 1))


def _gpu_count(labels: dict, allocatable: dict, known: NodeType | None) -> int:
    """GPUs from allocatable ``nvidia.com/gpu``, else TKE qGPU cores / 100, else the count label; with none of
    them, the known instance type's count - only when the node advertised no allocatable resources at all."""
    given = {"allocatable": allocatable, "labels": labels}
    for where, key, per_gpu in _GPU_COUNT_SOURCES:
        value = given[where].get(key)
        if value is not None and (where == "allocatable" or value):
            return _int(value) // per_gpu
    return known.gpu_count if known is not None and not allocatable else 0


def _known(known: NodeType | None, attribute: str, default):
    return getattr(known, attribute) if known is not None else default


def _cpu_memory(allocatable: dict, known: NodeType | None) -> tuple[float, int]:
    """The allocatable CPUs and memory bytes, else the known instance type's."""
    cpu = quantity_to_float(str(allocatable["cpu"])) if allocatable.get("cpu") else _known(known, "cpu", 0.0)
    memory = _int(allocatable["memory"]) if allocatable.get("memory") else _known(known, "memory_bytes", 0)
    return cpu, memory


def node_type_from_labels(labels: dict, allocatable: dict, name: str | None = None) -> NodeType:
    """Describe a node from its labels and ``status.allocatable``.

    The instance type comes from ``node.kubernetes.io/instance-type`` (or the beta label); the GPU model from
    ``nvidia.com/gpu.product`` (GPU feature discovery), else from the known instance type; the GPU count from
    allocatable ``nvidia.com/gpu`` (or TKE qGPU cores / 100). CPU and memory are the allocatable amounts.
    """
    labels, allocatable = dict(labels or {}), dict(allocatable or {})
    instance = next((labels[k] for k in INSTANCE_TYPE_LABELS if labels.get(k)), None)
    known = _NODE_INDEX.get(instance.lower()) if instance else None
    gpu, notes = _described_gpu(labels.get(GPU_PRODUCT_LABEL), _memory_mib(labels.get(GPU_MEMORY_LABEL)), known)
    count = _gpu_count(labels, allocatable, known)
    if count and gpu is None:
        notes.append("the node has GPUs but their model is unknown: install GPU feature discovery or pass --gpu")
    cpu, memory = _cpu_memory(allocatable, known)
    role = NodeRole.GPU if count else _known(known, "role", NodeRole.GENERAL)
    return NodeType(name or instance or "unknown", cpu, memory, gpu if count else None, count, role,
                    verified=_known(known, "verified", False), note="; ".join(notes) or _known(known, "note", ""))


def gpu_rows() -> list[dict]:
    """The known GPUs as plain rows for a table."""
    return [{"gpu": g.name, "memory_GiB": round(g.memory_gib, 1), "nominal_GB": g.nominal_gb, "bf16": g.bf16,
             "verified": g.verified} for g in GPUS]


def node_type_rows() -> list[dict]:
    """The known node types as plain rows for a table."""
    return [{"node_type": n.name, "vCPU": n.cpu, "memory_GiB": round(n.memory_gib),
             "gpu": n.gpu.name if n.gpu else "—", "gpus": n.gpu_count, "role": n.role.value, "verified": n.verified,
             "note": n.note} for n in NODE_TYPES]
