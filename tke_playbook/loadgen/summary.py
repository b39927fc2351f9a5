"""Summaries of load records, and the warning shown when a server comes close to the generator's own ceiling.

Per level (concurrency or rate) and input length - and, when the records carry them, per stream of a mixed
workload and per number of inputs per request: ``requests`` counts every request, ``errors`` those that did not
answer 200 (status 0 for timeouts and dropped connections). Throughput counts successful requests over the
level's wall time (first start to last finish): requests/s, embeddings/s (inputs of successful requests) and
tokens/s (the server's ``usage.prompt_tokens``); latencies are those of successful requests. Open-loop summaries
add ``offered_per_s``: the rate the level's Poisson arrivals actually offered.
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
    columns = [*keys, *SUMMARY_COLUMNS] + (["offered_per_s"] if keys[0] == "rate" else [])
    if records.empty:
        return pd.DataFrame(columns=columns)
    rows = [{**dict(zip(keys, values)), **_summary_row(group), "offered_per_s": _offered(group)}
            for values, group in records.groupby(keys, sort=True, dropna=False)]
    return pd.DataFrame(rows, columns=columns)


def _offered(group: pd.DataFrame) -> float:
    """The rate an open-loop level actually offered: its requests over the span of their scheduled arrivals
    (Poisson noise makes it differ from the nominal rate by several percent over a short level)."""
    starts = group["start_s"].to_numpy(dtype=float)
    span = float(starts.max() - starts.min()) if len(starts) > 1 else 0.0
    return (len(starts) - 1) / span if span > 0 else math.nan


def _error_words(errors: pd.Series, total: int) -> str:
    """``'4 of 34 requests failed (timeout: no answer within 60 s)'``: the failures by message, commonest first."""
    counts = errors.dropna().astype(str).str.slice(0, 120).value_counts()
    if counts.empty:
        return ""
    kinds = "; ".join(f"{n} × {message}" if len(counts) > 1 else message for message, n in counts.head(2).items())
    more = f"; {len(counts) - 2} other kind(s)" if len(counts) > 2 else ""
    return f"{int(counts.sum())} of {total} requests failed ({kinds}{more})"


def _level_name(row) -> str:
    if "stream" in row and isinstance(row["stream"], str):
        where = f"stream {row['stream']}"
    elif "rate" in row and not pd.isna(row["rate"]):
        where = f"level {row['rate']:g} req/s"
    else:
        where = f"level c={row['concurrency']:g}"
    inputs = int(row["inputs"]) if "inputs" in row else 1
    return f"{where}, {inputs} input{'s' if inputs != 1 else ''} × {int(row['input_tokens'])} tokens"


def explain_levels(summary: pd.DataFrame, records: pd.DataFrame,
                   levels: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The summary with a ``note`` column - why a level was cut short (``levels``: the run's plan per level, with
    a ``cut`` reason) and what its errors were - and one line per level that has a note."""
    out = summary.copy()
    plan = levels if levels is not None and not levels.empty else None
    keys = [c for c in out.columns if c in ("stream", "concurrency", "rate", "input_tokens", "inputs")]
    rows = [row for _, row in out.iterrows()]
    notes = [_level_note(row, keys, records, plan) for row in rows]
    lines = [f"{_level_name(row)}: {note}" for row, note in zip(rows, notes) if note]
    out["note"] = pd.Series(notes, index=out.index, dtype=object)
    return out, lines


def _same_level(frame: pd.DataFrame, row: pd.Series, keys: list[str]) -> pd.Series:
    """The rows of ``frame`` at ``row``'s level: equal on each key ``frame`` has (missing where it is missing)."""
    mask = pd.Series(True, index=frame.index)
    for key in (k for k in keys if k in frame):
        mask &= frame[key].isna() if pd.isna(row[key]) else frame[key] == row[key]
    return mask


def _level_note(row: pd.Series, keys: list[str], records: pd.DataFrame, plan: pd.DataFrame | None) -> str:
    """Why the level was cut short (from the plan) and what its errors were, '; '-joined ('' for neither)."""
    group = records[_same_level(records, row, keys)]
    cuts = plan.loc[_same_level(plan, row, keys), "cut"] if plan is not None and "cut" in plan else []
    failed = _error_words(group.loc[~group["ok"], "error"], len(group))
    return "; ".join([str(c) for c in cuts if c] + ([failed] if failed else []))


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
    "server_inference_mean_ms": "server inference mean ms", "note": "why cut short / errors",
}
MISSING = "–"  # shown where a kept column has no value in a row
# Fixed decimals per column, whatever the values of a run (whole-number columns are integers): a table reads the
# same from run to run.
DECIMALS = {"rate": 1, "req_per_s": 1, "embeddings_per_s": 1, "tokens_per_s": 0, "tflops": 3, "mfu": 3,
            "p50_ms": 1, "p99_ms": 1, "server_queue_mean_ms": 1, "server_inference_mean_ms": 1}


def _readable(series: pd.Series, decimals: int | None) -> pd.Series:
    """A column at fixed decimals (None: whole numbers), missing values as a dash, text as it is."""
    if series.dtype == object and not pd.api.types.is_numeric_dtype(series.dropna()):
        return series.where(series.notna() & (series.astype(str) != ""), MISSING)
    numbers = pd.to_numeric(series, errors="coerce").astype(float)
    if decimals is None or decimals == 0:
        out = numbers.round(0).astype("Int64")
    else:
        out = numbers.round(decimals)
        if out.isna().any():  # an object column: keep the fixed decimals as text
            return out.map(lambda v: MISSING if pd.isna(v) else f"{v:,.{decimals}f}")
    return out.astype(object).where(out.notna(), MISSING) if out.isna().any() else out


def compact_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A narrow view of a loadgen summary or ``table()`` for reading: only the ``COMPACT_COLUMNS`` that have any
    value, renamed to short wrapping headers, at fixed decimals per column (``DECIMALS``; counts and levels as
    integers) and missing values as a dash."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidSpecError(f"compact_table needs a DataFrame (a loadgen summary or table()), not "
                               f"{type(frame).__name__}", field="frame", value=type(frame).__name__)
    keep = [c for c in COMPACT_COLUMNS if c in frame and frame[c].notna().any() and
            not (frame[c].dtype == object and (frame[c].fillna("").astype(str) == "").all())]
    out = pd.DataFrame({c: _readable(frame[c], DECIMALS.get(c)) if c != "stream" else frame[c] for c in keep},
                       index=frame.index)
    return out.rename(columns=COMPACT_COLUMNS)
