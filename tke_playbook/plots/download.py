"""Download plans as a chart: bytes per pod (shard), ours beside the tutorial's split of the same files."""

from __future__ import annotations

from matplotlib.figure import Figure


def plot_bytes_per_pod(plan, ax=None, *, title: str | None = None, tutorial=None):
    """A bar per shard (download pod / local worker) with its bytes; the dashed line is the ideal even share.
    With ``tutorial`` (``pb.tutorial_plan(spec, plan)``: the tutorial's split of the same files, by count) its bars
    stand beside ours, so the slowest pod of each split shows.

    Returns the Figure (or ``ax`` when given). Works for any plan with ``bytes_per_shard`` and ``total_bytes``."""
    sizes = list(plan.bytes_per_shard)
    if not sizes:
        raise ValueError("the plan has no shards")
    theirs = list(tutorial.bytes_per_shard) if tutorial is not None else []
    owns = ax is None
    if owns:
        fig = Figure(figsize=(max(4.5, 1.2 * len(sizes) + 2.5), 3.2), layout="constrained")
        ax = fig.subplots()
    unit, scale = ("GB", 1e9) if max(sizes + theirs) >= 1e9 else ("MB", 1e6)
    width = 0.4 if theirs else 0.8
    offset = width / 2 if theirs else 0.0
    xs = range(len(sizes))
    bars = ax.bar([x - offset for x in xs], [s / scale for s in sizes], width, color="#4c72b0",
                  label="ours (by size)")
    ax.bar_label(bars, labels=[f"{s / scale:.2f}" for s in sizes], fontsize=8)
    if theirs:
        other = ax.bar([x + offset for x in range(len(theirs))], [s / scale for s in theirs], width, color="#dd8452",
                       label="tutorial (by file count)")
        ax.bar_label(other, labels=[f"{s / scale:.2f}" for s in theirs], fontsize=8)
    ax.set_xticks(list(range(max(len(sizes), len(theirs)))),
                  [f"pod {i}" for i in range(max(len(sizes), len(theirs)))])
    ax.axhline(plan.total_bytes / len(sizes) / scale, color="#c44e52", linestyle="--", linewidth=1,
               label="even share")
    ax.set_ylabel(unit)
    if theirs:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or f"Bytes per download pod ({len(sizes)} shards, {plan.total_bytes / scale:.2f} {unit}; "
                          f"dashed: even share)", fontsize=10)
    return ax.figure if owns else ax
