"""Closed-loop (concurrency sweep) and open-loop (Poisson rate sweep) load runs.

Both return a :class:`LoadResult`: per-request records (columns in ``RECORD_COLUMNS``), the summary per level,
and, when the server exports Prometheus metrics, its own latency and queue time per level. Runs are bounded in
count and in time: a level stops issuing requests after ``requests`` or ``max_duration_s``, whichever comes
first, and each request has a ``timeout``. Every issued request gets a record; errors are counted, never dropped.
Open-loop latency runs from the request's scheduled arrival, so a client falling behind shows up as latency.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..embed.api import root_url
from ..errors import InvalidSpecError
from . import promtext
from .engine import Engine
from .inputs import check_levels, encoded_bodies
from .progress import describe, make_bar
from .rawhttp import RawEngine
from .summary import RECORD_COLUMNS, headroom_warning, summarize

VLLM_INFERENCE = "vllm:request_inference_time_seconds"


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
    """``records`` (one row per request), ``summary`` (one row per level and input length), ``server``."""

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


class _Records:
    """Column lists filled in place; ``rows`` turns them into record dicts for the DataFrame."""

    def __init__(self):
        self.columns = {name: [] for name in (*RECORD_COLUMNS, "inputs")}

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

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.columns, columns=[*RECORD_COLUMNS, "inputs"])
        frame["error"] = pd.Series(self.columns["error"], dtype=object)  # str or None, as the records promise
        return frame.astype({"start_s": float, "latency_s": float, "status": int, "ok": bool,
                             "prompt_tokens": float, "input_tokens": int, "concurrency": float, "rate": float,
                             "inputs": int})


async def _closed_level(engine: Engine, bodies: list[bytes], concurrency: int, count: int,
                        max_duration_s: float | None, t0: float, bar=None):
    start, latency, status, tokens, errors = [0.0] * count, [0.0] * count, [0] * count, [None] * count, \
        [None] * count
    issued = 0
    clock = time.perf_counter
    deadline = clock() + max_duration_s if max_duration_s else math.inf
    nbodies = len(bodies)

    async def worker() -> None:
        nonlocal issued
        while issued < count and clock() < deadline:
            i = issued
            issued += 1
            began = clock()
            status[i], tokens[i], errors[i] = await engine.send(bodies[i % nbodies])
            latency[i] = clock() - began
            start[i] = began - t0
            if bar is not None:
                bar.update(1)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return start[:issued], latency[:issued], status[:issued], tokens[:issued], errors[:issued]


async def _open_level(engine: Engine, bodies: list[bytes], rate: float, count: int, seed: int, t0: float,
                      bar=None):
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, count)
    arrivals = np.cumsum(gaps) - gaps[0]
    start, latency, status, tokens, errors = [0.0] * count, [0.0] * count, [0] * count, [None] * count, \
        [None] * count
    clock = time.perf_counter
    nbodies = len(bodies)

    async def one(i: int, due: float) -> None:
        status[i], tokens[i], errors[i] = await engine.send(bodies[i % nbodies])
        latency[i] = clock() - due
        start[i] = due - t0
        if bar is not None:
            bar.update(1)

    tasks = []
    begin = clock()
    for i, offset in enumerate(arrivals.tolist()):
        due = begin + offset
        wait = due - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    return start, latency, status, tokens, errors


async def _scrape(engine: Engine, scrape: bool) -> str | None:
    return await engine.get_text("/metrics") if scrape else None


def _server_row(before: str | None, after: str | None, key: dict) -> dict | None:
    """The server's own numbers for one level: vLLM's latency and queue time, plus its inference (running) time,
    so queueing and compute can be told apart."""
    if before is None or after is None:
        return None
    inference = promtext.histogram(promtext.diff(before, after), VLLM_INFERENCE)
    return {**key, **promtext.server_summary(before, after), "server_inference_mean_ms": inference.mean * 1000}


async def run_closed_loop_async(url: str, model: str | None = None, concurrency_levels=(1, 4, 16, 64),
                                requests_per_level: int = 200, input_tokens=(128,), *, api_key: str | None = None,
                                timeout: float = 60.0, max_duration_s: float | None = 60.0, batch_size=1,
                                scrape_metrics: bool = True, engine: HttpEngine | str = "raw",
                                progress=False) -> LoadResult:
    """Closed loop: at each concurrency level, that many workers each send one request after another.

    ``batch_size`` is the number of inputs per request; a list sweeps it too (input length x inputs per request x
    concurrency). ``progress=True`` shows a progress bar.
    """
    base = root_url(url)
    levels = check_levels(concurrency_levels, "concurrency_levels")
    lengths = check_levels(input_tokens, "input_tokens")
    batches = check_levels(batch_size, "batch_size")
    count = check_levels([requests_per_level], "requests_per_level")[0]
    records, server_rows, t0 = _Records(), [], time.perf_counter()
    bar = make_bar(progress, len(lengths) * len(batches) * len(levels) * count, "closed loop")
    try:
        for tokens in lengths:
            for inputs in batches:
                bodies = encoded_bodies(model, tokens, batch_size=inputs)
                for level in levels:
                    describe(bar, f"{tokens} tok x {inputs} in, concurrency {level}")
                    async with make_engine(engine, base, level, api_key=api_key, timeout=timeout) as sender:
                        before = await _scrape(sender, scrape_metrics)
                        prepared = [sender.prepare(b) for b in bodies]
                        columns = await _closed_level(sender, prepared, level, count, max_duration_s, t0, bar)
                        after = await _scrape(sender, scrape_metrics)
                    records.extend(*columns, tokens, float(level), math.nan, inputs)
                    server_rows.append(_server_row(before, after, {"concurrency": float(level),
                                                                   "input_tokens": tokens, "inputs": inputs}))
    finally:
        bar.close()
    return _result("closed", records, server_rows, scrape_metrics)


async def run_open_loop_async(url: str, model: str | None = None, rates=(1.0, 10.0, 50.0), *,
                              duration_s: float | None = 10.0, requests: int | None = None, input_tokens=(128,),
                              api_key: str | None = None, timeout: float = 60.0, seed: int = 0,
                              max_connections: int = 256, batch_size=1,
                              scrape_metrics: bool = True, engine: HttpEngine | str = "raw",
                              progress=False) -> LoadResult:
    """Open loop: at each rate (req/s), requests arrive as a seeded Poisson process, whatever the answers do.

    A level sends ``requests`` requests, or ``rate * duration_s`` when ``requests`` is None; ``batch_size`` (inputs
    per request) may be a list, swept like ``input_tokens``. At most
    ``max_connections`` are in flight; beyond that, requests wait for a connection and the wait counts as latency.
    """
    base = root_url(url)
    rate_levels = check_levels(rates, "rates", kind=float)
    lengths = check_levels(input_tokens, "input_tokens")
    if requests is None and not duration_s:
        raise InvalidSpecError("an open-loop run needs duration_s or requests: pass e.g. duration_s=10",
                               field="duration_s", value=duration_s)
    batches = check_levels(batch_size, "batch_size")
    counts = [int(requests) if requests is not None else max(1, math.ceil(r * duration_s)) for r in rate_levels]
    records, server_rows, t0 = _Records(), [], time.perf_counter()
    bar = make_bar(progress, len(lengths) * len(batches) * sum(counts), "open loop")
    try:
        for tokens, inputs in ((t, b) for t in lengths for b in batches):
            bodies = encoded_bodies(model, tokens, batch_size=inputs)
            for n, (rate, count) in enumerate(zip(rate_levels, counts)):
                describe(bar, f"{tokens} tok x {inputs} in, {rate:g} req/s")
                async with make_engine(engine, base, max_connections, api_key=api_key, timeout=timeout) as sender:
                    before = await _scrape(sender, scrape_metrics)
                    prepared = [sender.prepare(b) for b in bodies]
                    columns = await _open_level(sender, prepared, rate, count, seed + n, t0, bar)
                    after = await _scrape(sender, scrape_metrics)
                records.extend(*columns, tokens, math.nan, rate, inputs)
                server_rows.append(_server_row(before, after, {"rate": rate, "input_tokens": tokens,
                                                               "inputs": inputs}))
    finally:
        bar.close()
    return _result("open", records, server_rows, scrape_metrics)


def _result(kind: str, records: _Records, server_rows: list, scrape_metrics: bool) -> LoadResult:
    frame = records.frame()
    notes, server = [], None
    rows = [r for r in server_rows if r is not None]
    if rows:
        server = pd.DataFrame(rows)
    elif scrape_metrics:
        notes.append("the server's /metrics could not be read: only client-side numbers are shown")
    return LoadResult(kind, frame, summarize(frame), server, notes)
