"""Measure a sustainable rate and replay a plan against a live endpoint (open-loop runs through loadgen).

:func:`find_sustainable_rate` first measures the closed-loop throughput ceiling, then offers open-loop (Poisson)
rates at growing fractions of it, stopping at the first rate that breaks the p99 target: the highest rate before
it is the sustainable rate (:func:`~tke_playbook.capacity.planning.sustainable_rate`). :func:`replay` sends a
planned rate open-loop and reports whether the target held and how close the achieved rate came to the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..errors import InvalidSpecError
from ..loadgen import LoadResult, run_closed_loop, run_open_loop, summarize
from .planning import SustainableRate, sustainable_rate

FRACTIONS = (0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class RateSearch:
    """What a search measured: the closed-loop ``ceiling_rps``, both runs, and the ``sustainable`` rate."""

    ceiling_rps: float
    closed: LoadResult
    opened: LoadResult
    sustainable: SustainableRate | None
    p99_target_ms: float

    def table(self) -> pd.DataFrame:
        return self.opened.table()


def _combine(results: list[LoadResult]) -> LoadResult:
    records = pd.concat([r.records for r in results], ignore_index=True)
    servers = [r.server for r in results if r.server is not None and not r.server.empty]
    server = pd.concat(servers, ignore_index=True) if servers else None
    notes = list(dict.fromkeys(n for r in results for n in r.notes))
    return LoadResult(results[0].kind, records, summarize(records), server, notes)


def find_sustainable_rate(url: str, model: str | None, p99_target_ms: float, *, input_tokens: int = 32,
                          inputs: int = 1, concurrency=(1, 4, 16, 32), ceiling_requests: int = 150,
                          fractions=FRACTIONS, level_s: float = 5.0, min_requests: int = 100,
                          max_level_s: float = 15.0, margin: float = 0.2, api_key: str | None = None,
                          progress=False, timeout: float = 30.0) -> RateSearch:
    """Closed-loop ceiling, then open-loop levels at ``fractions`` of it until one breaks ``p99 x (1 - margin)``.

    A level sends ``rate x level_s`` requests, at least ``min_requests`` (a p99 needs a few dozen) unless that
    would last longer than ``max_level_s`` at a low rate."""
    if not p99_target_ms or p99_target_ms <= 0:
        raise InvalidSpecError(f"p99_target_ms {p99_target_ms!r} must be positive, such as 200",
                               field="p99_target_ms", value=p99_target_ms)
    common = {"api_key": api_key, "timeout": timeout, "batch_size": inputs, "progress": progress}
    closed = run_closed_loop(url, model, concurrency, ceiling_requests, (input_tokens,), **common)
    ceiling = float(closed.summary["req_per_s"].max())
    if not ceiling > 0 or math.isnan(ceiling):
        raise InvalidSpecError(f"no request succeeded at {url}: {closed.records['error'].dropna().head(1).tolist()}",
                               field="url", value=url)
    limit = p99_target_ms * (1 - margin)

    def level(n: int, fraction: float) -> tuple[LoadResult, bool]:
        rate = round(ceiling * fraction, 2)
        requests = min(max(min_requests, math.ceil(rate * level_s)), max(10, math.ceil(rate * max_level_s)))
        result = run_open_loop(url, model, [rate], requests=requests, input_tokens=(input_tokens,), seed=n,
                               **common)
        row = result.summary.iloc[0]
        return result, bool(row["p99_ms"] <= limit and row["errors"] == 0)

    levels, ordered = [], sorted(fractions)
    for n, fraction in enumerate(ordered):
        result, kept = level(n, fraction)
        levels.append(result)
        if not kept:
            break  # past the knee: higher rates only queue more
    if len(levels) == 1 and not kept:  # even the lowest level broke the target: halve the rate, three times
        lowest = ordered[0]
        for extra in range(3):
            lowest /= 2
            result, kept = level(100 + extra, lowest)
            levels.insert(0, result)
            if kept:
                break
    opened = _combine(levels)
    found = sustainable_rate(opened.summary, p99_target_ms, margin=margin)
    return RateSearch(ceiling, closed, opened, found, float(p99_target_ms))


@dataclass(frozen=True)
class ReplayReport:
    """A planned rate replayed open-loop: did p99 stay within target, and how close was the achieved rate?"""

    predicted_rps: float
    achieved_rps: float
    p99_ms: float
    target_ms: float
    errors: int
    requests: int
    tolerance: float = 0.15

    @property
    def rate_error(self) -> float:
        return self.achieved_rps / self.predicted_rps - 1 if self.predicted_rps else math.nan

    @property
    def met_target(self) -> bool:
        return bool(self.p99_ms <= self.target_ms and self.errors == 0)

    @property
    def rate_within_tolerance(self) -> bool:
        return bool(abs(self.rate_error) <= self.tolerance)

    @property
    def held(self) -> bool:
        return self.met_target and self.rate_within_tolerance

    def __str__(self) -> str:
        verdict = "HELD" if self.held else "DID NOT HOLD"
        return (f"replay {verdict}: offered {self.predicted_rps:,.1f} req/s, achieved {self.achieved_rps:,.1f} "
                f"({self.rate_error:+.0%}, tolerance ±{self.tolerance:.0%}); p99 {self.p99_ms:,.0f} ms vs target "
                f"{self.target_ms:,.0f} ms; {self.errors} error(s) in {self.requests} requests")


def replay(url: str, model: str | None, rate: float, p99_target_ms: float, *, input_tokens: int = 32,
           inputs: int = 1, duration_s: float = 15.0, seed: int = 1234, api_key: str | None = None,
           progress=False, timeout: float = 30.0, tolerance: float = 0.15,
           warmup_requests: int = 40) -> tuple[ReplayReport, LoadResult]:
    """Offer ``rate`` req/s open-loop for ``duration_s`` and check the p99 target and the achieved rate.

    ``warmup_requests`` go first (closed loop, not counted), as ``vllm bench serve`` warms up: a server that has
    just started answers its first requests slowly, and at a planned rate near capacity that backlog would
    take the whole replay to drain."""
    if warmup_requests:
        run_closed_loop(url, model, [4], warmup_requests, (input_tokens,), batch_size=inputs, api_key=api_key,
                        timeout=timeout, scrape_metrics=False)
    result = run_open_loop(url, model, [rate], duration_s=duration_s, input_tokens=(input_tokens,),
                           batch_size=inputs, seed=seed, api_key=api_key, progress=progress, timeout=timeout)
    row = result.summary.iloc[0]
    report = ReplayReport(float(rate), float(row["req_per_s"]), float(row["p99_ms"]), float(p99_target_ms),
                          int(row["errors"]), int(row["requests"]), tolerance)
    return report, result
