"""Capacity planning from a load sweep: the sustainable rate per replica at a p99 target, then replicas, GPUs,
nodes and cost for a stated load. Pure functions on loadgen summaries; the runs themselves are in ``search``.

*Sustainable rate*: in an open-loop (Poisson) sweep, the highest offered rate at which every level up to it kept
p99 within ``target x (1 - margin)`` and had no errors (open-loop latency runs from each request's scheduled
arrival, so a server falling behind shows as latency; ``min_delivery`` can also demand achieved >= that share of
the offered rate, though over a short level Poisson noise alone moves it by 10% or more). Above capacity
a queue builds without bound and p99 jumps (latency = queue wait + service time), so the sweep finds the knee.
The ``margin`` (default 20% of the latency target) absorbs run-to-run noise so a replay at that rate holds.
A closed-loop sweep gives only an optimistic bound (its arrivals are never bursty): prefer the open loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..errors import InvalidSpecError
from ..specs.hardware import get_node_type
from ..specs.names import validate_number
from ..specs.prices import load_prices, price_of


@dataclass(frozen=True)
class SustainableRate:
    """Per replica: ``rate`` req/s (and the embeddings/s and tokens/s it carries) keeping ``p99_ms`` <= target."""

    rate: float
    p99_ms: float
    target_ms: float
    embeddings_per_s: float
    tokens_per_s: float
    input_tokens: int
    inputs: int
    kind: str = "open"      # open: an offered Poisson rate; closed: measured at a concurrency (optimistic)
    level: float = math.nan  # the offered rate or the concurrency it came from
    margin: float = 0.2

    def __str__(self) -> str:
        return (f"{self.rate:,.1f} req/s per replica ({self.embeddings_per_s:,.0f} embeddings/s, "
                f"{self.tokens_per_s:,.0f} tokens/s) at p99 {self.p99_ms:,.0f} ms <= {self.target_ms:,.0f} ms "
                f"[{self.input_tokens} tokens x {self.inputs} input(s) per request, {self.kind} loop]")


def _one_shape(summary: pd.DataFrame, input_tokens, inputs) -> pd.DataFrame:
    data = summary
    if input_tokens is not None:
        data = data[data["input_tokens"] == input_tokens]
    if inputs is not None and "inputs" in data:
        data = data[data["inputs"] == inputs]
    shapes = data[["input_tokens", *(["inputs"] if "inputs" in data else [])]].drop_duplicates()
    if len(shapes) > 1:
        raise InvalidSpecError(f"the summary holds {len(shapes)} request shapes (input length x inputs): pass "
                               f"input_tokens= and inputs= to pick one", field="input_tokens",
                               value=shapes.to_dict("records"))
    if data.empty:
        raise InvalidSpecError("no level of the summary matches that input length / inputs per request",
                               field="input_tokens", value=(input_tokens, inputs))
    return data


def _passes(row, limit_ms: float, max_error_rate: float, min_delivery: float, kind: str) -> bool:
    delivered = kind == "closed" or row["req_per_s"] >= min_delivery * row["rate"]
    return bool(row["p99_ms"] <= limit_ms and row["error_rate"] <= max_error_rate and delivered)


def sustainable_rate(summary: pd.DataFrame, p99_target_ms: float, *, margin: float = 0.2,
                     max_error_rate: float = 0.0, min_delivery: float = 0.0, input_tokens: int | None = None,
                     inputs: int | None = None) -> SustainableRate | None:
    """The sustainable rate of one request shape in a loadgen summary, or None when no level kept the target."""
    target = validate_number(p99_target_ms, "p99_target_ms", 200)
    if not 0 <= margin < 1:
        raise InvalidSpecError(f"margin {margin!r} must be a fraction in [0, 1), such as 0.2", field="margin",
                               value=margin)
    kind = "open" if "rate" in summary and summary["rate"].notna().any() else "closed"
    data = _one_shape(summary, input_tokens, inputs).sort_values("rate" if kind == "open" else "concurrency")
    limit = target * (1 - margin)
    best = None
    for _, row in data.iterrows():
        if not _passes(row, limit, max_error_rate, min_delivery, kind):
            if kind == "open":
                break  # above the first failing rate the queue only grows: a later pass is noise
            continue
        if kind == "open" or best is None or row["req_per_s"] > best["req_per_s"]:
            best = row
    if best is None:
        return None
    rate = float(best["rate"]) if kind == "open" else float(best["req_per_s"])
    per_request = rate / float(best["req_per_s"]) if best["req_per_s"] > 0 else math.nan
    return SustainableRate(rate, float(best["p99_ms"]), target, float(best["embeddings_per_s"]) * per_request,
                           float(best["tokens_per_s"]) * per_request, int(best["input_tokens"]),
                           int(best["inputs"]) if "inputs" in best else 1, kind,
                           float(best["rate" if kind == "open" else "concurrency"]), margin)


@dataclass(frozen=True)
class DocumentLoad:
    """Bulk ingestion: ``documents_per_day`` of ``avg_tokens`` tokens, spread over ``hours_per_day`` hours, with
    peaks ``peak_factor`` times the average."""

    documents_per_day: float
    avg_tokens: int
    hours_per_day: float = 24.0
    peak_factor: float = 1.0

    def __post_init__(self):
        validate_number(self.documents_per_day, "documents_per_day", 1_000_000)
        validate_number(self.avg_tokens, "avg_tokens", 512, whole=True)
        if not 0 < validate_number(self.hours_per_day, "hours_per_day", 24) <= 24:
            raise InvalidSpecError(f"hours_per_day {self.hours_per_day} must be at most 24", field="hours_per_day",
                                   value=self.hours_per_day)
        validate_number(self.peak_factor, "peak_factor", 1.5, minimum=1.0, strict=False)

    @property
    def tokens_per_s(self) -> float:
        return self.documents_per_day * self.avg_tokens / (self.hours_per_day * 3600) * self.peak_factor

    def describe(self) -> str:
        return (f"{self.documents_per_day:,.0f} documents/day x {self.avg_tokens} tokens over "
                f"{self.hours_per_day:g} h (peak x{self.peak_factor:g}) = {self.tokens_per_s:,.0f} tokens/s")


@dataclass(frozen=True)
class QueryLoad:
    """Online queries: ``queries_per_s`` single-input requests that must answer within ``p99_target_ms``."""

    queries_per_s: float
    p99_target_ms: float

    def __post_init__(self):
        validate_number(self.queries_per_s, "queries_per_s", 50)
        validate_number(self.p99_target_ms, "p99_target_ms", 200)

    def describe(self) -> str:
        return f"{self.queries_per_s:,.1f} queries/s at p99 <= {self.p99_target_ms:,.0f} ms"


@dataclass(frozen=True)
class CapacityPlan:
    """Replicas, GPUs, nodes and cost per day for a load, from a per-replica sustainable rate."""

    load: str
    per_replica: str
    needed: float          # the load in the per-replica unit
    per_replica_capacity: float
    unit: str
    replicas: int
    gpus_per_replica: int
    node_type: str
    nodes: int
    cost_per_day: float | None
    currency: str
    price_verified: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def utilisation(self) -> float:
        return self.needed / (self.replicas * self.per_replica_capacity)

    def table(self) -> pd.DataFrame:
        """The plan as a two-column table for display."""
        cost = "no price for this node type" if self.cost_per_day is None else (
            f"{self.cost_per_day:,.0f} {self.currency}/day" + ("" if self.price_verified else " (illustrative "
                                                                "price: set your own)"))
        rows = [("load", self.load), ("per replica", self.per_replica),
                ("needed", f"{self.needed:,.1f} {self.unit}"),
                ("replicas", f"{self.replicas} (each at {self.utilisation:.0%} of its sustainable rate)"),
                ("GPUs", f"{self.gpus} ({self.gpus_per_replica} per replica)"),
                ("nodes", f"{self.nodes} x {self.node_type}"), ("cost", cost)]
        rows += [("note", n) for n in self.notes]
        return pd.DataFrame(rows, columns=["item", "value"])

    def serving_changes(self) -> dict:
        """ServingSpec fields that apply the plan (re-render with ``spec.replace(**changes)``)."""
        return {"replicas": self.replicas}


def _needed(load, per_replica: SustainableRate) -> tuple[float, float, str, list[str]]:
    notes = []
    if isinstance(load, DocumentLoad):
        if abs(per_replica.input_tokens - load.avg_tokens) > 0.5 * load.avg_tokens:
            notes.append(f"the per-replica figure was measured at {per_replica.input_tokens} tokens per input, the "
                         f"documents average {load.avg_tokens}: sweep that length for a closer plan")
        return load.tokens_per_s, per_replica.tokens_per_s, "tokens/s", notes
    if isinstance(load, QueryLoad):
        if per_replica.target_ms > load.p99_target_ms:
            raise InvalidSpecError(f"the per-replica rate holds p99 <= {per_replica.target_ms:g} ms but the queries "
                                   f"need {load.p99_target_ms:g} ms: find the sustainable rate at that target",
                                   field="p99_target_ms", value=load.p99_target_ms)
        return load.queries_per_s, per_replica.rate, "req/s", notes
    raise InvalidSpecError("load must be a DocumentLoad or a QueryLoad", field="load", value=type(load).__name__)


def plan_capacity(load, per_replica: SustainableRate, node_type: str = "PNV5b.8XLARGE96", *,
                  gpus_per_replica: int = 1, min_replicas: int = 1, prices=None) -> CapacityPlan:
    """Replicas = ceil(load / sustainable rate per replica), at least ``min_replicas``; nodes hold
    ``gpus // gpus_per_replica`` replicas each; cost per day from the node price table."""
    if per_replica is None or not per_replica.rate > 0:
        raise InvalidSpecError("no sustainable rate: no level of the sweep kept the p99 target - relax the target, "
                               "sweep lower rates or tune the server", field="per_replica", value=per_replica)
    needed, capacity, unit, notes = _needed(load, per_replica)
    node = get_node_type(node_type)
    gpus_per_replica = validate_number(gpus_per_replica, "gpus_per_replica", 1, whole=True)
    if node.gpu_count < gpus_per_replica:
        raise InvalidSpecError(f"{node.name} has {node.gpu_count} GPU(s), a replica needs {gpus_per_replica}: pick "
                               f"a larger node type", field="node_type", value=node.name)
    replicas = max(validate_number(min_replicas, "min_replicas", 1, whole=True), math.ceil(needed / capacity - 1e-9))
    nodes = math.ceil(replicas / (node.gpu_count // gpus_per_replica))
    price = price_of(node.name, prices if prices is not None else load_prices())
    if per_replica.kind == "closed":
        notes.append("the per-replica rate comes from a closed loop: an open-loop sweep gives a safer figure")
    return CapacityPlan(load.describe(), str(per_replica), needed, capacity, unit, replicas, gpus_per_replica,
                        node.name, nodes, None if price is None else nodes * price.per_day,
                        price.currency if price else "", bool(price and price.verified), tuple(notes))
