"""Preflight: is this cluster ready for the chosen model? A pass/fail table with what to do for each failure.

Checks: the kubeconfig context answers, nodes are Ready, GPU nodes exist and their GPU fits the model (the
foundation's ``check_fit``), a CFS StorageClass exists, and the LeaderWorkerSet CRD is installed when the serving
spec needs one (lwsGroupSize > 1). A failing check never raises: it becomes a failed row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ClusterError, InvalidSpecError, PlaybookError
from ..specs.catalog import ModelInfo, get_model
from ..specs.checks import CheckRow, PreflightReport
from ..specs.fit import check_fit
from ..specs.serving import ServingSpec
from .client import Kube, cluster_error, connect
from .inventory import CFS_PROVISIONER, NodeInfo, cfs_storage_classes, list_nodes, list_storage_classes

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


def _fit_row(nodes: list[NodeInfo], model: str | ModelInfo, max_model_len, gpu_memory_utilization, tensor_parallel) -> CheckRow:
    info = get_model(model) if isinstance(model, str) else model
    verdicts, seen = [], set()
    for node in nodes:
        gpu = getattr(node.node_type, "gpu", None)
        if gpu is None or (node.gpu_model, node.gpu_count) in seen:  # 1 x L20 and 4 x L20 differ for TP > 1
            continue
        seen.add((node.gpu_model, node.gpu_count))
        kwargs = {"max_model_len": max_model_len, "tensor_parallel": tensor_parallel}
        if gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        try:  # a NodeType makes check_fit refuse a tensor-parallel size above the node's GPU count
            verdicts.append((node, check_fit(info, node.node_type, **kwargs)))
        except InvalidSpecError as exc:  # that node is no candidate; another one may be
            verdicts.append((node, _Refused(exc.message)))
    if not verdicts:
        return CheckRow("model fits GPU", False, f"no GPU model could be identified for {info.hf_id}",
                        "Label the GPU nodes with nvidia.com/gpu.product or use a known instance type.")
    detail = "; ".join(f"{node.gpu_count} x {node.gpu_model}: {verdict.summary().rstrip('.')}"
                       for node, verdict in verdicts)
    if any(verdict.fits for _, verdict in verdicts):
        misfits = [f"{node.gpu_count} x {node.gpu_model}" for node, verdict in verdicts if not verdict.fits]
        fits = sorted({n.instance_type for n, v in verdicts if v.fits and n.instance_type})
        action = (f"Pin serving to the nodes where it fits (instance type {', '.join(fits) or 'with that GPU'}): "
                  f"it does not fit on {', '.join(misfits)}." if misfits else "")
        return CheckRow("model fits GPU", True, detail, action)
    action = " ".join(dict.fromkeys(str(v.recommendation) for _, v in verdicts if v.recommendation))
    return CheckRow("model fits GPU", False, detail, action or "Use a GPU with more memory or a smaller model.")


def _storage_row(kube: Kube, storage_class: str | None) -> CheckRow:
    classes = list_storage_classes(kube)
    cfs = cfs_storage_classes(classes)
    create = ("Install the CFS add-on (TKE console: cluster > Add-ons > CFS), then create a StorageClass in the GPU "
              "node's zone: apply(kube, build_storage_class(StorageSpec(...))).")
    if storage_class:
        named = next((sc for sc in classes if sc["metadata"]["name"] == storage_class), None)
        if named is None:
            return CheckRow("CFS StorageClass", False, f"StorageClass '{storage_class}' does not exist "
                            f"(CFS classes: {', '.join(sc['metadata']['name'] for sc in cfs) or 'none'})", create)
        if named.get("provisioner") != CFS_PROVISIONER:
            return CheckRow("CFS StorageClass", False, f"StorageClass '{storage_class}' uses "
                            f"{named.get('provisioner')}, not CFS ({CFS_PROVISIONER})",
                            "Use a CFS StorageClass: the model volume must be shared by download and serving pods.")
        return CheckRow("CFS StorageClass", True, f"'{storage_class}' ({CFS_PROVISIONER})")
    if not cfs:
        return CheckRow("CFS StorageClass", False, "no StorageClass uses the CFS provisioner", create)
    return CheckRow("CFS StorageClass", True, ", ".join(sc["metadata"]["name"] for sc in cfs))


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


def run_preflight(kube: Kube, model: str | ModelInfo | None = None, serving_spec: ServingSpec | None = None, storage_class: str | None = None,
                  lws: bool = False, *, max_model_len: int | None = None,
                  gpu_memory_utilization: float | None = None) -> PreflightReport:
    """Check the cluster for ``model`` (a catalog name or ModelInfo; or taken from ``serving_spec``)."""
    spec = serving_spec
    if spec is not None:
        model = model or getattr(spec, "model", None)
        max_model_len = max_model_len or getattr(spec, "max_model_len", None)
        gpu_memory_utilization = gpu_memory_utilization or getattr(spec, "gpu_memory_utilization", None)
        lws = lws or int(getattr(spec, "lws_group_size", 1) or 1) > 1
    tensor_parallel = int(getattr(spec, "tp_size", None) or getattr(spec, "tensor_parallel", None) or 1)
    pinned = tuple(getattr(spec, "node_instance_types", None) or ())
    try:
        version = kube.version.get_code(_request_timeout=10)
        rows = [CheckRow("cluster reachable", True, f"context {kube.context or '(default)'}, Kubernetes "
                                                    f"{version.git_version}")]
    except Exception as exc:
        err = cluster_error(exc, "read the cluster version", kube)
        where = kube.host if kube.context in (None, kube.host) else f"context {kube.context} at {kube.host}"
        rows = [CheckRow("cluster reachable", False, f"{where} did not answer", err.message)]
        return PreflightReport(tuple(rows) + _skipped(model, lws))
    nodes: list[NodeInfo] = []

    def nodes_row() -> CheckRow:
        nodes.extend(list_nodes(kube))
        ready = [n for n in nodes if n.ready]
        if not ready:
            return CheckRow("nodes", False, f"{len(nodes)} node(s), none Ready",
                            "Add a node pool in the TKE console or wait for the nodes to become Ready.")
        return CheckRow("nodes", True, f"{len(ready)} of {len(nodes)} node(s) Ready")

    def gpu_row() -> CheckRow:
        gpus = [n for n in nodes if n.has_gpu]
        if not gpus:
            return CheckRow("GPU nodes", False, "no node offers nvidia.com/gpu",
                            "Add a GPU node pool (e.g. PNV5b.8XLARGE96 with one L20 48 GB) and make sure the GPU "
                            "driver/device plugin is installed (TKE installs it on GPU instance types).")
        return CheckRow("GPU nodes", True, "; ".join(f"{n.name} ({n.instance_type}, {_gpu_label(n)})"
                                                     for n in gpus))

    def pinned_row() -> CheckRow:
        matching = [n for n in nodes if n.has_gpu and n.instance_type in pinned]
        if not matching:
            have = sorted({n.instance_type for n in nodes if n.has_gpu}) or ["none"]
            return CheckRow("instance types", False, f"the serving spec pins {', '.join(pinned)}; GPU nodes are "
                            f"{', '.join(have)}", "Change node_instance_types to a type the cluster has, or add a "
                            "node of that type - otherwise the pod stays Pending (no node matches its selector).")
        return CheckRow("instance types", True, f"{len(matching)} GPU node(s) of {', '.join(pinned)}")

    rows.append(_guard("nodes", kube, nodes_row))
    rows.append(_guard("GPU nodes", kube, gpu_row))
    gpu_ok = rows[-1].ok
    if pinned:
        rows.append(_guard("instance types", kube, pinned_row) if gpu_ok else
                    CheckRow("instance types", None, "skipped: no GPU node"))
    if model is not None:
        candidates = [n for n in nodes if n.has_gpu and (not pinned or n.instance_type in pinned)]
        if gpu_ok and candidates:
            rows.append(_guard("model fits GPU", kube, lambda: _fit_row(
                candidates, model, max_model_len, gpu_memory_utilization, tensor_parallel)))
        else:
            rows.append(CheckRow("model fits GPU", None, "skipped: no GPU node to check"))
    namespace = getattr(spec, "namespace", None)
    if namespace:
        rows.append(_guard("namespace", kube, lambda: _namespace_row(kube, namespace)))
    rows.append(_guard("CFS StorageClass", kube, lambda: _storage_row(kube, storage_class)))
    if lws:
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
