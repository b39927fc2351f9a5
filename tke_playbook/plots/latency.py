"""Load-test plots from ``loadgen`` records (one row per request) and summaries (one row per load level)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InvalidSpecError
from ._style import COLORS, done, figure_and_axes

PERCENTILES = ((50, "#2ca02c"), (90, "#ff7f0e"), (99, "#d62728"))


def _require(frame, columns: set[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise InvalidSpecError(f"{what} must be a pandas DataFrame from tke_playbook.loadgen", field=what,
                               value=type(frame).__name__)
    missing = columns - set(frame.columns)
    if missing:
        raise InvalidSpecError(f"{what} lack column(s) {sorted(missing)}: pass the DataFrame loadgen returns",
                               field=what, value=sorted(missing))


def _ok_latencies_ms(records) -> pd.DataFrame:
    _require(records, {"latency_s", "ok"}, "records")
    ok = records[records["ok"].astype(bool)].copy()
    ok["latency_ms"] = ok["latency_s"].astype(float) * 1000.0
    return ok


def _empty(ax, message: str = "no successful requests") -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="grey")


def plot_latency_histogram(records, ax=None, *, bins: int = 40, title: str = "Request latency"):
    """Histogram of successful requests' latency (ms) with p50, p90 and p99 marked; errors counted in the title."""
    ok = _ok_latencies_ms(records)
    fig, ax, owns = figure_and_axes(ax, 8.0, 4.5)
    errors = len(records) - len(ok)
    if len(ok):
        values = ok["latency_ms"].to_numpy()
        ax.hist(values, bins=bins, color="#3b6fb6", alpha=0.8)
        for pct, color in PERCENTILES:
            value = float(np.percentile(values, pct))
            ax.axvline(value, color=color, linestyle="--", linewidth=1.4, label=f"p{pct} = {value:.1f} ms")
        ax.legend(fontsize=8, frameon=False)
    else:
        _empty(ax)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title(f"{title} ({len(ok)} ok" + (f", {errors} failed)" if errors else ")"))
    return done(fig, ax, owns)


def _group_column(records, by: str | None) -> str | None:
    if by == "auto":
        for column in ("concurrency", "rate"):
            if column in records.columns and records[column].notna().any():
                return column
        return None
    if by is not None and by not in records.columns:
        raise InvalidSpecError(f"records have no column {by!r} to group by: use 'concurrency', 'rate', 'auto' or "
                               "None", field="by", value=by)
    return by


def plot_latency_cdf(records, by: str | None = "auto", ax=None, *, log_x: bool = False,
                     title: str = "Latency CDF"):
    """Empirical CDF of successful requests' latency, one line per ``by`` value (``auto``: concurrency, else
    rate, else all requests together)."""
    ok = _ok_latencies_ms(records)
    column = _group_column(records, by)
    fig, ax, owns = figure_and_axes(ax, 8.0, 4.5)
    groups = [(None, ok)] if column is None else [(k, g) for k, g in ok.groupby(column, sort=True)]
    for index, (key, group) in enumerate(groups):
        values = np.sort(group["latency_ms"].to_numpy())
        if not len(values):
            continue
        fraction = np.arange(1, len(values) + 1) / len(values)
        label = "all requests" if key is None else f"{column} = {key:g}"
        ax.step(values, fraction, where="post", color=COLORS[index % len(COLORS)], label=label)
    if not len(ok):
        _empty(ax)
    else:
        ax.axhline(0.99, color="grey", linestyle=":", linewidth=1)
        ax.text(ax.get_xlim()[0], 0.99, " p99", va="bottom", fontsize=7, color="grey")
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    if log_x and len(ok):
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title)
    ax.grid(alpha=0.25)
    return done(fig, ax, owns)


def plot_throughput_vs_concurrency(summary, ax=None, *, title: str | None = None):
    """Requests per second (left axis) and p99 latency (right axis) against concurrency - or against the offered
    rate for open-loop summaries. Levels with errors are marked with their error rate."""
    _require(summary, {"req_per_s", "p99_ms"}, "summary")
    x_column = next((c for c in ("concurrency", "rate") if c in summary.columns and summary[c].notna().any()), None)
    if x_column is None:
        raise InvalidSpecError("summary has neither a 'concurrency' nor a 'rate' column with values: pass "
                               "loadgen's summary", field="summary", value=list(summary.columns))
    data = summary.dropna(subset=[x_column]).sort_values(x_column)
    fig, ax, owns = figure_and_axes(ax, 8.0, 4.5)
    x = data[x_column].to_numpy(dtype=float)
    ax.plot(x, data["req_per_s"], marker="o", color="#3b6fb6", label="throughput (req/s)")
    ax.set_xlabel("concurrent requests" if x_column == "concurrency" else "offered rate (req/s)")
    ax.set_ylabel("throughput (req/s)", color="#3b6fb6")
    top = float(np.nanmax(data["req_per_s"].to_numpy(dtype=float))) if len(data) else 0.0
    ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)  # headroom for the error-rate notes
    right = ax.twinx()
    right.plot(x, data["p99_ms"], marker="s", color="#d62728", label="p99 latency (ms)")
    if "p50_ms" in data.columns:
        right.plot(x, data["p50_ms"], marker=".", linestyle="--", color="#d62728", alpha=0.5,
                   label="p50 latency (ms)")
    right.set_ylabel("latency (ms)", color="#d62728")
    right.set_ylim(bottom=0)
    if "error_rate" in data.columns:
        for xi, yi, rate in zip(x, data["req_per_s"], data["error_rate"]):
            if rate and rate > 0:
                ax.annotate(f"{rate:.0%} errors", (xi, yi), xytext=(0, 8), textcoords="offset points",
                            ha="center", fontsize=7, color="#d62728", gid="error-rate")
    if x_column == "concurrency" and len(x) > 1 and x.max() / max(x.min(), 1) >= 8:
        ax.set_xscale("log", base=2)
    if x_column == "concurrency":  # ticks at the measured levels only (no "2.5 requests in flight")
        ax.set_xticks(x, [f"{v:g}" for v in x])
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, frameon=False, loc="upper left")
    ax.set_title(title or ("Throughput and tail latency against " +
                           ("concurrency" if x_column == "concurrency" else "offered rate")))
    ax.grid(alpha=0.25)
    return done(fig, ax, owns)


def plot_latency_vs_input_length(records, ax=None, *, title: str = "Latency against input length"):
    """Each successful request's latency against its input length (requested ``input_tokens``, else
    ``prompt_tokens``), with the median per length."""
    ok = _ok_latencies_ms(records)
    column = next((c for c in ("input_tokens", "prompt_tokens") if c in ok.columns and ok[c].notna().any()), None)
    fig, ax, owns = figure_and_axes(ax, 8.0, 4.5)
    if column is None:
        _empty(ax, "no successful requests with a known input length")
    else:
        data = ok.dropna(subset=[column])
        lengths = data[column].to_numpy(dtype=float)
        ax.scatter(lengths, data["latency_ms"], s=12, alpha=0.35, color="#3b6fb6", label="request")
        if data[column].nunique() <= 30:
            medians = data.groupby(column)["latency_ms"].median()
        else:
            bins = pd.cut(data[column], 12)
            medians = data.groupby(bins, observed=True)["latency_ms"].median()
            medians.index = [interval.mid for interval in medians.index]
        ax.plot(medians.index.to_numpy(dtype=float), medians.to_numpy(), marker="o", color="#d62728",
                label="median")
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.25)
    return done(fig, ax, owns)
