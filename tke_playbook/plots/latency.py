"""Load-test plots from ``loadgen`` records (one row per request) and summaries (one row per load level), and the
capacity views: sweeps per input length, tokens/s against inputs per request, a mixed workload's two latency
distributions, the latency knee of an open-loop sweep and the capacity plan as a table. Legends sit outside the
plotting area so they never cover a line. The capacity views take ``hardware`` (a ``ServedOn`` or a sentence)
and say in a footer what the numbers were measured on."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from ..errors import InvalidSpecError
from ._style import COLORS, done, figure_and_axes, finish, new_figure

PERCENTILES = ((50, "#2ca02c"), (90, "#ff7f0e"), (99, "#d62728"))
MARK_STYLES = ("-", "--", ":")  # p50, p90, p99 on a per-level histogram: dark lines, whatever the level's colour


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


def _histogram_groups(records: pd.DataFrame, summary) -> list[str]:
    """The columns that split records into the summary's rows: the level (concurrency, else rate), and the input
    length, stream or inputs per request where the summary has several rows per level."""
    level = _group_column(records, "auto")
    if level is None:
        return []
    keys = [level]
    if summary is not None:
        _require(summary, {level, "p50_ms", "p90_ms", "p99_ms"}, "summary")
        keys += [c for c in ("input_tokens", "stream", "inputs") if c in summary.columns and c in records.columns
                 and len(summary) and summary.groupby(level)[c].nunique().max() > 1]
    return keys


def _marks(values: np.ndarray, key: tuple, keys: list[str], summary) -> list[tuple[int, float]]:
    """``(percentile, ms)`` for p50/p90/p99: the summary's row for ``key`` (the table the notebook shows), else
    computed as loadgen's summary computes them (``numpy.percentile``, linear)."""
    if summary is None:
        return [(pct, float(np.percentile(values, pct))) for pct, _ in PERCENTILES]
    rows = summary
    for column, value in zip(keys, key):
        rows = rows[rows[column] == value]
    if len(rows) != 1:
        where = ", ".join(f"{c} = {v:g}" if isinstance(v, (int, float)) else f"{c} = {v}" for c, v in zip(keys, key))
        raise InvalidSpecError(f"the summary has {len(rows)} rows for {where}: pass the summary of these records "
                               "(load.summary)", field="summary", value=where)
    return [(pct, float(rows.iloc[0][f"p{pct}_ms"])) for pct, _ in PERCENTILES]


def _level_label(keys: list[str], key: tuple) -> str:
    names = {"concurrency": "{:g} in flight", "rate": "{:g} req/s offered", "input_tokens": "{:g} input tokens",
             "inputs": "{:g} inputs per request", "stream": "{} stream"}
    return ", ".join(names[c].format(v) for c, v in zip(keys, key)) if keys else "all requests"


def _histogram_panel(ax, records: pd.DataFrame, key: tuple, keys: list[str], summary, edges, color) -> None:
    ok = records[records["ok"].astype(bool)]
    values = ok["latency_s"].to_numpy(dtype=float) * 1000.0
    errors = len(records) - len(ok)
    if len(values):
        ax.hist(values, bins=edges, color=color, alpha=0.85)
        for (pct, value), style in zip(_marks(values, key, keys, summary), MARK_STYLES):
            ax.axvline(value, color="#222222", linestyle=style, linewidth=1.5, label=f"p{pct} = {value:.1f} ms")
        _outside_legend(ax)  # beside the axes: never over the p50/p90/p99 lines
    else:
        _empty(ax)
    ax.set_ylabel("requests")
    ax.set_title(f"{_level_label(keys, key)} ({len(values)} ok" + (f", {errors} failed)" if errors else ")"),
                 fontsize=10, loc="left")


