"""Closed-loop (concurrency sweep) and open-loop (Poisson rate sweep) load runs.

Both return a :class:`LoadResult`: per-request records (columns in ``RECORD_COLUMNS``), the summary per level,
and, when the server exports Prometheus metrics, its own latency and queue time per level. Every level is bounded
in count and in time: it stops issuing requests after ``requests`` or ``max_duration_s``, whichever comes first,
then waits at most ``drain_s`` for the answers still in flight; a request still unanswered then is recorded as
failed ("unfinished"), and each request has a ``timeout``. Every issued request gets a record; errors are counted,
never dropped, and the summary's ``note`` says why a level was cut short or had errors. Open-loop latency runs
from the request's scheduled arrival, so a client falling behind shows up as latency; arrivals are drawn as they
are due (never materialised), and at most ``max_connections`` requests are in flight.

The sync wrappers (``run_closed_loop``, ``run_open_loop`` in the package) run these through
:func:`~tke_playbook.loadgen.sync.run_interruptibly`: an interrupt stops the requests within seconds and keeps what
was measured.
"""

from __future__ import annotations

import asyncio
import enum
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import promtext
from ..embed.api import root_url
from ..errors import InvalidSpecError
from ..hostenv import state_dir
from .engine import Engine
from .inputs import check_levels, check_range, encoded_bodies
from .progress import Progress
from .rawhttp import RawEngine
from .summary import RECORD_COLUMNS, explain_levels, headroom_warning, summarize

VLLM_INFERENCE = "vllm:request_inference_time_seconds"
ARRIVAL_CHUNK = 1024  # Poisson gaps drawn this many at a time
SETTLED_PROBE_S = 0.25  # a probe answered this fast (or within 3x the fastest) says the server is free again
SETTLE_S = 30.0  # the longest a level waits for a server still busy with requests earlier levels abandoned
INTERRUPTED_FOLDER = "interrupted"  # under the state folder: an interrupted run's finished requests, as CSV


class HttpEngine(str, enum.Enum):
    """How requests are sent: ``raw`` (lean asyncio HTTP/1.1, the default) or ``aiohttp`` (full client)."""

    RAW = "raw"
    AIOHTTP = "aiohttp"


def make_engine(choice: HttpEngine | str, url: str, connections: int, **options) -> Engine | RawEngine:
    try:
        kind = HttpEngine(choice)
    except ValueError:
        raise InvalidSpecError(f"engine {choice!r} is not known: use 'raw' or 'aiohttp'", field="engine",
                               value=choice) from None
    return (RawEngine if kind is HttpEngine.RAW else Engine)(url, connections, **options)


@dataclass
class LoadResult:
    """``records`` (one row per request), ``summary`` (one row per level and input length, with a ``note`` saying
    why a level was cut short or had errors), ``server``, and ``notes`` (one line per such level)."""

    kind: str
    records: pd.DataFrame
    summary: pd.DataFrame
    server: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The client summary with the server-side columns beside it (when scraped)."""
        if self.server is None or self.server.empty:
            return self.summary
        key = [c for c in ("concurrency", "rate", "input_tokens", "inputs") if c in self.summary and c in self.server]
        return self.summary.merge(self.server, on=key, how="left")

    def warning(self, ceiling_rps: float | None) -> str | None:
        return headroom_warning(self.summary, ceiling_rps) if ceiling_rps else None


class _Level:
    """One level's requests as they finish (so an interrupted level keeps the ones that did)."""

    def __init__(self, planned: int | None):
        self.planned = planned
        self.start, self.latency, self.status, self.tokens, self.errors = [], [], [], [], []
        self.issued = 0
        self.abandoned = 0  # requests left unanswered at the time budget (the server may still be running them)
        self.cut = ""  # why the level stopped before sending all it planned

    def add(self, start: float, latency: float, outcome: tuple) -> None:
        self.start.append(start)
        self.latency.append(latency)
        self.status.append(outcome[0])
        self.tokens.append(outcome[1])
        self.errors.append(outcome[2])

    def columns(self) -> tuple:
        return self.start, self.latency, self.status, self.tokens, self.errors


