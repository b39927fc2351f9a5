"""Preflight: is this cluster ready for the chosen model? A pass/fail table with what to do for each failure.

Checks: the kubeconfig context answers, nodes are Ready, GPU nodes exist and their GPU fits the model (the
foundation's ``check_fit``), a CFS StorageClass exists, and the LeaderWorkerSet CRD is installed when the serving
spec needs one (lwsGroupSize > 1). A failing check never raises: it becomes a failed row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ClusterError, InvalidSpecError, PlaybookError
from ..specs.catalog import ModelInfo, get_model
from ..specs.checks import CheckRow, PreflightReport
from ..specs.fit import check_fit
from ..specs.objects import StorageClass
from ..specs.serving import ServingSpec
from .client import Kube, cluster_error, connect
from .inventory import CFS_PROVISIONER, NodeInfo, list_nodes, list_storage_classes

LWS_CRD = "leaderworkersets.leaderworkerset.x-k8s.io"
LWS_INSTALL = ("kubectl apply --server-side -f https://github.com/kubernetes-sigs/lws/releases/latest/download/"
               "manifests.yaml")


def _gpu_label(node: NodeInfo) -> str:
    memory = f" {node.gpu_memory_bytes / 2**30:.0f} GiB" if node.gpu_memory_bytes else ""
    return f"{node.gpu_count} x {node.gpu_model or 'unknown GPU'}{memory}"


@dataclass(frozen=True)
class _Refused:
    """Stands in for a FitVerdict on a node that check_fit refused outright (e.g. too few GPUs for TP)."""

    reason: str
    fits: bool = False

    @property
    def recommendation(self) -> str:
        return self.reason

    def summary(self) -> str:
        return self.reason


@dataclass(frozen=True)
class _Wanted:
    """What the checks look for: the arguments, completed from the serving spec where one is given."""

    model: str | ModelInfo | None = None
    storage_class: str | None = None
    lws: bool = False
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel: int = 1
    pinned: tuple[str, ...] = ()
    namespace: str | None = None

    @classmethod
    def of(cls, model, spec, storage_class, lws, max_model_len, gpu_memory_utilization) -> "_Wanted":
        if spec is None:
            return cls(model, storage_class, lws, max_model_len, gpu_memory_utilization)
        return cls(model or getattr(spec, "model", None), storage_class,
                   lws or int(getattr(spec, "lws_group_size", 1) or 1) > 1,
                   max_model_len or getattr(spec, "max_model_len", None),
                   gpu_memory_utilization or getattr(spec, "gpu_memory_utilization", None),
                   int(getattr(spec, "tp_size", None) or getattr(spec, "tensor_parallel", None) or 1),
                   tuple(getattr(spec, "node_instance_types", None) or ()), getattr(spec, "namespace", None))

    def fit_options(self) -> dict:
        options = {"max_model_len": self.max_model_len, "tensor_parallel": self.tensor_parallel}
        if self.gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = self.gpu_memory_utilization
        return options

    def candidates(self, nodes: list[NodeInfo]) -> list[NodeInfo]:
        """The GPU nodes serving may land on (the pinned instance types, when the spec pins some)."""
        return [n for n in nodes if n.has_gpu and (not self.pinned or n.instance_type in self.pinned)]


def _verdicts(nodes: list[NodeInfo], info: ModelInfo, wanted: _Wanted) -> list[tuple[NodeInfo, Any]]:
    """check_fit on each kind of GPU node once (1 x L20 and 4 x L20 differ for TP > 1)."""
    verdicts, seen = [], set()
    for node in nodes:
        if node.node_type is None or node.node_type.gpu is None or (node.gpu_model, node.gpu_count) in seen:
            continue
        seen.add((node.gpu_model, node.gpu_count))
        try:  # a NodeType makes check_fit refuse a tensor-parallel size above the node's GPU count
            verdicts.append((node, check_fit(info, node.node_type, **wanted.fit_options())))
        except InvalidSpecError as exc:  # that node is no candidate; another one may be
            verdicts.append((node, _Refused(exc.message)))
    return verdicts


def _fit_row(nodes: list[NodeInfo], wanted: _Wanted) -> CheckRow:
    info = get_model(wanted.model) if isinstance(wanted.model, str) else wanted.model
    verdicts = _verdicts(nodes, info, wanted)
    if not verdicts:
        return CheckRow("model fits GPU", False, f"no GPU model could be identified for {info.hf_id}",
                        "Label the GPU nodes with nvidia.com/gpu.product or use a known instance type.")
    detail = "; ".join(f"{node.gpu_count} x {node.gpu_model}: {verdict.summary().rstrip('.')}"
                       for node, verdict in verdicts)
    if any(verdict.fits for _, verdict in verdicts):
        return CheckRow("model fits GPU", True, detail, _pin_action(verdicts))
    action = " ".join(dict.fromkeys(str(v.recommendation) for _, v in verdicts if v.recommendation))
    return CheckRow("model fits GPU", False, detail, action or "Use a GPU with more memory or a smaller model.")


def _pin_action(verdicts: list[tuple[NodeInfo, Any]]) -> str:
    """When the model fits some GPU nodes but not others: pin serving to those it fits ('' when it fits all)."""
    misfits = [f"{node.gpu_count} x {node.gpu_model}" for node, verdict in verdicts if not verdict.fits]
    if not misfits:
        return ""
    fits = sorted({n.instance_type for n, v in verdicts if v.fits and n.instance_type})
    return (f"Pin serving to the nodes where it fits (instance type {', '.join(fits) or 'with that GPU'}): it does "
            f"not fit on {', '.join(misfits)}.")


def _storage_row(kube: Kube, storage_class: str | None) -> CheckRow:
    classes = [StorageClass.of(sc) for sc in list_storage_classes(kube)]
    cfs = [sc.name for sc in classes if sc.provisioner == CFS_PROVISIONER]
    create = ("Install the CFS add-on (TKE console: cluster > Add-ons > CFS), then create a StorageClass in the GPU "
              "node's zone: apply(kube, build_storage_class(StorageSpec(...))).")
    if not storage_class:
        return (CheckRow("CFS StorageClass", True, ", ".join(cfs)) if cfs else
                CheckRow("CFS StorageClass", False, "no StorageClass uses the CFS provisioner", create))
    named = next((sc for sc in classes if sc.name == storage_class), None)
    if named is None:
        return CheckRow("CFS StorageClass", False, f"StorageClass '{storage_class}' does not exist "
                        f"(CFS classes: {', '.join(cfs) or 'none'})", create)
    if named.provisioner != CFS_PROVISIONER:
        return CheckRow("CFS StorageClass", False, f"StorageClass '{storage_class}' uses {named.provisioner}, not "
                        f"CFS ({CFS_PROVISIONER})",
                        "Use a CFS StorageClass: the model volume must be shared by download and serving pods.")
    return CheckRow("CFS StorageClass", True, f"'{storage_class}' ({CFS_PROVISIONER})")


def _lws_row(kube: Kube) -> CheckRow:
    try:
        kube.apiext.read_custom_resource_definition(LWS_CRD)
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            return CheckRow("LeaderWorkerSet CRD", False, f"CRD {LWS_CRD} is not installed",
                            f"Install LWS: {LWS_INSTALL} - or set lwsGroupSize to 1.")
        raise
    return CheckRow("LeaderWorkerSet CRD", True, f"{LWS_CRD} installed")


def _namespace_row(kube: Kube, namespace: str) -> CheckRow:
    try:
        kube.core.read_namespace(namespace)
    except Exception as exc:
        if getattr(exc, "status", None) == 404:
            return CheckRow("namespace", False, f"namespace '{namespace}' does not exist",
                            f"Create it: apply(kube, {{'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': "
                            f"{{'name': '{namespace}'}}}}) or kubectl create namespace {namespace}.")
        raise
    return CheckRow("namespace", True, f"'{namespace}' exists")


def _guard(name: str, kube: Kube, fn: Callable[[], CheckRow]) -> CheckRow:
    try:
        return fn()
    except PlaybookError as exc:
        return CheckRow(name, False, str(exc).split(":")[0], str(exc))
    except Exception as exc:
        return CheckRow(name, False, f"check failed: {exc}", cluster_error(exc, f"check {name}", kube).message)


def _reachable_row(kube: Kube) -> CheckRow:
    try:
        version = kube.version.get_code(_request_timeout=10)
    except Exception as exc:
        err = cluster_error(exc, "read the cluster version", kube)
        where = kube.host if kube.context in (None, kube.host) else f"context {kube.context} at {kube.host}"
        return CheckRow("cluster reachable", False, f"{where} did not answer", err.message)
    return CheckRow("cluster reachable", True, f"context {kube.context or '(default)'}, Kubernetes "
                                               f"{version.git_version}")


def _nodes_row(kube: Kube, nodes: list[NodeInfo]) -> CheckRow:
    """Reads the nodes into ``nodes`` (the later rows judge them) and checks some are Ready."""
    nodes.extend(list_nodes(kube))
    ready = [n for n in nodes if n.ready]
    if not ready:
        return CheckRow("nodes", False, f"{len(nodes)} node(s), none Ready",
                        "Add a node pool in the TKE console or wait for the nodes to become Ready.")
    return CheckRow("nodes", True, f"{len(ready)} of {len(nodes)} node(s) Ready")


def _gpu_row(nodes: list[NodeInfo]) -> CheckRow:
    gpus = [n for n in nodes if n.has_gpu]
    if not gpus:
        return CheckRow("GPU nodes", False, "no node offers nvidia.com/gpu",
                        "Add a GPU node pool (e.g. PNV5b.8XLARGE96 with one L20 48 GB) and make sure the GPU "
                        "driver/device plugin is installed (TKE installs it on GPU instance types).")
    return CheckRow("GPU nodes", True, "; ".join(f"{n.name} ({n.instance_type}, {_gpu_label(n)})" for n in gpus))


def _pinned_row(nodes: list[NodeInfo], pinned: tuple[str, ...]) -> CheckRow:
    matching = [n for n in nodes if n.has_gpu and n.instance_type in pinned]
    if not matching:
        have = sorted({n.instance_type for n in nodes if n.has_gpu}) or ["none"]
        return CheckRow("instance types", False, f"the serving spec pins {', '.join(pinned)}; GPU nodes are "
                        f"{', '.join(have)}", "Change node_instance_types to a type the cluster has, or add a "
                        "node of that type - otherwise the pod stays Pending (no node matches its selector).")
    return CheckRow("instance types", True, f"{len(matching)} GPU node(s) of {', '.join(pinned)}")


def _gpu_fit_rows(kube: Kube, nodes: list[NodeInfo], wanted: _Wanted, gpu_ok: bool) -> list[CheckRow]:
    """The pinned instance types and whether the model fits their GPUs (skipped without a GPU node)."""
    rows = []
    if wanted.pinned:
        rows.append(_guard("instance types", kube, lambda: _pinned_row(nodes, wanted.pinned)) if gpu_ok else
                    CheckRow("instance types", None, "skipped: no GPU node"))
    if wanted.model is None:
        return rows
    candidates = wanted.candidates(nodes)
    if gpu_ok and candidates:
        rows.append(_guard("model fits GPU", kube, lambda: _fit_row(candidates, wanted)))
    else:
        rows.append(CheckRow("model fits GPU", None, "skipped: no GPU node to check"))
    return rows


def run_preflight(kube: Kube, model: str | ModelInfo | None = None, serving_spec: ServingSpec | None = None,
                  storage_class: str | None = None, lws: bool = False, *, max_model_len: int | None = None,
                  gpu_memory_utilization: float | None = None) -> PreflightReport:
    """Check the cluster for ``model`` (a catalog name or ModelInfo; or taken from ``serving_spec``)."""
    wanted = _Wanted.of(model, serving_spec, storage_class, lws, max_model_len, gpu_memory_utilization)
    reachable = _reachable_row(kube)
    if not reachable.ok:
        return PreflightReport((reachable,) + _skipped(wanted.model, wanted.lws))
    nodes: list[NodeInfo] = []
    rows = [reachable, _guard("nodes", kube, lambda: _nodes_row(kube, nodes)),
            _guard("GPU nodes", kube, lambda: _gpu_row(nodes))]
    rows += _gpu_fit_rows(kube, nodes, wanted, gpu_ok=bool(rows[-1].ok))
    if wanted.namespace:
        rows.append(_guard("namespace", kube, lambda: _namespace_row(kube, wanted.namespace)))
    rows.append(_guard("CFS StorageClass", kube, lambda: _storage_row(kube, storage_class)))
    if wanted.lws:
        rows.append(_guard("LeaderWorkerSet CRD", kube, lambda: _lws_row(kube)))
    return PreflightReport(tuple(rows))


def _skipped(model: str | ModelInfo | None, lws: bool) -> tuple[CheckRow, ...]:
    names = ["nodes", "GPU nodes"] + (["model fits GPU"] if model is not None else []) + ["CFS StorageClass"] + (
        ["LeaderWorkerSet CRD"] if lws else [])
    return tuple(CheckRow(name, None, "skipped: cluster not reachable") for name in names)


def preflight(kubeconfig: str | None = None, context: str | None = None, **kwargs) -> PreflightReport:
    """Connect and run the checks; a missing or broken kubeconfig is a failed row too."""
    try:
        kube = connect(kubeconfig, context)
    except ClusterError as exc:
        row = CheckRow("kubeconfig", False, str(exc).split(":")[0], str(exc))
        return PreflightReport((row,) + _skipped(kwargs.get("model"), kwargs.get("lws", False)))
    with kube:
        return run_preflight(kube, **kwargs)
