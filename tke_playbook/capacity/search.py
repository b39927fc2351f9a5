"""Measure a sustainable rate and replay a plan against a live endpoint (open-loop runs through loadgen).

:func:`find_sustainable_rate` takes the closed-loop throughput ceiling of one request shape (measured here, or
from a sweep already run with ``ceiling_from``), then offers open-loop (Poisson) rates at growing fractions of it,
stopping at the first level that breaks the p99 target: the highest rate before it is the sustainable rate
(:func:`~tke_playbook.capacity.planning.sustainable_rate`, the one definition). It cannot exceed the closed-loop
ceiling of the same shape: when the open loop answered more than the closed loop ever did, the ceiling was
measured too short or on a busy machine - the rate is capped and a note says so.

Two more things the search decides, because a short level can pass the rule without being sustainable:

- *Saturating* (:func:`saturating`): a level offered at least the closed-loop ceiling - the most this server
  ever answered for this shape - and the server answered less than offered, no more than that ceiling. Arrivals
  at or above a server's capacity build a queue without bound (utilisation >= 1); a level of a second or two ends
  before that queue reaches p99, and the delivery rule's tolerance (``DELIVERY_TOLERANCE``, there for a short
  level's measurement slack) lets it pass. A replay at that rate then misses the target, so the sustainable rate steps
  back to the highest level below it that holds, and a note says where the server fell behind. This adds no
  threshold: the ceiling is the search's own measurement, and the rule stays the one in ``planning``.
- *No knee*: when every level tried held, the search never found where the target breaks; the rate is a lower
  bound (the real limit is higher), and a note says so - the plan built on it is safe, only not the cheapest.

:func:`replay` offers a planned :class:`~tke_playbook.capacity.planning.SustainableRate` open-loop with the same
request shape and judges it by the same rule against the target itself; a replay that does not hold says what
to do. Both run as one interruptible run each (:func:`~tke_playbook.loadgen.run_interruptibly`).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import pandas as pd

from ..errors import InvalidSpecError
from ..loadgen import (LoadResult, Progress, closed_budget_s, open_budget_s, run_closed_loop_async,
                       run_interruptibly, run_open_loop_async, summarize)
from ..loadgen.inputs import check_range
from ..loadgen.runner import MAX_DURATION_S, MAX_RATE, send_bound_s
from ..loadgen.summary import explain_levels
from .planning import (DELIVERY_TOLERANCE, MARGIN, SustainableRate, check_summary, level_holds, level_rate,
                       sustainable_rate)

FRACTIONS = (0.25, 0.5, 0.7, 0.85, 1.0)
LOWER_TRIES = 3  # halvings below the lowest fraction when even it breaks the target


@dataclass
class RateSearch:
    """What a search measured: the closed-loop ``ceiling_rps``, both runs, the ``sustainable`` rate and notes."""

    ceiling_rps: float
    closed: LoadResult | None
    opened: LoadResult
    sustainable: SustainableRate | None
    p99_target_ms: float
    notes: list[str] = field(default_factory=list)
    unheld: SustainableRate | None = None  # with no sustainable rate: the best level measured (best_unheld)

    def table(self) -> pd.DataFrame:
        return self.opened.table()

    @property
    def planning_rate(self) -> SustainableRate | None:
        """What a plan, a projection or a replay starts from: the sustainable rate; when no level held the target,
        the level with the lowest p99 among those answered, marked ``held=False`` (its text and the search's note
        say so), so the cells after a search still run on a loaded machine; None when nothing was answered (or
        the search was interrupted before it decided)."""
        return self.sustainable if self.sustainable is not None else self.unheld


def best_unheld(summary: pd.DataFrame, p99_target_ms: float) -> SustainableRate | None:
    """The open-loop level with the lowest p99 among those that answered, as a rate that did not hold."""
    answered = summary[(summary["req_per_s"] > 0) & summary["p99_ms"].notna()] if not summary.empty else summary
    if answered.empty:
        return None
    return level_rate(answered.sort_values(["p99_ms", "rate"]).iloc[0], p99_target_ms, held=False)


def _combine(results: list[LoadResult]) -> LoadResult:
    if not results:
        return LoadResult("open", pd.DataFrame(), pd.DataFrame(), None, [])
    records = pd.concat([r.records for r in results], ignore_index=True)
    servers = [r.server for r in results if r.server is not None and not r.server.empty]
    server = pd.concat(servers, ignore_index=True) if servers else None
    summary = pd.concat([r.summary for r in results], ignore_index=True).sort_values("rate", ignore_index=True) \
        if all("note" in r.summary for r in results) else explain_levels(summarize(records), records)[0]
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    return LoadResult(results[0].kind, records, summary, server, notes)


def _ceiling_of(summary: pd.DataFrame, input_tokens: int, inputs: int) -> float:
    data = check_summary(summary, "ceiling_from")
    if "concurrency" not in data or not data["concurrency"].notna().any():
        raise InvalidSpecError("ceiling_from must be a closed-loop summary (run_closed_loop)", field="ceiling_from",
                               value=list(data.columns))
    same = data[(data["input_tokens"] == input_tokens) & (data.get("inputs", 1) == inputs)]
    if same.empty:
        raise InvalidSpecError(f"ceiling_from has no level of {input_tokens} tokens x {inputs} input(s): sweep that "
                               "shape, or leave ceiling_from out to measure it", field="ceiling_from",
                               value=(input_tokens, inputs))
    return float(same["req_per_s"].max())


@dataclass(frozen=True)
class _Plan:
    """A search's settings, checked once."""

    url: str
    model: str | None
    target: float
    input_tokens: int
    inputs: int
    concurrency: tuple
    ceiling_requests: int
    ceiling_level_s: float
    fractions: tuple
    level_s: float
    min_requests: int
    max_level_s: float
    margin: float
    tolerance: float
    timeout: float
    drain_s: float
    api_key: str | None

    @property
    def limit(self) -> float:
        return self.target * (1 - self.margin)

    def common(self) -> dict:
        return {"api_key": self.api_key, "timeout": self.timeout, "batch_size": self.inputs}


