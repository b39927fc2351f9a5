"""Download plans as a chart: bytes per pod (shard), ours beside the tutorial's split of the same files."""

from __future__ import annotations

from matplotlib.figure import Figure

from ..podworker.planner import MIN_SHARD_BYTES

MAX_LABELLED = 16  # above this many pods a bar's number would overlap its neighbours': the bars speak alone
MAX_WIDTH_IN = 11.0  # the notebook's width: more pods make thinner bars, never a figure wider than the page


def plot_bytes_per_pod(plan, ax=None, *, title: str | None = None, tutorial=None):
    """A bar per shard (download pod / local worker) with its bytes; the dashed line is the ideal even share.
    With ``tutorial`` (``pb.tutorial_plan(spec, plan)``: the tutorial's split of the same files, by count) its bars
    stand beside ours, so the slowest pod of each split shows.

    Returns the Figure (or ``ax`` when given). Works for any plan with ``bytes_per_shard`` and ``total_bytes``."""
    sizes = list(plan.bytes_per_shard)
    if not sizes:
        raise ValueError("the plan has no shards")
    theirs = list(tutorial.bytes_per_shard) if tutorial is not None else []
    pods = max(len(sizes), len(theirs))
    owns = ax is None
    if owns:
        fig = Figure(figsize=(min(MAX_WIDTH_IN, max(4.5, 1.2 * pods + 2.5)), 3.4), layout="constrained")
        ax = fig.subplots()
    unit, scale = ("GB", 1e9) if max(sizes + theirs) >= 1e9 else ("MB", 1e6)
    width = 0.4 if theirs else 0.8
    offset = width / 2 if theirs else 0.0
    _bars(ax, sizes, -offset, width, scale, "#4c72b0", f"ours (by size): {len(sizes)} pods", pods)
    if theirs:
        _bars(ax, theirs, offset, width, scale, "#dd8452", f"tutorial (by file count): {len(theirs)} pods", pods)
    _pod_ticks(ax, pods)
    ax.axhline(plan.total_bytes / len(sizes) / scale, color="#c44e52", linestyle="--", linewidth=1,
               label="even share (ours)")
    ax.set_ylabel(unit)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or _title(sizes, theirs, plan.total_bytes / scale, unit), fontsize=10)
    return ax.figure if owns else ax


def _bars(ax, sizes: list, offset: float, width: float, scale: float, color: str, label: str, pods: int) -> None:
    """One split's bars, each with its size written on it while the pods are few enough to read."""
    bars = ax.bar([x + offset for x in range(len(sizes))], [s / scale for s in sizes], width, color=color,
                  label=label)
    if pods <= MAX_LABELLED:
        ax.bar_label(bars, labels=[f"{s / scale:.2f}" for s in sizes], fontsize=8)


def _pod_ticks(ax, pods: int) -> None:
    """Every pod's tick up to 16 pods ("pod 3"), then every 2nd, 4th, ... (just the index, under an axis label)."""
    step = max(1, -(-pods // MAX_LABELLED))
    few = pods <= MAX_LABELLED
    ax.set_xticks(list(range(0, pods, step)), [f"pod {i}" if few else str(i) for i in range(0, pods, step)])
    if not few:
        ax.set_xlabel("download pod (index)")


def _title(sizes: list, theirs: list, total: float, unit: str) -> str:
    head = f"Bytes per download pod ({total:.2f} {unit} in all)"
    if theirs and len(sizes) < len(theirs):  # the planner stopped short of the pods asked for: say why
        return (f"{head}\nours: {len(sizes)} pods, not {len(theirs)} - a pod gets one file or at least "
                f"{MIN_SHARD_BYTES // 2**20} MiB, so more would idle")
    return f"{head}: {len(sizes)} pods"