def plot_latency_histogram(records, ax=None, *, summary=None, bins: int = 30, title: str = "Request latency",
                           hardware: str | None = None):
    """One histogram of successful requests' latency (ms) per load level (concurrency, else rate), stacked on one
    shared latency axis, each with its own p50, p90 and p99 marked; failed requests counted per level.

    ``summary`` (loadgen's, e.g. ``load.summary``): the marks are its ``p50_ms``/``p90_ms``/``p99_ms`` - the very
    numbers of the table beside the plot (without it they are computed the same way). ``hardware`` (what served
    the requests, e.g. ``playbook.measured_on(pb)``) goes under the title. ``ax`` works for records of one level."""
    _require(records, {"latency_s", "ok"}, "records")
    keys = _histogram_groups(records, summary)
    groups = [((), records)] if not keys else [
        (k if isinstance(k, tuple) else (k,), g) for k, g in records.groupby(keys if len(keys) > 1 else keys[0],
                                                                            sort=True)]
    if ax is not None and len(groups) > 1:
        raise InvalidSpecError(f"{len(groups)} load levels need one panel each: leave ax empty, or pass the records "
                               "of one level", field="ax", value=len(groups))
    ok_ms = records.loc[records["ok"].astype(bool), "latency_s"].to_numpy(dtype=float) * 1000.0
    low, high = (float(ok_ms.min()), float(ok_ms.max())) if len(ok_ms) else (0.0, 1.0)
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)  # one bin width for every level
    if ax is None:
        fig = new_figure(8.5, 0.8 + 2.1 * len(groups))
        axes = list(np.atleast_1d(fig.subplots(len(groups), 1, sharex=True, squeeze=False)).ravel())
        owns = True
    else:
        fig, axes, owns = ax.figure, [ax], False
    for index, ((key, group), panel) in enumerate(zip(groups, axes)):
        _histogram_panel(panel, group, key, keys, summary, edges, COLORS[index % len(COLORS)])
    axes[-1].set_xlabel("latency (ms)")
    heading = title + (f"\nmeasured on {hardware}" if hardware else "")
    if owns:
        fig.suptitle(heading, fontsize=11)
    elif hardware:
        ax.set_title(heading, fontsize=9, loc="right")
    return done(fig, axes[0], owns)


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
        _outside_legend(ax)
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
    x_column = _x_column(summary)
    closed = x_column == "concurrency"
    data = summary.dropna(subset=[x_column]).sort_values(x_column)
    fig, ax, owns = figure_and_axes(ax, 8.0, 4.5)
    x = data[x_column].to_numpy(dtype=float)
    ax.plot(x, data["req_per_s"], marker="o", color="#3b6fb6", label="throughput (req/s)")
    ax.set_xlabel("concurrent requests" if closed else "offered rate (req/s)")
    ax.set_ylabel("throughput (req/s)", color="#3b6fb6")
    top = float(np.nanmax(data["req_per_s"].to_numpy(dtype=float))) if len(data) else 0.0
    ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)  # headroom for the error-rate notes
    right = _latency_axis(ax, x, data)
    _error_notes(ax, x, data)
    if closed:
        _concurrency_axis(ax, x)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    _below_legend(ax, handles)  # both y axes are taken: below the plot, never over the lines
    ax.set_title(title or ("Throughput and tail latency against " + ("concurrency" if closed else "offered rate")))
    ax.grid(alpha=0.25)
    return done(fig, ax, owns)


def _x_column(summary: pd.DataFrame) -> str:
    """'concurrency' (closed loop) or 'rate' (open loop): the first of them with values."""
    x_column = next((c for c in ("concurrency", "rate") if c in summary.columns and summary[c].notna().any()), None)
    if x_column is None:
        raise InvalidSpecError("summary has neither a 'concurrency' nor a 'rate' column with values: pass "
                               "loadgen's summary", field="summary", value=list(summary.columns))
    return x_column


def _latency_axis(ax, x, data: pd.DataFrame):
    """p99 (and p50, when measured) latency on a twin axis at the right; returns that axis."""
    right = ax.twinx()
    right.plot(x, data["p99_ms"], marker="s", color="#d62728", label="p99 latency (ms)")
    if "p50_ms" in data.columns:
        right.plot(x, data["p50_ms"], marker=".", linestyle="--", color="#d62728", alpha=0.5,
                   label="p50 latency (ms)")
    right.set_ylabel("latency (ms)", color="#d62728")
    right.set_ylim(bottom=0)
    return right


def _error_notes(ax, x, data: pd.DataFrame) -> None:
    """'12% errors' above each level that had any."""
    for xi, yi, rate in zip(x, data["req_per_s"], data["error_rate"] if "error_rate" in data.columns else ()):
        if rate and rate > 0:
            ax.annotate(f"{rate:.0%} errors", (xi, yi), xytext=(0, 8), textcoords="offset points",
                        ha="center", fontsize=7, color="#d62728", gid="error-rate")