async def _open_level(plan: _Plan, rate: float, seed: int, progress: Progress) -> tuple[LoadResult, bool]:
    requests = min(max(plan.min_requests, math.ceil(rate * plan.level_s)), max(10, math.ceil(rate * plan.max_level_s)))
    result = await run_open_loop_async(plan.url, plan.model, [rate], requests=requests,
                                       input_tokens=(plan.input_tokens,), seed=seed,
                                       max_duration_s=send_bound_s(requests / rate), drain_s=plan.drain_s,
                                       progress=progress, **plan.common())
    return result, level_holds(result.summary.iloc[0], plan.limit, tolerance=plan.tolerance)


@dataclass
class _Searched:
    """What a rate search has measured so far: kept as the partial result when it is interrupted."""

    levels: list[LoadResult] = field(default_factory=list)
    ceiling: float = math.nan
    closed: LoadResult | None = None

    def keep(self, plan: _Plan, progress: Progress) -> None:
        """On an interrupt: the ceiling's levels and the open-loop levels that finished as ``progress.partial``."""
        partial = progress.partial if isinstance(progress.partial, LoadResult) else None
        if partial is not None and partial.kind == "closed":
            self.closed = partial  # the ceiling's levels that finished
        current = partial if partial is not None and partial.kind == "open" and not partial.records.empty else None
        done = self.levels + ([current] if current is not None else [])
        if not done and self.closed is None:
            progress.partial = None
            return
        progress.partial = RateSearch(self.ceiling, self.closed, _combine(done), None, plan.target,
                                      ["interrupted: no sustainable rate was decided"])
        progress.kept = "last_interrupted()"


