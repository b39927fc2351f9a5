"""Summaries of load records, and the warning shown when a server comes close to the generator's own ceiling.

Per level (concurrency or rate) and input length: ``requests`` counts every request, ``errors`` those that did
not answer 200 (status 0 for timeouts and dropped connections). Throughput counts successful requests over the
level's wall time (first start to last finish); latencies are those of successful requests.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

RECORD_COLUMNS = ("start_s", "latency_s", "status", "ok", "prompt_tokens", "input_tokens", "concurrency", "rate",
                  "error")
SUMMARY_COLUMNS = ("requests", "errors", "error_rate", "req_per_s", "tokens_per_s", "latency_mean_ms", "p50_ms",
                   "p90_ms", "p99_ms")


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

    def pct(q: float) -> float:
        return float(np.percentile(latencies, q)) if latencies.size else math.nan

    return {
        "requests": int(len(group)),
        "errors": int((~group["ok"]).sum()),
        "error_rate": float((~group["ok"]).mean()) if len(group) else math.nan,
        "req_per_s": len(ok) / wall if wall > 0 else math.nan,
        "tokens_per_s": float(ok["prompt_tokens"].sum()) / wall if wall > 0 else math.nan,
        "latency_mean_ms": float(latencies.mean()) if latencies.size else math.nan,
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
    }


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    """One row per level and input length: ``concurrency`` or ``rate``, ``input_tokens``, then SUMMARY_COLUMNS."""
    missing = [c for c in RECORD_COLUMNS if c not in records]
    if missing:
        raise ValueError(f"load records lack columns {missing}: pass the records of a loadgen run")
    key = _level_key(records)
    if records.empty:
        return pd.DataFrame(columns=[key, "input_tokens", *SUMMARY_COLUMNS])
    rows = [{key: level, "input_tokens": tokens, **_summary_row(group)}
            for (level, tokens), group in records.groupby([key, "input_tokens"], sort=True, dropna=False)]
    return pd.DataFrame(rows, columns=[key, "input_tokens", *SUMMARY_COLUMNS])


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