class _Records:
    """Column lists filled level by level; ``frame`` turns them into the records DataFrame. ``levels`` keeps each
    level's key, plan and cut reason for the summary's notes."""

    def __init__(self):
        self.columns = {name: [] for name in (*RECORD_COLUMNS, "inputs")}
        self.levels: list[dict] = []

    def extend(self, start, latency, status, tokens, errors, input_tokens, concurrency, rate, inputs=1) -> None:
        n = len(start)
        self.columns["inputs"] += [inputs] * n
        self.columns["start_s"] += start
        self.columns["latency_s"] += latency
        self.columns["status"] += status
        self.columns["ok"] += [s == 200 for s in status]
        self.columns["prompt_tokens"] += [math.nan if t is None else t for t in tokens]
        self.columns["error"] += errors
        self.columns["input_tokens"] += [input_tokens] * n
        self.columns["concurrency"] += [concurrency] * n
        self.columns["rate"] += [rate] * n

    def add_level(self, level: _Level, input_tokens: int, concurrency: float, rate: float, inputs: int) -> None:
        self.extend(*level.columns(), input_tokens, concurrency, rate, inputs)
        self.levels.append({"concurrency": concurrency, "rate": rate, "input_tokens": input_tokens,
                            "inputs": inputs, "planned": level.planned, "cut": level.cut})

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.columns, columns=[*RECORD_COLUMNS, "inputs"])
        frame["error"] = pd.Series(self.columns["error"], dtype=object)  # str or None, as the records promise
        return frame.astype({"start_s": float, "latency_s": float, "status": int, "ok": bool,
                             "prompt_tokens": float, "input_tokens": int, "concurrency": float, "rate": float,
                             "inputs": int})


def _unfinished(budget_s: float) -> tuple:
    return 0, None, f"unfinished: no answer before the level's {budget_s:g} s time budget ended"


async def _finish(tasks, level: _Level, in_flight: dict, wait_s: float | None, t0: float, budget_s: float) -> None:
    """Wait for ``tasks`` (at most ``wait_s``); requests still in flight then are recorded as unfinished and
    cancelled. On cancellation (an interrupt) the tasks are cancelled too and nothing more is recorded."""
    clock = time.perf_counter
    try:
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=wait_s)
            if pending:
                now = clock()
                for began in list(in_flight.values()):
                    level.add(began - t0, now - began, _unfinished(budget_s))
    finally:
        level.abandoned += len(in_flight)  # unanswered at the budget, or cancelled: left to the server
        in_flight.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _closed_level(engine: Engine, bodies: list[bytes], concurrency: int, count: int,
                        max_duration_s: float | None, t0: float, progress: Progress | None = None,
                        drain_s: float | None = None, level: _Level | None = None) -> _Level:
    level = level if level is not None else _Level(count)
    clock = time.perf_counter
    deadline = clock() + max_duration_s if max_duration_s else math.inf
    nbodies = len(bodies)
    in_flight: dict[int, float] = {}

    limit = math.inf if count is None else count

    async def worker() -> None:
        while level.issued < limit and clock() < deadline:
            i = level.issued
            level.issued += 1
            began = in_flight[i] = clock()
            outcome = await engine.send(bodies[i % nbodies])
            if in_flight.pop(i, None) is None:
                return  # recorded as unfinished already
            level.add(began - t0, clock() - began, outcome)
            if progress is not None:
                progress.finished()

    tasks = [asyncio.ensure_future(worker()) for _ in range(int(min(concurrency, limit)))]
    wait_s = None if not max_duration_s else max_duration_s + (max_duration_s if drain_s is None else drain_s)
    await _finish(tasks, level, in_flight, wait_s, t0, max_duration_s or 0.0)
    if count is not None and level.issued < count:
        level.cut = f"stopped at its {max_duration_s:g} s time budget after {level.issued} of {count} requests"
    return level