async def _search(plan: _Plan, ceiling_from, progress: Progress) -> RateSearch:
    searched = _Searched()
    try:
        ceiling = await _ceiling(plan, ceiling_from, progress, searched)
        await _climb(plan, ceiling, progress, searched.levels)
    except asyncio.CancelledError:
        searched.keep(plan, progress)
        raise
    return _decide(plan, ceiling, searched.closed, _combine(searched.levels))


async def _ceiling(plan: _Plan, ceiling_from, progress: Progress, searched: _Searched) -> float:
    """The closed-loop ceiling in req/s: read from ``ceiling_from``, else measured (kept in ``searched``)."""
    if ceiling_from is not None:
        ceiling = _ceiling_of(ceiling_from, plan.input_tokens, plan.inputs)
    else:
        searched.closed = await run_closed_loop_async(
            plan.url, plan.model, plan.concurrency, plan.ceiling_requests, (plan.input_tokens,),
            max_duration_s=plan.ceiling_level_s, drain_s=plan.drain_s, progress=progress, **plan.common())
        ceiling = float(searched.closed.summary["req_per_s"].max())
    if not ceiling > 0 or math.isnan(ceiling):
        errors = searched.closed.records["error"].dropna().head(1).tolist() if searched.closed is not None else []
        raise InvalidSpecError(f"no request succeeded at {plan.url}: {errors}", field="url", value=plan.url)
    searched.ceiling = ceiling
    return ceiling


async def _climb(plan: _Plan, ceiling: float, progress: Progress, levels: list[LoadResult]) -> None:
    """Open-loop levels at rising fractions of the ceiling until one breaks the target; when even the lowest
    does, halve the rate (up to LOWER_TRIES times) until one holds."""
    ordered = sorted(plan.fractions)
    kept = True
    for n, fraction in enumerate(ordered):
        result, kept = await _open_level(plan, round(ceiling * fraction, 2), n, progress)
        levels.append(result)
        if not kept:
            break  # past the knee: higher rates only queue more
    lowest = ordered[0]
    for extra in range(LOWER_TRIES if len(levels) == 1 and not kept else 0):
        lowest /= 2  # even the lowest level broke the target: halve the rate
        result, kept = await _open_level(plan, round(ceiling * lowest, 2), 100 + extra, progress)
        levels.insert(0, result)
        if kept:
            break


def saturating(rate: SustainableRate | None, ceiling_rps: float) -> bool:
    """True when ``rate`` came from an open-loop level offered at or above the closed-loop ceiling (the most the
    server answered for this shape) where the server answered less than offered and no more than that ceiling: the
    server was at capacity and a queue was building, whatever the level's short p99 showed (see the module doc).
    A level that answered more than the ceiling is not saturating: the ceiling was measured low."""
    if rate is None or rate.kind != "open" or not ceiling_rps > 0:
        return False
    at_ceiling = rate.level >= round(ceiling_rps, 2)  # levels are offered at rates rounded to 0.01 req/s
    return bool(at_ceiling and rate.rate < rate.level and rate.rate <= ceiling_rps)


def _below_saturation(plan: _Plan, summary: pd.DataFrame, found: SustainableRate | None, ceiling: float,
                      notes: list[str]) -> SustainableRate | None:
    """The sustainable rate no higher than the highest level that held without saturating; a note per step."""
    while saturating(found, ceiling):
        below = summary[summary["rate"] < found.level]
        lower = None if below.empty else sustainable_rate(below, plan.target, margin=plan.margin,
                                                          tolerance=plan.tolerance)
        then = (f"the plan starts from the level below, {lower.rate:,.1f} req/s" if lower is not None else
                "no level below it held: do not plan from it - search lower fractions of the ceiling")
        notes.append(f"the knee is at {found.level:,.1f} req/s although its p99 held ({found.p99_ms:,.1f} ms): "
                     f"that level was saturating - offered at least the {ceiling:,.1f} req/s closed-loop ceiling, "
                     f"the server answered only {found.rate:,.1f} req/s, so a queue was building that a level this "
                     f"short does not show in p99; {then}")
        if lower is None:
            return found
        found = lower
    return found