def _concurrency_axis(ax, x) -> None:
    """Powers of two on a log axis when the levels span 8x or more; ticks at the measured levels only (no "2.5
    requests in flight")."""
    if len(x) > 1 and x.max() / max(x.min(), 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(x, [f"{v:g}" for v in x])


def _series_label(tokens, inputs) -> str:
    return f"{int(tokens)} tokens" + (f" x {int(inputs)} inputs" if inputs is not None and inputs != 1 else "")


def _series(summary: pd.DataFrame):
    keys = ["input_tokens"] + (["inputs"] if "inputs" in summary.columns else [])
    for index, (key, group) in enumerate(summary.groupby(keys, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        yield index, _series_label(key[0], key[1] if len(key) > 1 else None), group.sort_values("concurrency")


def _outside_legend(ax, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, **kwargs)


def _below_legend(ax, handles=None) -> None:
    """A legend under the axes (below the x label), in columns: for twin axes and side-by-side panels."""
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles, [h.get_label() for h in handles], fontsize=8, frameon=False, loc="upper center",
                  bbox_to_anchor=(0.5, -0.2), ncol=min(3, len(handles)), borderaxespad=0.0)


def _measured_on(fig, hardware) -> None:
    """A footer saying what served the measured requests (``hardware``: a ServedOn or any text; None: nothing)."""
    if hardware is not None and str(hardware).strip():
        text = str(hardware)
        label = fig.supxlabel(text if text.startswith("measured on") else f"measured on: {text}", fontsize=8,
                              color="#555555", x=0.01, ha="left")  # a figure-level label: the layout keeps room
        label.set_gid("measured-on")


def _log_latency_axis(ax, values) -> None:
    """Latency on a log scale (ms), so 20 ms and 20 s levels both read; ticks as plain numbers."""
    from matplotlib.ticker import FuncFormatter

    finite = np.asarray([v for v in np.asarray(values, dtype=float) if np.isfinite(v) and v > 0])
    ax.set_yscale("log")
    if finite.size:
        ax.set_ylim(finite.min() / 1.6, finite.max() * 1.6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))


def _concurrency_axis(ax, values) -> None:
    values = np.unique(np.asarray(values, dtype=float))
    if len(values) > 1 and values.max() / max(values.min(), 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()


def plot_sweep(summary, *, throughput: str = "embeddings_per_s", title: str | None = None, hardware=None):
    """Two panels against concurrency, one line per input length (x inputs per request): throughput (left;
    ``embeddings_per_s``, ``tokens_per_s`` or ``req_per_s``; a level that answered nothing has no point) and p99
    latency (right, log scale: short and long inputs differ by orders of magnitude). ``hardware`` says in a footer
    what served."""
    _require(summary, {"concurrency", "input_tokens", throughput, "p99_ms"}, "summary")
    fig = new_figure(12.0, 4.8)
    left, right = fig.subplots(1, 2)
    data = summary.dropna(subset=["concurrency"])
    for index, label, group in _series(data):
        color = COLORS[index % len(COLORS)]
        x = group["concurrency"].to_numpy(dtype=float)
        answered = group[throughput].astype(float).where(group[throughput].astype(float) > 0)  # none: no point
        left.plot(x, answered, marker="o", color=color, label=label)
        right.plot(x, group["p99_ms"], marker="s", color=color, label=label)
    units = {"embeddings_per_s": "embeddings/s", "tokens_per_s": "tokens/s", "req_per_s": "requests/s"}
    left.set_ylabel(units.get(throughput, throughput))
    right.set_ylabel("p99 latency (ms, log scale)")
    for ax, what in ((left, "throughput"), (right, "p99 latency")):
        _concurrency_axis(ax, summary["concurrency"].dropna())
        ax.set_xlabel("concurrent requests")
        ax.set_title(what)
        ax.grid(alpha=0.25)
    left.set_ylim(bottom=0)
    _log_latency_axis(right, data["p99_ms"])
    _outside_legend(right, title="input length")
    fig.suptitle(title or "Closed-loop sweep: throughput and tail latency per input length")
    _measured_on(fig, hardware)
    return finish(fig)


def plot_tokens_vs_batch(summary, ax=None, *, title: str = "Tokens/s against inputs per request", hardware=None):
    """Tokens/s against the number of inputs per request, one line per input length (the best concurrency of each
    batch size); ``hardware`` in a footer."""
    _require(summary, {"inputs", "input_tokens", "tokens_per_s"}, "summary")
    fig, ax, owns = figure_and_axes(ax, 9.0, 4.5)
    best = summary.loc[summary.groupby(["input_tokens", "inputs"])["tokens_per_s"].idxmax()]
    for index, (tokens, group) in enumerate(best.groupby("input_tokens", sort=True)):
        group = group.sort_values("inputs")
        ax.plot(group["inputs"].to_numpy(dtype=float), group["tokens_per_s"], marker="o",
                color=COLORS[index % len(COLORS)], label=f"{int(tokens)} tokens")
    _concurrency_axis(ax, summary["inputs"])
    ax.set_xlabel("inputs per request (batch size)")
    ax.set_ylabel("tokens/s (from usage)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.25)
    _outside_legend(ax, title="input length")
    if owns:
        _measured_on(fig, hardware)
    return done(fig, ax, owns)


STRIP_BELOW = 30  # a stream with fewer successful requests is drawn as points, not a histogram


def _latency_points(ax, values, color) -> None:
    """Each request as a point (jittered sideways): a handful of requests reads as what it is."""
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(values))
    ax.scatter(values, jitter, s=28, color=color, alpha=0.8, edgecolors="white", linewidths=0.5, zorder=3)
    ax.set_ylim(-1, 1)
    ax.set_yticks([])
    ax.set_ylabel(f"{len(values)} requests (one point each)")


def plot_mixed_latency(records, targets=None, *, title: str = "Mixed workload: latency per stream", hardware=None):
    """One panel per stream (their scales differ): the latency distribution with p50/p99 and the stream's target -
    a histogram, or one point per request when a stream has fewer than ``STRIP_BELOW`` of them."""
    _require(records, {"stream", "latency_s", "ok"}, "records")
    ok = _ok_latencies_ms(records)
    names = list(dict.fromkeys(records["stream"]))
    fig = new_figure(6.0 * max(1, len(names)), 4.2)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(names))))
    wanted = {} if targets is None else dict(zip(targets["stream"], targets["target_ms"]))
    for index, (ax, name) in enumerate(zip(axes, names)):
        values = ok.loc[ok["stream"] == name, "latency_ms"].to_numpy()
        color = COLORS[index % len(COLORS)]
        if len(values) >= STRIP_BELOW:
            ax.hist(values, bins=30, color=color, alpha=0.75)
            ax.set_ylabel("requests")
        elif len(values):
            _latency_points(ax, values, color)
        else:
            _empty(ax)
        if len(values):
            for pct, line_color in (PERCENTILES[0], PERCENTILES[2]):
                value = float(np.percentile(values, pct))
                ax.axvline(value, color=line_color, linestyle="--", linewidth=1.3, label=f"p{pct} = {value:,.0f} ms")
        target = wanted.get(name)
        if target is not None and not (isinstance(target, float) and np.isnan(target)):
            ax.axvline(target, color="black", linewidth=1.6, label=f"target {target:,.0f} ms")
        ax.set_title(f"{name} ({len(values)} ok)")
        ax.set_xlabel("latency (ms)")
        _below_legend(ax)
    fig.suptitle(title)
    _measured_on(fig, hardware)
    return finish(fig)