def _arrivals(rate: float, seed: int):
    """Offsets (s) of a Poisson process at ``rate``, drawn as they are needed: the first at 0."""
    rng = np.random.default_rng(seed)
    offset = 0.0
    yield offset
    while True:
        for gap in rng.exponential(1.0 / rate, ARRIVAL_CHUNK).tolist():
            offset += gap
            yield offset


async def _open_level(engine: Engine, bodies: list[bytes], rate: float, count: int, seed: int, t0: float,
                      progress: Progress | None = None, max_duration_s: float | None = None,
                      drain_s: float | None = None, max_in_flight: int = 256, level: _Level | None = None) -> _Level:
    """Send ``count`` requests at Poisson arrivals; stop sending at ``max_duration_s`` (wall time), then wait
    ``drain_s`` for the answers. At most ``max_in_flight`` requests exist at once: a request that waits for a
    free slot is late, and the wait counts as latency (latency runs from the scheduled arrival)."""
    level = level if level is not None else _Level(count)
    clock = time.perf_counter
    nbodies = len(bodies)
    slots = asyncio.Semaphore(max(1, int(max_in_flight)))
    in_flight: dict[int, float] = {}
    tasks: set[asyncio.Task] = set()

    async def one(i: int, due: float) -> None:
        try:
            outcome = await engine.send(bodies[i % nbodies])
        finally:
            slots.release()
        if in_flight.pop(i, None) is None:
            return
        level.add(due - t0, clock() - due, outcome)
        if progress is not None:
            progress.finished()

    begin = clock()
    stop_at = begin + max_duration_s if max_duration_s else math.inf
    try:
        for i, offset in zip(range(count), _arrivals(rate, seed)):
            due = begin + offset
            if due > stop_at or clock() > stop_at:  # its time is up, or the generator fell that far behind
                break
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            await slots.acquire()
            in_flight[i] = due
            level.issued += 1
            task = asyncio.ensure_future(one(i, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except BaseException:
        level.abandoned += len(in_flight)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    await _finish(list(tasks), level, in_flight, drain_s, t0, (max_duration_s or 0.0) + (drain_s or 0.0))
    if level.issued < count:
        level.cut = (f"stopped sending at its {max_duration_s:g} s time budget after {level.issued} of {count} "
                     f"requests")
    return level


async def _scrape(engine: Engine, scrape: bool) -> str | None:
    return await engine.get_text("/metrics") if scrape else None


# Requests abandoned at a level's time budget keep the server busy after the client has left (a batch already in
# the model runs to its end), so the next level - or the next run, say the rate search after a sweep - would be
# measured on top of them. Per server: how many were abandoned and not yet seen to be finished.
_ABANDONED: dict[str, int] = {}


def abandoned(base_url: str, count: int) -> None:
    """Note that ``count`` requests to ``base_url`` were left unanswered (the next level settles first)."""
    if count:
        _ABANDONED[base_url] = _ABANDONED.get(base_url, 0) + count


async def _settle(engine, base_url: str, probe: bytes, settle_s: float, progress: Progress | None) -> None:
    """After abandoned requests: send one small probe after another until two answer fast in a row (the server's
    workers are free again), at most ``settle_s``. A wait of more than a second is noted."""
    if not _ABANDONED.get(base_url):
        return
    if progress is not None:
        progress.add_budget(settle_s)  # an honest bound: this wait was not foreseeable when the run began
    clock = time.perf_counter
    began, best, fast, count = clock(), math.inf, 0, _ABANDONED[base_url]
    while fast < 2 and clock() - began < settle_s:
        sent = clock()
        status, _, _ = await engine.send(probe)
        took = clock() - sent
        best = min(best, took) if status == 200 else best
        fast = fast + 1 if status == 200 and took <= max(SETTLED_PROBE_S, 3 * best) else 0
    waited = clock() - began
    if progress is not None:
        progress.waited(waited, settle_s)
    if fast >= 2:
        _ABANDONED.pop(base_url, None)
    if waited > 1.0 and progress is not None:
        state = "" if fast >= 2 else f" (still busy after {settle_s:g} s: the numbers below include that work)"
        progress.note(f"before {progress.level}: waited {waited:.1f} s for the server to finish the {count} "
                      f"request(s) earlier levels left unanswered{state}")


def _server_row(before: str | None, after: str | None, key: dict) -> dict | None:
    """The server's own numbers for one level: vLLM's latency and queue time, plus its inference (running) time,
    so queueing and compute can be told apart."""
    if before is None or after is None:
        return None
    inference = promtext.histogram(promtext.diff(before, after), VLLM_INFERENCE)
    return {**key, **promtext.server_summary(before, after), "server_inference_mean_ms": inference.mean * 1000}


def _level_text(tokens: int, inputs: int, *, concurrency: int | None = None, rate: float | None = None) -> str:
    where = f"c={concurrency}" if concurrency is not None else f"{rate:g} req/s"
    return f"level {where}, {inputs} input{'s' if inputs != 1 else ''} × {tokens} tokens"


def _settle_s(settle_s: float | None) -> float:
    return SETTLE_S if settle_s is None else check_range(settle_s, "settle_s", 0.0, 3600.0, 30, low_inclusive=True)


class _Sweep:
    """What the levels of one run share: the server, the settle probe, the records and the server's numbers."""

    def __init__(self, kind: str, base: str, model: str | None, settle: float, scrape_metrics: bool,
                 progress: Progress | None):
        self.kind, self.base, self.settle = kind, base, settle
        self.scrape_metrics, self.progress = scrape_metrics, progress
        self.probe = encoded_bodies(model, 1, variants=1)[0]
        self.records, self.server_rows = _Records(), []

    async def level(self, sender_context, bodies: list[bytes], current: _Level, where: tuple, key: dict,
                    send) -> None:
        """One level: wait for the server to settle, scrape /metrics, ``send(sender, prepared bodies)``, scrape
        again. ``where`` is (input tokens, concurrency, rate, inputs); the level is recorded also when it is
        interrupted (then ``progress.partial`` holds every record so far)."""
        tokens, _, _, inputs = where
        async with sender_context as sender:
            prepared = [sender.prepare(b) for b in bodies]
            await _settle(sender, self.base, sender.prepare(self.probe), self.settle, self.progress)
            before = await _scrape(sender, self.scrape_metrics)
            try:
                await send(sender, prepared)
            except asyncio.CancelledError:
                abandoned(self.base, current.abandoned)
                current.cut = "interrupted"
                self.records.add_level(current, *where)
                self.keep_partial()
                raise
            after = await _scrape(sender, self.scrape_metrics)
        abandoned(self.base, current.abandoned)
        self.records.add_level(current, *where)
        self.server_rows.append(_server_row(before, after, {**key, "input_tokens": tokens, "inputs": inputs}))
        if self.progress is not None:
            self.progress.level_ended()

    def keep_partial(self) -> None:
        _keep_partial(self.progress, self.kind, self.records)

    def result(self) -> LoadResult:
        return _result(self.kind, self.records, self.server_rows, self.scrape_metrics, self.progress)


def closed_budget_s(max_duration_s: float | None, drain_s: float | None = None) -> float | None:
    """A closed-loop level's time bound: issuing for ``max_duration_s``, then the drain (default as long again).
    A wait for the server to finish abandoned requests adds to a run's bound when it happens."""
    if not max_duration_s:
        return None
    return max_duration_s + (max_duration_s if drain_s is None else drain_s)


def open_budget_s(duration_s: float, drain_s: float) -> float:
    """An open-loop level's time bound: sending (:func:`send_bound_s`), then draining."""
    return send_bound_s(duration_s) + drain_s


async def run_closed_loop_async(url: str, model: str | None = None, concurrency_levels=(1, 4, 16, 64),
                                requests_per_level: int = 200, input_tokens=(128,), *, api_key: str | None = None,
                                timeout: float = 60.0, max_duration_s: float | None = 60.0, drain_s=None,
                                batch_size=1, scrape_metrics: bool = True, engine: HttpEngine | str = "raw",
                                settle_s: float | None = None, progress: Progress | None = None) -> LoadResult:
    """Closed loop: at each concurrency level, that many workers each send one request after another.

    ``batch_size`` is the number of inputs per request; a list sweeps it too (input length x inputs per request x
    concurrency). A level issues ``requests_per_level`` requests or for ``max_duration_s``, whichever ends first
    (``requests_per_level=None``: for ``max_duration_s``), then waits ``drain_s`` (default: as long again) for the
    answers in flight. Before a level it waits up to ``settle_s`` (default ``SETTLE_S``) for the server to finish
    requests earlier levels (or runs) abandoned, if there were any. ``progress`` (a
    :class:`~tke_playbook.loadgen.progress.Progress`) is told as each request finishes; when the run is
    cancelled, ``progress.partial`` holds the records so far."""
    base = root_url(url)
    levels = check_levels(concurrency_levels, "concurrency_levels")
    lengths = check_levels(input_tokens, "input_tokens")
    batches = check_levels(batch_size, "batch_size")
    if requests_per_level is None and not max_duration_s:
        raise InvalidSpecError("requests_per_level=None runs each level for its time budget: pass max_duration_s, "
                               "e.g. 3", field="max_duration_s", value=max_duration_s)
    count = None if requests_per_level is None else check_levels([requests_per_level], "requests_per_level")[0]
    timeout = check_range(timeout, "timeout", 0.0, 3600.0, 60)
    sweep = _Sweep("closed", base, model, _settle_s(settle_s), scrape_metrics, progress)
    t0 = time.perf_counter()
    try:
        for tokens in lengths:
            for inputs in batches:
                bodies = encoded_bodies(model, tokens, batch_size=inputs)
                for level in levels:
                    if progress is not None:
                        progress.level_started(_level_text(tokens, inputs, concurrency=level),
                                               closed_budget_s(max_duration_s, drain_s) or 0.0)
                    current = _Level(count)
                    await sweep.level(
                        make_engine(engine, base, level, api_key=api_key, timeout=timeout), bodies, current,
                        (tokens, float(level), math.nan, inputs), {"concurrency": float(level)},
                        lambda sender, prepared: _closed_level(sender, prepared, level, count, max_duration_s, t0,
                                                               progress, drain_s, current))
    except asyncio.CancelledError:
        sweep.keep_partial()  # cancelled between levels
        raise
    return sweep.result()


def _rates(rates) -> list[float]:
    rate_levels = check_levels(rates, "rates", kind=float)
    for rate in rate_levels:
        check_range(rate, "rate", 0.0, MAX_RATE, 50)
    return rate_levels


def _open_counts(rate_levels: list[float], duration_s: float | None,
                 requests: int | None) -> tuple[list[int], float | None]:
    """Requests per level (``requests``, else ``rate x duration_s``) and the checked duration."""
    if requests is None and not duration_s:
        raise InvalidSpecError("an open-loop run needs duration_s or requests: pass e.g. duration_s=10",
                               field="duration_s", value=duration_s)
    if duration_s is not None:
        duration_s = check_range(duration_s, "duration_s", 0.0, MAX_DURATION_S, 10)
    return [int(requests) if requests is not None else max(1, math.ceil(r * duration_s)) for r in rate_levels], \
        duration_s


async def run_open_loop_async(url: str, model: str | None = None, rates=(1.0, 10.0, 50.0), *,
                              duration_s: float | None = 10.0, requests: int | None = None, input_tokens=(128,),
                              api_key: str | None = None, timeout: float = 60.0, seed: int = 0,
                              max_connections: int = 256, batch_size=1, max_duration_s: float | None = None,
                              drain_s: float | None = None, scrape_metrics: bool = True,
                              engine: HttpEngine | str = "raw", settle_s: float | None = None,
                              progress: Progress | None = None) -> LoadResult:
    """Open loop: at each rate (req/s), requests arrive as a seeded Poisson process, whatever the answers do.

    A level sends ``requests`` requests, or ``rate * duration_s`` when ``requests`` is None, and stops sending at
    ``max_duration_s`` (default: :func:`send_bound_s` of ``duration_s``, else none); answers still missing ``drain_s`` after the last
    arrival (default: ``timeout``) are recorded as unfinished. ``batch_size`` (inputs per request) may be a list,
    swept like ``input_tokens``. At most ``max_connections`` requests are in flight; beyond that, requests wait
    for a connection and the wait counts as latency. Before a level it waits up to ``settle_s`` (default
    ``SETTLE_S``) for the server to finish requests earlier levels (or runs) abandoned, if there were any."""
    base = root_url(url)
    rate_levels = _rates(rates)
    lengths = check_levels(input_tokens, "input_tokens")
    counts, duration_s = _open_counts(rate_levels, duration_s, requests)
    batches = check_levels(batch_size, "batch_size")
    timeout = check_range(timeout, "timeout", 0.0, 3600.0, 60)
    bound = max_duration_s if max_duration_s is not None else send_bound_s(duration_s)
    drain = timeout if drain_s is None else drain_s
    sweep = _Sweep("open", base, model, _settle_s(settle_s), scrape_metrics, progress)
    t0 = time.perf_counter()
    try:
        for tokens, inputs in ((t, b) for t in lengths for b in batches):
            bodies = encoded_bodies(model, tokens, batch_size=inputs)
            for n, (rate, count) in enumerate(zip(rate_levels, counts)):
                if progress is not None:
                    progress.level_started(_level_text(tokens, inputs, rate=rate),
                                           (bound if bound else count / rate) + drain)
                current = _Level(count)
                await sweep.level(
                    make_engine(engine, base, max_connections, api_key=api_key, timeout=timeout), bodies, current,
                    (tokens, math.nan, rate, inputs), {"rate": rate},
                    lambda sender, prepared: _open_level(sender, prepared, rate, count, seed + n, t0, progress,
                                                         bound, drain, max_connections, current))
    except asyncio.CancelledError:
        sweep.keep_partial()  # cancelled between levels
        raise
    return sweep.result()


def send_bound_s(duration_s: float | None) -> float | None:
    """How long a level planned for ``duration_s`` may keep sending: Poisson arrivals of ``rate x duration``
    requests end near ``duration_s`` (within a few percent), so a quarter more and a second is a bound that cuts
    only a generator falling far behind."""
    return None if not duration_s else duration_s * 1.25 + 1.0


MAX_RATE = 100_000.0        # req/s: far beyond what one generator process sends (see measure_ceiling)
MAX_DURATION_S = 24 * 3600.0


def interrupted_dir(home: str | os.PathLike | None = None) -> Path:
    """Where an interrupted run keeps the requests it finished, as CSV: ``<home>/interrupted`` (``home``: the
    state folder, the caller's settings; None: :func:`~tke_playbook.hostenv.state_dir`)."""
    return state_dir(home=home) / INTERRUPTED_FOLDER


def _keep_partial(progress: Progress | None, kind: str, records: _Records) -> None:
    """On an interrupt: the requests finished so far as a LoadResult in ``progress.partial`` and as CSV in
    :func:`interrupted_dir` of ``progress.home`` (named in ``progress.kept``). Only the first call (the innermost
    level) counts."""
    if progress is None or progress.partial is not None:
        return
    frame = records.frame()
    if frame.empty:
        return  # nothing was measured yet: the line says so
    result = LoadResult(kind, frame, summarize(frame), None,
                        ["interrupted: only the requests that finished are here"])
    progress.partial = result
    folder = interrupted_dir(progress.home)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{progress.desc.replace(' ', '-')}.csv"
    frame.to_csv(path, index=False)
    progress.kept = f"last_interrupted() and {path}"


def _result(kind: str, records: _Records, server_rows: list, scrape_metrics: bool,
            progress: Progress | None = None) -> LoadResult:
    frame = records.frame()
    rows = [r for r in server_rows if r is not None]
    server = pd.DataFrame(rows) if rows else None
    summary, notes = explain_levels(summarize(frame), frame, pd.DataFrame(records.levels))
    if not rows and scrape_metrics:
        notes.append("the server's /metrics could not be read: only client-side numbers are shown")
    if progress is not None:
        for note in notes:
            progress.note(note)
    return LoadResult(kind, frame, summary, server, notes)
