"""What served the measured requests, and what a GPU might do instead (a projection, never a measurement).

A load test measures one server on one machine. :class:`ServedOn` says which: the local CPU server (the
machine's CPU model and cores, read from ``/proc/cpuinfo``) or GPUs of a TKE node type (the serving spec's
``gpu`` on the node type chosen in 00). Plans, MFU and figures take it so they never speak of hardware that did
not serve: MFU only against the peak of the GPU that served; locally, replicas of the server that was measured.

:func:`project_gpu` estimates what a GPU node type would need for a load, from first principles: one embedded
token costs ``2 x parameters`` FLOPs, and a GPU delivers ``MFU x its dense bf16 peak``. The MFU is cited, not
guessed: facts.md section 9 measured e5-mistral-7b-instruct at about 34,000 tokens/s on one H200 whose bf16
matmul reached about 790 TFLOP/s - 61% of that peak; models measured there use their own figure. The peak is the
node's GPU's spec sheet value (:data:`~tke_playbook.specs.hardware.PEAK_BF16_TFLOPS`). The result is a
:class:`GpuProjection`, shown as a block titled "Projection, not a measurement" with its assumptions.
"""

from __future__ import annotations

import html
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import InvalidSpecError
from ..hostenv import load_prices
from ..reporting import estimate_text
from ..specs.catalog import get_model
from ..specs.hardware import get_gpu, get_node_type, peak_bf16_tflops
from ..specs.prices import price_of

