"""The one chart the download notebook needs that is about plans rather than embeddings: bytes per pod."""

from __future__ import annotations

from matplotlib.figure import Figure


def plot_bytes_per_pod(plan, ax=None, *, title: str | None = None):
    """A bar per shard (download pod / local worker) with its bytes; the dashed line is the ideal even share.

    Returns the Figure (or ``ax`` when given). Works for any plan with ``bytes_per_shard`` and ``total_bytes``."""
    sizes = list(plan.bytes_per_shard)
    if not sizes:
        raise ValueError("the plan has no shards")
    owns = ax is None
    if owns:
        fig = Figure(figsize=(max(4.0, 0.9 * len(sizes) + 2), 3.0), layout="constrained")
        ax = fig.subplots()
    unit, scale = ("GB", 1e9) if max(sizes) >= 1e9 else ("MB", 1e6)
    bars = ax.bar([f"pod {i}" for i in range(len(sizes))], [s / scale for s in sizes], color="#4c72b0")
    ax.bar_label(bars, labels=[f"{s / scale:.2f}" for s in sizes], fontsize=8)
    ax.axhline(plan.total_bytes / len(sizes) / scale, color="#c44e52", linestyle="--", linewidth=1)
    ax.set_ylabel(unit)
    ax.set_title(title or f"Bytes per download pod ({len(sizes)} shards, {plan.total_bytes / scale:.2f} {unit}; "
                          f"dashed: even share)", fontsize=10)
    return ax.figure if owns else ax
