"""Embedding-shaped workloads: a mixed run of a bulk-ingestion stream and a query stream, each with its own target.

Embedding traffic is rarely one shape: documents arrive in bulk (many long inputs per request) while users send a
trickle of single short queries that must answer fast. :func:`run_mixed` sends both at once, each as its own
seeded Poisson stream on its own connections, and reports them apart: the records carry a ``stream`` column, the
summary has one row per stream, and :meth:`MixedResult.targets` says whether each stream kept its p99 target.
The sweeps over input length x inputs per request x concurrency are :func:`~tke_playbook.loadgen.run_closed_loop`
with lists for ``input_tokens`` and ``batch_size``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from dataclasses import dataclass, field

import pandas as pd

from ..embed.api import root_url
from ..errors import InvalidSpecError
from ..specs.names import validate_number
from .inputs import check_range, encoded_bodies
from .progress import Progress
from .runner import (MAX_DURATION_S, SETTLE_S, HttpEngine, LoadResult, _Level, _open_level, _Records, _scrape,
                     _server_row, _settle, abandoned, make_engine, open_budget_s, send_bound_s)
from .summary import explain_levels, summarize
from .sync import run_interruptibly


@dataclass(frozen=True)
class Stream:
    """One stream of a mixed workload: ``rate`` requests/s of ``inputs`` texts of ``input_tokens`` tokens each."""

    name: str
    rate: float
    input_tokens: int
    inputs: int = 1
    p99_target_ms: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidSpecError("a stream needs a name, such as 'bulk' or 'query'", field="name", value=self.name)
        object.__setattr__(self, "rate", validate_number(self.rate, "rate", 2.0))
        object.__setattr__(self, "input_tokens", validate_number(self.input_tokens, "input_tokens", 512, whole=True))
        object.__setattr__(self, "inputs", validate_number(self.inputs, "inputs", 32, whole=True))
        if self.p99_target_ms is not None:
            object.__setattr__(self, "p99_target_ms", validate_number(self.p99_target_ms, "p99_target_ms", 200))


def default_streams(scale: float = 1.0, *, bulk_tokens: int = 200, bulk_inputs: int = 16,
                    bulk_target_ms: float = 10_000.0, query_target_ms: float = 250.0) -> tuple[Stream, Stream]:
    """Bulk ingestion (``bulk_inputs`` documents of ``bulk_tokens`` tokens per request, 0.5 req/s) beside single
    16-token queries (10 req/s); ``scale`` multiplies both rates. 200 tokens fit every catalog model."""
    return (Stream("bulk", 0.5 * scale, bulk_tokens, bulk_inputs, p99_target_ms=bulk_target_ms),
            Stream("query", 10.0 * scale, 16, 1, p99_target_ms=query_target_ms))


@dataclass
class MixedResult(LoadResult):
    """A :class:`LoadResult` whose records and summary have a ``stream`` column; ``streams`` as run."""

    streams: tuple[Stream, ...] = field(default_factory=tuple)

    def table(self) -> pd.DataFrame:
        """The per-stream summary (the server's /metrics cannot tell the streams apart: see ``server``)."""
        return self.summary

    def targets(self) -> pd.DataFrame:
        """Per stream: requests, p99 against its target (ms, one decimal), whether the target held (no target:
        None) and, when something went wrong, why (``note``)."""
        rows = []
        for stream in self.streams:
            row = self.summary[self.summary["stream"] == stream.name]
            p99 = float(row["p99_ms"].iloc[0]) if len(row) else math.nan
            errors = int(row["errors"].iloc[0]) if len(row) else 0
            met = None if stream.p99_target_ms is None else bool(p99 <= stream.p99_target_ms and errors == 0)
            note = str(row["note"].iloc[0]) if len(row) and "note" in row else ""
            rows.append({"stream": stream.name, "rate": stream.rate, "input_tokens": stream.input_tokens,
                         "inputs": stream.inputs, "requests": int(row["requests"].iloc[0]) if len(row) else 0,
                         "p99_ms": round(p99, 1), "target_ms": stream.p99_target_ms, "errors": errors, "met": met,
                         "note": note or "–"})
        return pd.DataFrame(rows)


async def run_mixed_async(url: str, model: str | None = None, streams=None, *, duration_s: float = 10.0,
                          api_key: str | None = None, timeout: float = 60.0, seed: int = 0,
                          max_connections: int = 256, drain_s: float | None = None, scrape_metrics: bool = True,
                          engine: HttpEngine | str = "raw", progress: Progress | None = None) -> MixedResult:
    """Send every stream at once for ``duration_s`` seconds, each as its own Poisson process; answers still
    missing ``drain_s`` (default: ``timeout``) after the end are recorded as unfinished."""
    base = root_url(url)
    streams = _checked_streams(streams)
    duration = check_range(duration_s, "duration_s", 0.0, MAX_DURATION_S, 10)
    drain = timeout if drain_s is None else check_range(drain_s, "drain_s", 0.0, 3600.0, 5, low_inclusive=True)
    counts = [max(1, math.ceil(s.rate * duration)) for s in streams]
    levels = [_Level(count) for count in counts]
    if progress is not None:
        progress.level_started(", ".join(f"{s.name} {s.rate:g} req/s" for s in streams),
                               open_budget_s(duration, drain))
    engines = functools.partial(make_engine, engine, base, api_key=api_key, timeout=timeout)
    try:
        before, after = await _send_streams(engines, base, model, streams, list(zip(counts, levels)), seed=seed,
                                            progress=progress, duration=duration, drain=drain,
                                            max_connections=max_connections, scrape_metrics=scrape_metrics)
    except asyncio.CancelledError:
        abandoned(base, sum(level.abandoned for level in levels))
        if progress is not None:
            progress.partial = _mixed_result(streams, levels, None, None, scrape_metrics)
            progress.kept = "last_interrupted()"
        raise
    abandoned(base, sum(level.abandoned for level in levels))
    result = _mixed_result(streams, levels, before, after, scrape_metrics)
    if progress is not None:
        progress.level_ended()
        for note in result.notes:
            progress.note(note)
    return result


def _checked_streams(streams) -> tuple[Stream, ...]:
    streams = tuple(streams or default_streams())
    if not all(isinstance(s, Stream) for s in streams) or len({s.name for s in streams}) != len(streams):
        raise InvalidSpecError("streams must be Stream objects with distinct names, e.g. default_streams()",
                               field="streams", value=streams)
    return streams


async def _send_streams(engines, base: str, model: str | None, streams: tuple[Stream, ...], plan: list, *,
                        seed: int, progress: Progress | None, duration: float, drain: float, max_connections: int,
                        scrape_metrics: bool) -> tuple[str | None, str | None]:
    """Every stream at once, each on its own engine (``engines(connections)``) as its own Poisson process, into
    its ``(count, level)`` of ``plan``; the server's /metrics before and after."""
    t0 = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        scraper = await stack.enter_async_context(engines(4))
        senders = [await stack.enter_async_context(engines(max_connections)) for _ in streams]
        await _settle(scraper, base, scraper.prepare(encoded_bodies(model, 1, variants=1)[0]), SETTLE_S, progress)
        before = await _scrape(scraper, scrape_metrics)
        await asyncio.gather(*(
            _open_level(sender, [sender.prepare(b) for b in encoded_bodies(model, s.input_tokens, batch_size=s.inputs)],
                        s.rate, count, seed + n, t0, progress, send_bound_s(duration), drain, max_connections, level)
            for n, (sender, s, (count, level)) in enumerate(zip(senders, streams, plan))))
        return before, await _scrape(scraper, scrape_metrics)


def _mixed_result(streams, levels, before, after, scrape_metrics: bool) -> MixedResult:
    frames, plan = [], []
    for stream, level in zip(streams, levels):
        records = _Records()
        records.extend(*level.columns(), stream.input_tokens, math.nan, stream.rate, stream.inputs)
        frames.append(records.frame().assign(stream=stream.name))
        plan.append({"stream": stream.name, "cut": level.cut})
    frame = pd.concat(frames, ignore_index=True)
    summary, notes = explain_levels(summarize(frame), frame, pd.DataFrame(plan))
    server_row = _server_row(before, after, {"stream": "all streams"})
    if server_row is None and scrape_metrics:
        notes.append("the server's /metrics could not be read: only client-side numbers are shown")
    return MixedResult("mixed", frame, summary, pd.DataFrame([server_row]) if server_row else None, notes, streams)


def run_mixed(url: str, model: str | None = None, streams=None, *, progress=False, **options) -> MixedResult:
    """Mixed bulk + query workload (see :func:`run_mixed_async` for the options); Jupyter-safe and
    interruptible."""
    duration = options.get("duration_s", 10.0)
    drain = options.get("timeout", 60.0) if options.get("drain_s") is None else options["drain_s"]
    budget = open_budget_s(duration, drain) if all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in (duration, drain)) else None
    return run_interruptibly(lambda p: run_mixed_async(url, model, streams, progress=p, **options),
                             Progress("mixed workload", budget, levels=1), progress)
