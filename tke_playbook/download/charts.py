"""Bytes per pod as a bar chart: one plan, or several side by side (the tutorial's split against ours)."""

from __future__ import annotations

from .planner import DownloadPlan


def plot_bytes_per_shard(plans, ax=None, *, unit: float = 1e9, unit_name: str = "GB"):
    """Bars of bytes per shard (pod) for a plan or a ``{label: plan}`` dict, with the ideal total/N drawn for the
    first one. Returns a new Figure, or the Axes when one is given."""
    from matplotlib.figure import Figure

    if isinstance(plans, DownloadPlan):
        plans = {plans.strategy: plans}
    if not plans:
        raise ValueError("give at least one DownloadPlan")
    owns = ax is None
    if owns:
        fig = Figure(figsize=(6.5, 3.2), layout="constrained")
        ax = fig.add_subplot()
    count = max(len(p.shards) for p in plans.values())
    width = 0.8 / len(plans)
    for i, (label, plan) in enumerate(plans.items()):
        loads = [b / unit for b in plan.bytes_per_shard]
        xs = [k + (i - (len(plans) - 1) / 2) * width for k in range(len(loads))]
        bars = ax.bar(xs, loads, width, label=f"{label} (max {max(loads, default=0):.1f} {unit_name})")
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    first = next(iter(plans.values()))
    needed = min(p.total_bytes for p in plans.values()) / unit / len(first.shards)
    ax.axhline(needed, color="black", linestyle="--", linewidth=1, label=f"ideal {needed:.1f} {unit_name} per pod")
    ax.set_xticks(range(count), [f"pod {k}" for k in range(count)])
    ax.set_ylabel(f"download ({unit_name})")
    ax.set_title("Bytes each download pod fetches")
    ax.legend(fontsize=8)
    return ax.figure if owns else ax