def _never_broke(summary: pd.DataFrame, found: SustainableRate | None, ceiling: float) -> bool:
    """Whether the search never reached the knee: the rate comes from the highest level tried, which held."""
    return found is not None and found.level >= float(summary["rate"].max()) and not saturating(found, ceiling)


def _capped(found: SustainableRate | None, ceiling: float, notes: list[str]) -> SustainableRate | None:
    """No more than the closed-loop ceiling of the same shape (a note when the open loop answered more)."""
    if found is None or not found.rate > ceiling:
        return found
    notes.append(f"the open loop answered {found.rate:,.1f} req/s, more than the closed-loop ceiling "
                 f"{ceiling:,.1f} req/s of the same shape: the ceiling was measured too short or on a busy "
                 f"machine - the plan uses the ceiling")
    return found.scaled_to(ceiling)


def _decide(plan: _Plan, ceiling: float, closed: LoadResult | None, opened: LoadResult) -> RateSearch:
    found = sustainable_rate(opened.summary, plan.target, margin=plan.margin, tolerance=plan.tolerance)
    notes = []
    fallback = best_unheld(opened.summary, plan.target) if found is None else None
    if fallback is not None:
        notes.append(f"no level kept p99 within {plan.limit:,.0f} ms (the {plan.target:,.0f} ms target less its "
                     f"margin) on this machine: the plan, projection and replay below start from the best level "
                     f"measured, {fallback.rate:,.1f} req/s at p99 {fallback.p99_ms:,.1f} ms, which did not hold it "
                     f"- raise the p99 target, or measure on a quieter machine")
    found = _below_saturation(plan, opened.summary, found, ceiling, notes)
    no_knee = _never_broke(opened.summary, found, ceiling)
    found = _capped(found, ceiling, notes)
    if no_knee:
        notes.append(f"no knee found: the highest level tried, {found.level:,.1f} req/s, held the target - "
                     f"{found.rate:,.1f} req/s is a lower bound, not the sustainable maximum; the real limit is "
                     f"higher (offer higher fractions of the {ceiling:,.1f} req/s ceiling, or longer levels, to "
                     f"find it)")
    return RateSearch(ceiling, closed, opened, found, plan.target, notes, fallback)


