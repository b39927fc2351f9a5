"""Capacity planning from a load sweep: the sustainable rate per replica at a p99 target, then replicas, GPUs,
nodes and cost for a stated load. Pure functions on loadgen summaries; the runs themselves are in ``search``.

*Sustainable rate* - one definition, used by the search, the plan and the replay alike (:func:`level_holds`):
for one request shape (input length x inputs per request), a level holds a p99 target when it had no errors,
its p99 was within ``target x (1 - margin)`` and - in an open loop - the server answered at least
``1 - tolerance`` of the rate it was offered (against the arrivals actually drawn, so Poisson noise does not
count against it). The sustainable rate is the highest offered rate at which every level up to it held, and
never more than the server answered there (open-loop latency runs from each request's scheduled arrival, so a
server falling behind shows as latency). Above capacity a queue builds without bound and p99 jumps (latency =
queue wait + service time), so the sweep finds the knee. The ``margin`` (default 20% of the latency target)
absorbs run-to-run noise so a replay at that rate - judged by the same rule with no margin - holds. A
closed-loop sweep gives only an optimistic bound (its arrivals are never bursty): prefer the open loop.

Plans are in replicas of the server that was measured (:class:`~tke_playbook.capacity.hardware.ServedOn`): GPUs,
nodes and cost on a cluster; on the local target, copies of the local CPU server on a machine like this one,
each priced as one node of :data:`~tke_playbook.specs.prices.LOCAL_PRICE_NODE` (the CPU node type notebook 05
prices the same server as) - never GPU node types (those appear only in
:func:`~tke_playbook.capacity.hardware.project_gpu`'s projection).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pandas as pd

from ..errors import InvalidSpecError
from ..hostenv import load_prices
from ..loadgen.inputs import check_range
from ..specs.hardware import get_node_type
from ..specs.names import validate_number
from ..specs.prices import LOCAL_PRICE_NODE, price_of
from .hardware import ServedOn

MARGIN = 0.2              # of the p99 target, kept free by the search so a replay holds despite noise
DELIVERY_TOLERANCE = 0.15  # an open-loop level must answer at least 85% of what it was offered
MAX_REPLICAS = 10_000     # a plan needing more says the per-replica rate is too low to plan from
SUMMARY_NEEDS = ("input_tokens", "requests", "errors", "error_rate", "req_per_s", "embeddings_per_s",
                 "tokens_per_s", "p99_ms")


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
    margin: float = MARGIN
    held: bool = True  # False: no level held the target, and this is the best one measured (RateSearch.planning_rate)

    @property
    def shape(self) -> str:
        return f"{self.input_tokens} tokens x {self.inputs} input(s) per request"

    def scaled_to(self, rate: float) -> "SustainableRate":
        """The same level carried at ``rate`` req/s: the embeddings/s and tokens/s it carries scale with it."""
        factor = rate / self.rate
        return replace(self, rate=rate, embeddings_per_s=self.embeddings_per_s * factor,
                       tokens_per_s=self.tokens_per_s * factor)

    def __str__(self) -> str:
        verdict = (f"<= {self.target_ms:,.0f} ms" if self.held else
                   f"- ABOVE the {self.target_ms:,.0f} ms target: no measured rate held it")
        return (f"{self.rate:,.1f} req/s per replica ({self.embeddings_per_s:,.1f} embeddings/s, "
                f"{self.tokens_per_s:,.0f} tokens/s) at p99 {self.p99_ms:,.1f} ms {verdict} "
                f"[{self.shape}, {self.kind} loop]")


def check_summary(summary, what: str = "summary") -> pd.DataFrame:
    """A non-empty loadgen summary with the columns a plan reads; one line otherwise."""
    if not isinstance(summary, pd.DataFrame):
        raise InvalidSpecError(f"{what} must be a loadgen summary (a DataFrame such as result.summary), not "
                               f"{type(summary).__name__}", field=what, value=type(summary).__name__)
    missing = [c for c in SUMMARY_NEEDS if c not in summary.columns]
    if missing or not ("rate" in summary or "concurrency" in summary):
        raise InvalidSpecError(f"{what} lacks column(s) {missing or ['rate or concurrency']}: pass the summary of a "
                               "loadgen run (result.summary)", field=what, value=missing)
    if summary.empty:
        raise InvalidSpecError(f"{what} is empty: run a load sweep first (run_closed_loop or "
                               "find_sustainable_rate)", field=what, value=0)
    return summary


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


def delivered(row) -> float:
    """The share of the offered rate the server answered in an open-loop level (against the arrivals actually
    drawn when the summary has them); 1.0 for a closed loop."""
    if "rate" not in row or pd.isna(row["rate"]):
        return 1.0
    offered = row["offered_per_s"] if "offered_per_s" in row and not pd.isna(row["offered_per_s"]) else row["rate"]
    return float(row["req_per_s"]) / float(offered) if offered and offered > 0 else 0.0


def level_holds(row, p99_limit_ms: float, *, max_error_rate: float = 0.0,
                tolerance: float = DELIVERY_TOLERANCE) -> bool:
    """THE rule: no more errors than allowed, p99 within ``p99_limit_ms`` and at least ``1 - tolerance`` of the
    offered rate answered (open loop). The search uses ``target x (1 - margin)`` as the limit, a replay the
    target itself."""
    ok = row["req_per_s"] > 0 and not pd.isna(row["p99_ms"])
    return bool(ok and row["p99_ms"] <= p99_limit_ms and row["error_rate"] <= max_error_rate and
                delivered(row) >= 1 - tolerance)


def sustainable_rate(summary: pd.DataFrame, p99_target_ms: float, *, margin: float = MARGIN,
                     max_error_rate: float = 0.0, tolerance: float = DELIVERY_TOLERANCE,
                     input_tokens: int | None = None, inputs: int | None = None) -> SustainableRate | None:
    """The sustainable rate of one request shape in a loadgen summary (see the module's definition), or None
    when no level held the target."""
    summary = check_summary(summary)
    target = check_range(p99_target_ms, "p99_target_ms", 0.0, 3_600_000.0, 200)
    margin = check_range(margin, "margin", 0.0, 0.95, 0.2, low_inclusive=True)
    tolerance = check_range(tolerance, "tolerance", 0.0, 0.95, 0.15, low_inclusive=True)
    kind = "open" if "rate" in summary and summary["rate"].notna().any() else "closed"
    data = _one_shape(summary, input_tokens, inputs).sort_values("rate" if kind == "open" else "concurrency")
    limit = target * (1 - margin)
    best = None
    for _, row in data.iterrows():
        if not level_holds(row, limit, max_error_rate=max_error_rate, tolerance=tolerance):
            if kind == "open":
                break  # above the first failing rate the queue only grows: a later pass is noise
            continue
        if kind == "open" or best is None or row["req_per_s"] > best["req_per_s"]:
            best = row
    return None if best is None else level_rate(best, target, kind=kind, margin=margin)


def level_rate(row, p99_target_ms: float, *, kind: str = "open", margin: float = MARGIN,
               held: bool = True) -> SustainableRate:
    """One level of a loadgen summary (a row) as a rate per replica: what it answered - for an open loop no more
    than it was offered - with the embeddings/s and tokens/s that rate carries."""
    answered = float(row["req_per_s"])
    rate = min(float(row["rate"]), answered) if kind == "open" else answered
    per_request = rate / answered
    return SustainableRate(rate, float(row["p99_ms"]), p99_target_ms, float(row["embeddings_per_s"]) * per_request,
                           float(row["tokens_per_s"]) * per_request, int(row["input_tokens"]),
                           int(row["inputs"]) if "inputs" in row else 1, kind,
                           float(row["rate" if kind == "open" else "concurrency"]), margin, held)


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

    def describe(self, tokens_per_query: float | None = None, source: str = "") -> str:
        """The load in words; with ``tokens_per_query`` (prompt tokens of one query, ``source`` saying where that
        figure comes from) also the tokens/s it makes, as :meth:`DocumentLoad.describe` says its own."""
        text = f"{self.queries_per_s:,.1f} queries/s at p99 <= {self.p99_target_ms:,.0f} ms"
        if tokens_per_query is None:
            return text
        return (f"{text} x {tokens_per_query:,.0f} prompt tokens each{f' ({source})' if source else ''} = "
                f"{self.queries_per_s * tokens_per_query:,.0f} tokens/s")


@dataclass(frozen=True)
class CapacityPlan:
    """Replicas for a load, from a per-replica sustainable rate, in replicas of the server that was measured
    (``served_on``): on GPUs also GPUs, nodes and cost per day; on the local CPU server none of those."""

    load: str
    per_replica: str
    needed: float          # the load in the per-replica unit
    per_replica_capacity: float
    unit: str
    replicas: int
    served_on: ServedOn | None = None
    gpus_per_replica: int = 0
    node_type: str | None = None   # the GPU node type the replicas run on; None for copies of the local CPU server
    priced_as: str | None = None   # the node type one replica is priced as (the GPU node type, or the CPU one)
    nodes: int = 0
    cost_per_day: float | None = None
    currency: str = ""
    price_verified: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpus(self) -> int:
        return self.replicas * self.gpus_per_replica

    @property
    def utilisation(self) -> float:
        return self.needed / (self.replicas * self.per_replica_capacity)

    def table(self) -> pd.DataFrame:
        """The plan as a two-column table for display."""
        rows = [("load", self.load), ("per replica", self.per_replica),
                ("needed", f"{self.needed:,.1f} {self.unit}"),
                ("replicas", f"{self.replicas} (each at {self.utilisation:.0%} of its sustainable rate)")]
        if self.served_on is not None:
            rows.append(("one replica", self.served_on.replica))
        if self.node_type is not None:
            rows += [("GPUs", f"{self.gpus} ({self.gpus_per_replica} per replica)"),
                     ("nodes", f"{self.nodes} x {self.node_type}")]
        rows.append(("cost", self._cost()))
        rows += [("note", n) for n in self.notes]
        return pd.DataFrame(rows, columns=["item", "value"])

    def _cost(self) -> str:
        on_cpu = self.node_type is None
        what = (f"{self.priced_as}, one node per replica: the CPU node type the local server stands in for (as in "
                "05's cost table)") if on_cpu else "this node type"
        if self.cost_per_day is None:
            return f"not priced: the price table has no price for {what} - add it to your prices file " \
                   "($TKE_PLAYBOOK_NODE_PRICES)"
        price = f"{self.cost_per_day:,.0f} {self.currency}/day" + ("" if self.price_verified else
                                                                  " (illustrative price: set your own)")
        return f"{price}: {self.replicas} x {what}" if on_cpu else price

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


def _replicas(needed: float, capacity: float, min_replicas, unit: str) -> int:
    floor = check_range(min_replicas, "min_replicas", 0, MAX_REPLICAS, 1, whole=True)
    if not math.isfinite(capacity) or capacity <= 0:
        raise InvalidSpecError(f"the per-replica capacity {capacity!r} {unit} is not a positive number: measure "
                               "the sustainable rate again", field="per_replica", value=capacity)
    replicas = max(floor, math.ceil(needed / capacity - 1e-9))
    if replicas > MAX_REPLICAS:
        raise InvalidSpecError(f"per_replica {capacity:g} {unit} would need {replicas:,.0f} replicas, outside the "
                               f"allowed 1-{MAX_REPLICAS:,}: the per-replica rate is too low to plan from - measure "
                               "it again (a higher target, a tuned server) or plan a smaller load",
                               field="per_replica", value=capacity)
    return replicas


def _gpu_layout(node_type, served_on: ServedOn | None, gpus_per_replica: int | None):
    """The GPU node type the replicas run on (``node_type``, else the one measured on) and the GPUs per replica
    (``gpus_per_replica``, else the measured replica's, else 1)."""
    chosen = node_type if node_type is not None else (served_on.node_type if served_on is not None else None)
    if chosen is None:
        raise InvalidSpecError("say which node type the replicas run on: node_type='PNV5b.8XLARGE96', or "
                               "served_on=pb.serving.hardware()", field="node_type", value=None)
    node = get_node_type(chosen)
    per = gpus_per_replica if gpus_per_replica is not None else (served_on.gpus if served_on is not None else 1)
    per = validate_number(per, "gpus_per_replica", 1, whole=True)
    if node.gpu_count < per:
        raise InvalidSpecError(f"{node.name} has {node.gpu_count} GPU(s), a replica needs {per}: pick "
                               f"a larger node type", field="node_type", value=node.name)
    return node, per


def plan_capacity(load, per_replica: SustainableRate, node_type=None, *, served_on: ServedOn | None = None,
                  gpus_per_replica: int | None = None, min_replicas: int = 1, prices=None) -> CapacityPlan:
    """Replicas = ceil(load / sustainable rate per replica), at least ``min_replicas`` (at most
    ``MAX_REPLICAS``). ``served_on`` says what one replica is: GPUs (nodes on ``node_type`` - by default its
    own - hold ``gpus // gpus_per_replica`` replicas each, priced per day) or the local CPU server (no GPUs, no
    nodes; each replica priced as one ``LOCAL_PRICE_NODE`` node, as 05 prices it). Without ``served_on``,
    ``node_type`` names the GPU nodes."""
    if not isinstance(per_replica, SustainableRate) or not per_replica.rate > 0:
        raise InvalidSpecError("no sustainable rate: no level of the sweep kept the p99 target - relax the target, "
                               "sweep lower rates or tune the server", field="per_replica", value=per_replica)
    needed, capacity, unit, notes = _needed(load, per_replica)
    replicas = _replicas(needed, capacity, min_replicas, unit)
    if per_replica.kind == "closed":
        notes.append("the per-replica rate comes from a closed loop: an open-loop sweep gives a safer figure")
    if not per_replica.held:
        notes.append(f"the per-replica rate did not hold the {per_replica.target_ms:,.0f} ms p99 target (p99 "
                     f"{per_replica.p99_ms:,.0f} ms): these replicas miss it - raise the target or measure again")
    if served_on is not None and not served_on.on_gpu:
        if node_type is not None:
            raise InvalidSpecError("the measurement ran on a CPU server: plan in its replicas (leave node_type out) "
                                   "and see project_gpu() for a GPU estimate", field="node_type", value=node_type)
        price = price_of(LOCAL_PRICE_NODE, prices if prices is not None else load_prices())
        return CapacityPlan(load.describe(), str(per_replica), needed, capacity, unit, replicas, served_on,
                            priced_as=LOCAL_PRICE_NODE, **_priced(price, replicas), notes=tuple(notes))
    node, per = _gpu_layout(node_type, served_on, gpus_per_replica)
    nodes = math.ceil(replicas / (node.gpu_count // per))
    price = price_of(node.name, prices if prices is not None else load_prices())
    return CapacityPlan(load.describe(), str(per_replica), needed, capacity, unit, replicas, served_on,
                        gpus_per_replica=per, node_type=node.name, priced_as=node.name, nodes=nodes,
                        **_priced(price, nodes), notes=tuple(notes))


def _priced(price, nodes: int) -> dict:
    """The cost fields of a plan whose ``nodes`` nodes cost ``price`` each (None: the table has no price)."""
    return {"cost_per_day": None if price is None else nodes * price.per_day,
            "currency": price.currency if price else "", "price_verified": bool(price and price.verified)}