PROJECTION_TITLE = "Projection, not a measurement"
H200_MEASURED_PEAK_TFLOPS = 790.0  # facts.md section 9: bf16 dense matmul measured on one H200
# facts.md section 9: forward tokens/s on one H200 (HF transformers, bf16), model -> (tokens/s, how measured)
H200_TOKENS_PER_S = {
    "intfloat/e5-mistral-7b-instruct": (34_000.0, "2k-8k tokens per step"),
    "Qwen/Qwen3-Embedding-8B": (30_500.0, "29,000-32,000 tokens/s"),
    "Qwen/Qwen3-Embedding-0.6B": (140_000.0, "2k-8k tokens per step"),
    "BAAI/bge-large-en-v1.5": (740_000.0, "32 x 512 tokens per step"),
}
CITED_MODEL = "intfloat/e5-mistral-7b-instruct"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores() -> int:
    """The cores this process may use (its CPU affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ServedOn:
    """The hardware a measurement ran on: the local CPU server (``gpu`` None) or ``gpus`` x ``gpu`` per replica
    on ``node_type`` nodes."""

    model: str
    gpu: str | None = None
    gpus: int = 1
    node_type: str | None = None
    cpu: str = ""
    cores: int = 0

    @property
    def on_gpu(self) -> bool:
        return self.gpu is not None

    @property
    def replica(self) -> str:
        """What one replica is, in words."""
        if self.on_gpu:
            return f"{self.gpus} x {self.gpu} on a {self.node_type} node" if self.node_type else \
                f"{self.gpus} x {self.gpu}"
        return f"one local CPU server ({self.cpu}, {self.cores} cores)"

    def __str__(self) -> str:
        """``measured on: all-MiniLM-L6-v2, one local CPU server (AMD EPYC, 2 cores)`` - for figures and tables."""
        return f"measured on: {get_model(self.model).short_name}, {self.replica}"


def local_server(model: str) -> ServedOn:
    """The local target: the CPU server on this machine."""
    return ServedOn(get_model(model).hf_id, cpu=cpu_model(), cores=cpu_cores())


def on_gpus(spec, node_type=None) -> ServedOn:
    """What served ``spec`` on a cluster: the spec's GPU (else the node type's), ``spec.gpu_count`` per replica, on
    ``node_type`` (the one chosen in 00). The local target's answer is :func:`local_server`; each target's serving
    step says which applies (``pb.serving.hardware()``)."""
    model = getattr(spec, "model", None)
    if not model:
        raise InvalidSpecError("what served needs the deployed serving spec: run 03_deploy_vllm first", field="spec",
                               value=spec)
    node = get_node_type(node_type) if node_type is not None else None
    gpu = getattr(spec, "gpu", None) or (node.gpu.name if node is not None and node.gpu is not None else None)
    if gpu is None:
        raise InvalidSpecError("the serving spec names no GPU and no GPU node type was chosen: choose one in "
                               "00_prerequisites", field="gpu", value=None)
    return ServedOn(get_model(model).hf_id, get_gpu(gpu).name, int(getattr(spec, "gpu_count", 1) or 1),
                    node.name if node is not None else None)


def cited_mfu(model) -> tuple[float, str]:
    """The MFU a projection assumes for ``model`` and where it comes from (facts.md section 9)."""
    info = get_model(model)
    measured = info.hf_id if info.hf_id in H200_TOKENS_PER_S else CITED_MODEL
    tokens, how = H200_TOKENS_PER_S[measured]
    mfu = tokens * 2 * get_model(measured).params / (H200_MEASURED_PEAK_TFLOPS * 1e12)
    source = (f"{mfu:.0%}: {get_model(measured).short_name} ran {tokens:,.0f} tokens/s ({how}) on one H200, "
              f"{mfu:.0%} of its measured {H200_MEASURED_PEAK_TFLOPS:g} TFLOP/s bf16 peak (facts.md section 9)")
    if measured != info.hf_id:
        source += (f"; {info.short_name} was not measured there, and a model this size is usually held back by "
                   "tokenisation and the API server long before that" if info.params < 1e9 else
                   f"; {info.short_name} was not measured there")
    return mfu, source


@dataclass(frozen=True)
class GpuProjection:
    """An estimate of what ``node_type`` would need for a load - from FLOPs per token and a cited MFU, never from
    a measurement on that hardware. ``possible`` is False (with ``why``) when the GPU has no known bf16 peak."""

    loads: tuple[str, ...]  # each load in words, with the tokens/s it makes; needed_tokens_per_s is their sum
    model: str
    node_type: str
    gpu: str
    gpus_per_node: int
    needed_tokens_per_s: float
    possible: bool = True
    why: str = ""
    peak_tflops: float = math.nan
    mfu: float = math.nan
    mfu_source: str = ""
    tokens_per_s_per_gpu: float = math.nan
    gpus: int = 0
    nodes: int = 0
    cost_per_day: float | None = None
    currency: str = ""
    price_verified: bool = False
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    def table(self) -> pd.DataFrame:
        rows = [*(("load", one) for one in self.loads),
                ("node type", f"{self.node_type} ({self.gpus_per_node} x {self.gpu})")]
        if not self.possible:
            rows.append(("projection", self.why))
        else:
            cost = "no price for this node type" if self.cost_per_day is None else (
                f"{estimate_text(self.cost_per_day)} {self.currency}/day" +
                ("" if self.price_verified else " (illustrative price: set your own)"))
            per_gpu = estimate_text(self.tokens_per_s_per_gpu)
            rows += [("per GPU (estimate)", f"{per_gpu} tokens/s = {self.mfu:.0%} MFU x {self.peak_tflops:g} TFLOP/s "
                                            f"/ (2 x {get_model(self.model).params:,} params)"),
                     ("needed", f"{self.needed_tokens_per_s:,.0f} tokens/s" +
                      (" (the loads together)" if len(self.loads) > 1 else "")),
                     ("GPUs (estimate)", f"{self.gpus}"), ("nodes (estimate)", f"{self.nodes} x {self.node_type}"),
                     ("cost (estimate)", cost)]
        rows += [("assumption", text) for text in self.assumptions]
        return pd.DataFrame(rows, columns=["item", "value"])

    def __str__(self) -> str:
        lines = [f"{PROJECTION_TITLE}: {self.model} on {self.node_type}"]
        lines += [f"  {item}: {value}" for item, value in self.table().itertuples(index=False)]
        return "\n".join(lines)

    def __repr__(self) -> str:  # the plain-text form a notebook shows: the labelled block, never bare figures
        return str(self)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(item))}</th>"
                       f"<td style='text-align:left'>{html.escape(str(value))}</td></tr>"
                       for item, value in self.table().itertuples(index=False))
        return (f'<div class="tke-playbook-projection" style="border:2px dashed #9a6700;background:#fff8c5;'
                f'padding:6px 10px;margin:4px 0;max-width:900px"><b>{PROJECTION_TITLE}</b>: {html.escape(self.model)}'
                f' on {html.escape(self.node_type)}<table style="font-size:90%">{rows}</table></div>')


def _needed_tokens_per_s(load, tokens_per_query: float | None) -> float:
    if hasattr(load, "tokens_per_s"):
        return float(load.tokens_per_s)
    if hasattr(load, "queries_per_s"):
        if not tokens_per_query or not math.isfinite(tokens_per_query) or tokens_per_query <= 0:
            raise InvalidSpecError("a query load needs tokens_per_query (or per_query, the measured sustainable "
                                   "rate) to project", field="tokens_per_query", value=tokens_per_query)
        return float(load.queries_per_s) * tokens_per_query
    raise InvalidSpecError("load must be a DocumentLoad or a QueryLoad", field="load", value=type(load).__name__)


def _tokens_per_query(per_query, tokens_per_query: float | None) -> float | None:
    """Prompt tokens of one query request: given, or from a measured SustainableRate (tokens/s over req/s)."""
    if tokens_per_query is not None or per_query is None:
        return tokens_per_query
    rate, tokens = getattr(per_query, "rate", 0.0), getattr(per_query, "tokens_per_s", 0.0)
    return tokens / rate if rate and rate > 0 else None


def project_gpu(load, model, node_type, *, tokens_per_query: float | None = None, per_query=None,
                prices=None) -> GpuProjection:
    """What ``node_type`` nodes would need for ``load`` (a DocumentLoad, a QueryLoad, or a list: their tokens/s
    add up) serving ``model``: an estimate from ``2 x params`` FLOPs per token and the MFU of :func:`cited_mfu`
    against the node GPU's spec-sheet bf16 peak. A QueryLoad needs the prompt tokens of one query:
    ``tokens_per_query``, or ``per_query`` (the measured SustainableRate, whose tokens/s per req/s say it)."""
    node = get_node_type(node_type)
    info = get_model(model)
    if node.gpu is None:
        raise InvalidSpecError(f"{node.name} has no GPU: pick a GPU node type to project on", field="node_type",
                               value=node.name)
    loads = list(load) if isinstance(load, (list, tuple)) else [load]
    if not loads:
        raise InvalidSpecError("project_gpu needs at least one load", field="load", value=load)
    per_query_tokens = _tokens_per_query(per_query, tokens_per_query)
    needed = sum(_needed_tokens_per_s(one, per_query_tokens) for one in loads)
    source = "as measured" if tokens_per_query is None else "as given"
    described = tuple(one.describe(per_query_tokens, source) if hasattr(one, "queries_per_s") else one.describe()
                      for one in loads)
    common = {"loads": described, "model": info.hf_id, "node_type": node.name, "gpu": node.gpu.name,
              "gpus_per_node": node.gpu_count, "needed_tokens_per_s": needed}
    peak = peak_bf16_tflops(node.gpu)
    if peak is None:
        return GpuProjection(**common, possible=False,
                             why=f"no dense bf16 peak is known for the {node.gpu.name}: nothing to project from")
    mfu, source = cited_mfu(info)
    per_gpu = mfu * peak * 1e12 / (2 * info.params)
    gpus = max(1, math.ceil(needed / per_gpu - 1e-9))
    nodes = math.ceil(gpus / node.gpu_count)
    price = price_of(node.name, prices if prices is not None else load_prices())
    assumptions = (f"FLOPs per token = 2 x {info.params:,} parameters (attention and the embedding lookup "
                   "left out, as usual for MFU)",
                   f"MFU {source}",
                   f"peak {peak:g} TFLOP/s: the {node.gpu.name}'s dense bf16 spec-sheet value, not measured",
                   "compute-bound: no latency target, no batching limits, no API-server overhead - measure on "
                   "the GPU (this notebook on the cluster target) before buying")
    return GpuProjection(**common, peak_tflops=peak, mfu=mfu, mfu_source=source, tokens_per_s_per_gpu=per_gpu,
                         gpus=gpus, nodes=nodes, cost_per_day=None if price is None else nodes * price.per_day,
                         currency=price.currency if price else "", price_verified=bool(price and price.verified),
                         assumptions=assumptions)