def find_sustainable_rate(url: str, model: str | None, p99_target_ms: float, *, input_tokens: int = 32,
                          inputs: int = 1, concurrency=(1, 4, 16, 32), ceiling_requests: int = 10_000,
                          ceiling_level_s: float = 3.0, fractions=FRACTIONS, level_s: float = 3.0,
                          min_requests: int = 30, max_level_s: float = 10.0, margin: float = MARGIN,
                          tolerance: float = DELIVERY_TOLERANCE, api_key: str | None = None, progress=False,
                          timeout: float | None = None, drain_s: float | None = None,
                          ceiling_from: pd.DataFrame | None = None, home=None) -> RateSearch:
    """Closed-loop ceiling (or ``ceiling_from``: a closed-loop sweep summary holding this shape), then open-loop
    levels at ``fractions`` of it until one breaks ``p99 x (1 - margin)``; interruptible.

    A level offers ``rate x level_s`` requests, at least ``min_requests`` (a p99 needs a few dozen) unless that
    would last longer than ``max_level_s``; answers still missing ``drain_s`` after the last arrival (default:
    five times the target, at least 1 s) count as failed. ``timeout`` per request defaults to ten times the
    target (at least 2 s, at most 60 s). ``home``: the state folder where an interrupted search keeps its finished
    requests (``pb.settings.home``; None: ``$TKE_PLAYBOOK_HOME``)."""
    target = check_range(p99_target_ms, "p99_target_ms", 0.0, 3_600_000.0, 200)
    timeout = timeout if timeout is not None else min(60.0, max(2.0, 10 * target / 1000))
    plan = _Plan(url, model, target, int(check_range(input_tokens, "input_tokens", 0, 1_000_000, 32, whole=True)),
                 int(check_range(inputs, "inputs", 0, 100_000, 1, whole=True)), tuple(concurrency),
                 int(check_range(ceiling_requests, "ceiling_requests", 0, 10_000_000, 10_000, whole=True)),
                 check_range(ceiling_level_s, "ceiling_level_s", 0.0, 3600.0, 3),
                 tuple(check_range(f, "fractions", 0.0, 10.0, 0.5) for f in fractions),
                 check_range(level_s, "level_s", 0.0, 3600.0, 3), int(check_range(min_requests, "min_requests", 0,
                                                                                 1_000_000, 30, whole=True)),
                 check_range(max_level_s, "max_level_s", 0.0, 3600.0, 10),
                 check_range(margin, "margin", 0.0, 0.95, 0.2, low_inclusive=True),
                 check_range(tolerance, "tolerance", 0.0, 0.95, 0.15, low_inclusive=True),
                 check_range(timeout, "timeout", 0.0, 3600.0, 30),
                 check_range(drain_s if drain_s is not None else max(1.0, 5 * target / 1000), "drain_s", 0.0,
                             3600.0, 1),
                 api_key)
    if not plan.fractions:
        raise InvalidSpecError("fractions must list at least one share of the ceiling, such as (0.5, 1.0)",
                               field="fractions", value=fractions)
    closed_levels = 0 if ceiling_from is not None else len(plan.concurrency)
    open_levels = len(plan.fractions) + LOWER_TRIES
    budget = closed_levels * closed_budget_s(plan.ceiling_level_s, plan.drain_s) + \
        open_levels * open_budget_s(plan.max_level_s, plan.drain_s)
    tracker = Progress("rate search", budget, levels=closed_levels + open_levels, home=home)
    return run_interruptibly(lambda p: _search(plan, ceiling_from, p), tracker, progress)


@dataclass(frozen=True)
class ReplayReport:
    """A planned rate replayed open-loop and judged by the sustainable-rate rule
    (:func:`~tke_playbook.capacity.planning.level_holds`) against the target itself: ``held`` is
    ``met_target and rate_within_tolerance``, the same three conditions."""

    predicted_rps: float
    achieved_rps: float
    p99_ms: float
    target_ms: float
    errors: int
    requests: int
    tolerance: float = DELIVERY_TOLERANCE
    offered_rps: float = math.nan   # what the Poisson arrivals actually offered
    shape: str = ""
    error_kinds: str = ""

    @property
    def rate_error(self) -> float:
        offered = self.offered_rps if self.offered_rps == self.offered_rps else self.predicted_rps
        return self.achieved_rps / offered - 1 if offered else math.nan

    @property
    def met_target(self) -> bool:
        return bool(self.p99_ms <= self.target_ms and self.errors == 0)

    @property
    def rate_within_tolerance(self) -> bool:
        return bool(self.rate_error >= -self.tolerance)

    @property
    def held(self) -> bool:
        return self.met_target and self.rate_within_tolerance

    def advice(self) -> str:
        """What to do when the plan did not hold ('' when it held)."""
        if self.held:
            return ""
        steps = [f"plan more replicas (each at a lower rate, e.g. {0.8 * self.predicted_rps:,.1f} req/s)",
                 f"relax the target above {self.target_ms:,.0f} ms", "apply the tuned settings from the Tuning "
                 "section and measure again"]
        if self.errors:
            steps.insert(0, f"look at the errors first ({self.error_kinds or 'see the records'})")
        return "what to do: " + ", or ".join(steps)

    def delivery(self) -> str:
        """How much of the offered load was answered, in words: against the arrivals actually drawn when known."""
        drawn = self.offered_rps == self.offered_rps
        basis = self.offered_rps if drawn else self.predicted_rps
        short = f"{-self.rate_error:.0%} short" if self.rate_error < 0 else "none short"
        return (f"answered {self.achieved_rps:,.1f} req/s of {basis:,.1f} {'drawn' if drawn else 'offered'} "
                f"({short}; up to {self.tolerance:.0%} short allowed)")

    def __str__(self) -> str:
        verdict = "HELD" if self.held else "DID NOT HOLD"
        text = (f"replay {verdict}: offered {self.predicted_rps:,.1f} req/s [{self.shape}], {self.delivery()}; "
                f"p99 {self.p99_ms:,.1f} ms vs target {self.target_ms:,.0f} ms; {self.errors} error(s) in "
                f"{self.requests} requests")
        return text + (f"\n{self.advice()}" if not self.held else "")