def plot_latency_knee(summary, target_ms: float | None = None, sustainable_rps: float | None = None, ax=None, *,
                      title: str = "Open loop: p99 latency against offered rate (log scale)", hardware=None):
    """p99 (and p50) against the offered rate on a log latency scale, with the target and the sustainable rate
    marked: past capacity the queue grows for as long as the level lasts, so latency jumps by orders of magnitude
    instead of rising gently."""
    _require(summary, {"rate", "p99_ms"}, "summary")
    data = summary.dropna(subset=["rate"]).sort_values("rate")
    fig, ax, owns = figure_and_axes(ax, 9.0, 4.5)
    x = data["rate"].to_numpy(dtype=float)
    ax.plot(x, data["p99_ms"], marker="s", color="#d62728", label="p99")
    if "p50_ms" in data.columns:
        ax.plot(x, data["p50_ms"], marker=".", linestyle="--", color="#2ca02c", label="p50")
    if target_ms:
        ax.axhline(target_ms, color="black", linewidth=1.2, linestyle=":", label=f"target {target_ms:,.0f} ms")
    if sustainable_rps:
        ax.axvline(sustainable_rps, color="#3b6fb6", linewidth=1.2, label=f"sustainable {sustainable_rps:,.1f} req/s")
    shown = [*data["p99_ms"], *(data["p50_ms"] if "p50_ms" in data.columns else []), *([target_ms] if target_ms else [])]
    _log_latency_axis(ax, shown)
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(title)
    ax.grid(alpha=0.25, which="both")
    _outside_legend(ax)
    if owns:
        _measured_on(fig, hardware)
    return done(fig, ax, owns)


def plot_capacity_table(plan, *, title: str = "Capacity plan", wrap: int = 100, hardware=None):
    """The capacity plan (``CapacityPlan`` or its ``table()``) drawn as a two-column table, long values wrapped;
    ``hardware`` (default: the plan's own ``served_on``) in a footer."""
    frame = plan.table() if hasattr(plan, "table") else plan
    _require(frame, {"item", "value"}, "plan table")
    values = [textwrap.wrap(str(v), wrap) or [""] for v in frame["value"]]
    lines = sum(len(v) for v in values)
    fig = new_figure(11.0, 0.6 + 0.26 * lines)
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(cellText=[[str(item), "\n".join(value)] for item, value in zip(frame["item"], values)],
                     colWidths=[0.14, 0.86], cellLoc="left", bbox=[0.0, 0.0, 1.0, 1.0])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("#dddddd")
        cell.PAD = 0.02 if col == 0 else 0.005  # matplotlib pads by a share of the cell's width
        cell.set_height(len(values[row]) / lines)
        cell.get_text().set_verticalalignment("center")
        if col == 0:
            cell.get_text().set_fontweight("bold")
    ax.set_title(title)
    _measured_on(fig, hardware if hardware is not None else getattr(plan, "served_on", None))
    return finish(fig)
