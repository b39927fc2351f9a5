"""Summaries of load records, and the warning shown when a server comes close to the generator's own ceiling.

Per level (concurrency or rate) and input length - and, when the records carry them, per stream of a mixed
workload and per number of inputs per request: ``requests`` counts every request, ``errors`` those that did not
answer 200 (status 0 for timeouts and dropped connections). Throughput counts successful requests over the
level's wall time (first start to last finish): requests/s, embeddings/s (inputs of successful requests) and
tokens/s (the server's ``usage.prompt_tokens``); latencies are those of successful requests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import InvalidSpecError

RECORD_COLUMNS = ("start_s", "latency_s", "status", "ok", "prompt_tokens", "input_tokens", "concurrency", "rate",
                  "error")
SUMMARY_COLUMNS = ("requests", "errors", "error_rate", "req_per_s", "embeddings_per_s", "tokens_per_s",
                   "latency_mean_ms", "p50_ms", "p90_ms", "p99_ms")
# Record columns that runs add and summaries group by when present: the stream of a mixed workload, and the
# number of inputs per request (absent: one).
OPTIONAL_KEYS = ("stream", "inputs")


def _level_key(records: pd.DataFrame) -> str:
    has_concurrency = records["concurrency"].notna().any()
    has_rate = records["rate"].notna().any()
    if has_concurrency and has_rate:
        raise ValueError("records mix closed-loop (concurrency) and open-loop (rate) runs: summarize them apart")
    return "rate" if has_rate else "concurrency"


def _summary_row(group: pd.DataFrame) -> dict:
    ok = group[group["ok"]]
    wall = float((group["start_s"] + group["latency_s"]).max() - group["start_s"].min()) if len(group) else 0.0
    latencies = ok["latency_s"].to_numpy(dtype=float) * 1000.0
    inputs = float(ok["inputs"].sum()) if "inputs" in ok else float(len(ok))

    def pct(q: float) -> float:
        return float(np.percentile(latencies, q)) if latencies.size else math.nan

    return {
        "requests": int(len(group)),
        "errors": int((~group["ok"]).sum()),
        "error_rate": float((~group["ok"]).mean()) if len(group) else math.nan,
        "req_per_s": len(ok) / wall if wall > 0 else math.nan,
        "embeddings_per_s": inputs / wall if wall > 0 else math.nan,
        "tokens_per_s": float(ok["prompt_tokens"].sum()) / wall if wall > 0 else math.nan,
        "latency_mean_ms": float(latencies.mean()) if latencies.size else math.nan,
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
    }


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    """One row per level and input length: ``concurrency`` or ``rate``, ``input_tokens`` (then ``stream`` and
    ``inputs`` when the records have them), then SUMMARY_COLUMNS."""
    missing = [c for c in RECORD_COLUMNS if c not in records]
    if missing:
        raise ValueError(f"load records lack columns {missing}: pass the records of a loadgen run")
    keys = [_level_key(records), "input_tokens", *(c for c in OPTIONAL_KEYS if c in records)]
    if records.empty:
        return pd.DataFrame(columns=[*keys, *SUMMARY_COLUMNS])
    rows = [{**dict(zip(keys, values)), **_summary_row(group)}
            for values, group in records.groupby(keys, sort=True, dropna=False)]
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])


def headroom_warning(summary: pd.DataFrame, ceiling_rps: float | None) -> str | None:
    """A warning when the best measured req/s is at least half the generator's ceiling, else None."""
    if not ceiling_rps or summary is None or summary.empty:
        return None
    best = float(summary["req_per_s"].max())
    if not best >= ceiling_rps / 2:
        return None
    return (f"The server answered {best:,.0f} req/s, more than half of what this load generator can send on this "
            f"machine ({ceiling_rps:,.0f} req/s against a server that does nothing). Above that the generator's "
            f"own overhead shapes the numbers: run it from another machine or more processes before trusting them.")


# The columns a reader needs from a sweep, in order, with headers that wrap (spaces) so the table fits the page:
# the level keys, throughput, p50/p99, and the server's queue and model time. Everything else stays in the full
# ``table()`` / ``summary``.
COMPACT_COLUMNS = {
    "stream": "stream", "concurrency": "concurrency", "rate": "offered req/s", "input_tokens": "input tokens",
    "inputs": "inputs per request", "requests": "requests", "errors": "errors", "req_per_s": "req/s",
    "embeddings_per_s": "embeddings/s", "tokens_per_s": "tokens/s", "tflops": "TFLOP/s", "mfu": "MFU",
    "p50_ms": "p50 ms", "p99_ms": "p99 ms", "server_queue_mean_ms": "server queue mean ms",
    "server_inference_mean_ms": "server inference mean ms",
}
MISSING = "–"  # shown where a kept column has no value in a row


def _readable(series: pd.Series, digits: int) -> pd.Series:
    """Whole numbers as integers, other floats rounded (two more places below 10), missing values as a dash."""
    values = series.dropna()
    if pd.api.types.is_float_dtype(series) and len(values):
        if (values == values.round()).all() and values.abs().max() < 2**53:
            series = series.astype("Int64")
        else:
            series = series.round(digits + 2 if values.abs().max() < 10 else digits)
    if series.isna().any():
        series = series.astype(object).where(series.notna(), MISSING)
    return series


def compact_table(frame: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A narrow view of a loadgen summary or ``table()`` for reading: only the ``COMPACT_COLUMNS`` that have any
    value, renamed to short wrapping headers, rounded, integers as integers and missing values as a dash."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidSpecError(f"compact_table needs a DataFrame (a loadgen summary or table()), not "
                               f"{type(frame).__name__}", field="frame", value=type(frame).__name__)
    keep = [c for c in COMPACT_COLUMNS if c in frame and frame[c].notna().any()]
    out = pd.DataFrame({c: _readable(frame[c], digits) for c in keep}, index=frame.index)
    return out.rename(columns=COMPACT_COLUMNS)