def _replay_args(rate, p99_target_ms, input_tokens, inputs) -> tuple[float, float, int, int]:
    if isinstance(rate, SustainableRate):
        return (rate.rate, rate.target_ms if p99_target_ms is None else p99_target_ms,
                rate.input_tokens if input_tokens is None else input_tokens,
                rate.inputs if inputs is None else inputs)
    if p99_target_ms is None:
        raise InvalidSpecError("replay needs p99_target_ms with a plain rate (or pass the SustainableRate)",
                               field="p99_target_ms", value=None)
    return rate, p99_target_ms, 32 if input_tokens is None else input_tokens, 1 if inputs is None else inputs


def replay(url: str, model: str | None, rate, p99_target_ms: float | None = None, *, input_tokens: int | None = None,
           inputs: int | None = None, duration_s: float = 15.0, seed: int = 1234, api_key: str | None = None,
           progress=False, timeout: float | None = None, tolerance: float = DELIVERY_TOLERANCE,
           warmup_requests: int = 40, home=None) -> tuple[ReplayReport, LoadResult]:
    """Offer ``rate`` - a SustainableRate (its rate, shape and target) or req/s - open-loop for ``duration_s``
    and judge it by :func:`~tke_playbook.capacity.planning.level_holds` against the target.

    ``warmup_requests`` go first (closed loop, not counted), as ``vllm bench serve`` warms up: a server that has
    just started answers its first requests slowly, and at a planned rate near capacity that backlog would
    take the whole replay to drain. Arrivals are drawn as they are due, so any rate costs constant memory.
    ``home``: as for :func:`find_sustainable_rate`."""
    offered, target, tokens, per_request = _replay_args(rate, p99_target_ms, input_tokens, inputs)
    offered = check_range(offered, "rate", 0.0, MAX_RATE, 50)
    target = check_range(target, "p99_target_ms", 0.0, 3_600_000.0, 200)
    duration = check_range(duration_s, "duration_s", 0.0, MAX_DURATION_S, 15)
    tolerance = check_range(tolerance, "tolerance", 0.0, 0.95, 0.15, low_inclusive=True)
    warmup = int(check_range(warmup_requests, "warmup_requests", 0, 100_000, 40, whole=True, low_inclusive=True))
    timeout = timeout if timeout is not None else min(60.0, max(2.0, 10 * target / 1000))
    drain = max(1.0, 5 * target / 1000)
    common = {"api_key": api_key, "timeout": timeout, "batch_size": per_request}

    async def work(progress: Progress):
        if warmup:
            await run_closed_loop_async(url, model, [4], warmup, (tokens,), scrape_metrics=False,
                                        max_duration_s=duration, drain_s=drain, **common)
        return await run_open_loop_async(url, model, [offered], duration_s=duration, input_tokens=(tokens,),
                                         seed=seed, drain_s=drain, progress=progress, **common)

    budget = (closed_budget_s(duration, drain) if warmup else 0.0) + open_budget_s(duration, drain)
    result = run_interruptibly(work, Progress("replay", budget, levels=1, home=home), progress)
    row = result.summary.iloc[0]
    report = ReplayReport(float(offered), float(row["req_per_s"]), float(row["p99_ms"]), float(target),
                          int(row["errors"]), int(row["requests"]), tolerance,
                          float(row.get("offered_per_s", math.nan)),
                          f"{tokens} tokens x {per_request} input(s) per request", str(row.get("note", "") or ""))
    return report, result
