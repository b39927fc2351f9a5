"""The quality-cost frontier of embedding variants (model × dimensions × precision): nDCG@10 with its interval
against bytes per vector and against the cost of a million documents, Pareto points marked."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from ..errors import InvalidSpecError
from ._style import COLORS, done, new_figure

PRECISION_MARKERS = {"float32": "o", "float16": "s", "bfloat16": "D", "fp8_e4m3": "^", "fp8_e5m2": "v",
                     "binary": "P", "ubinary": "X"}
NEEDED = ("model", "dimensions", "precision", "ndcg@10", "ndcg@10 low", "ndcg@10 high", "bytes per vector",
          "pareto", "pareto (bytes)")


def _cost_column(points) -> str | None:
    found = [c for c in points.columns if str(c).startswith("per 1M docs, embedded + stored")]
    return found[0] if found and np.isfinite(points[found[0]].astype(float)).any() else None


def _group(row, many_models: bool) -> str:
    """The colour group of a point: its dimensions (and model, when there are several)."""
    label = f"{row['dimensions']}d" + (" (not Matryoshka-trained: expect loss)" if row.get("not matryoshka") else "")
    return f"{str(row['model']).rsplit('/', 1)[-1]} {label}" if many_models else label


def _panel(ax, points, x: str, pareto: str, colors: dict, many_models: bool) -> None:
    for _, row in points.iterrows():
        color = colors[_group(row, many_models)]
        ax.errorbar(row[x], row["ndcg@10"], yerr=[[row["ndcg@10"] - row["ndcg@10 low"]],
                                                  [row["ndcg@10 high"] - row["ndcg@10"]]],
                    fmt="none", ecolor=color, alpha=0.3, capsize=2, lw=1)
        on = bool(row[pareto])
        ax.scatter(row[x], row["ndcg@10"], marker=PRECISION_MARKERS.get(row["precision"], "o"), color=color,
                   s=95 if on else 45, edgecolor="black" if on else "white", linewidth=1.4 if on else 0.6, zorder=3)
    values = points[x].astype(float)
    if values.min() > 0 and values.max() / values.min() >= 10:
        ax.set_xscale("log", base=2 if x == "bytes per vector" else 10)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    front = points[points[pareto].astype(bool)].sort_values(x)
    if len(front):
        ax.step(front[x], front["ndcg@10"], where="post", color="black", lw=1, ls="--", alpha=0.7, zorder=2)
        _label_front(ax, front, x)
    ax.set_ylabel("nDCG@10 (95% interval over queries)")
    ax.grid(alpha=0.25)


def _label_front(ax, front, x: str) -> None:
    """One label per distinct Pareto position (``64d binary/ubinary``), none that would overlap an earlier one."""
    labels: dict[tuple[float, float], list[str]] = {}
    for _, row in front.iterrows():
        labels.setdefault((float(row[x]), float(row["ndcg@10"])), []).append(f"{row['dimensions']}d {row['precision']}")
    ax.autoscale_view()
    placed: list[np.ndarray] = []
    for (px, py), names in labels.items():
        at = ax.transData.transform((px, py))
        if any(abs(at[0] - p[0]) < 70 and abs(at[1] - p[1]) < 14 for p in placed):
            continue
        placed.append(at)
        text = names[0].split(" ")[0] + " " + "/".join(n.split(" ", 1)[1] for n in names)
        ax.annotate(text, (px, py), xytext=(6, 5), textcoords="offset points", fontsize=7.5)


def _legends(ax, points, colors: dict) -> None:
    shown = [p for p in PRECISION_MARKERS if p in set(points["precision"])]
    markers = [Line2D([], [], marker=PRECISION_MARKERS[p], ls="", color="grey", label=p) for p in shown]
    markers.append(Line2D([], [], marker="o", ls="--", color="black", markerfacecolor="white", label="Pareto"))
    first = ax.legend(handles=markers, title="precision", fontsize=7.5, title_fontsize=8, loc="lower right",
                      frameon=False)
    ax.add_artist(first)
    groups = [Line2D([], [], marker="s", ls="", color=c, label=g) for g, c in colors.items()]
    ax.legend(handles=groups, title="dimensions", fontsize=7.5, title_fontsize=8, loc="upper left", frameon=False)


def plot_frontier(points, *, hardware: str | None = None, assumption: str = "",
                  title: str = "Retrieval quality against vector size and cost"):
    """``points`` (a frontier's ``.points``: one row per model × dimensions × precision): nDCG@10 with its
    interval against bytes per vector (left) and against the cost of a million documents embedded and stored
    (right, when a cost is known); Pareto points drawn large with a black edge and joined by a dashed step.
    ``hardware``: where the embedding throughput was measured; ``assumption``: the storage price it assumes."""
    missing = [c for c in NEEDED if c not in points.columns]
    if missing or not len(points):
        raise InvalidSpecError(f"a frontier plot needs a frontier's points (run_frontier(...).points); missing "
                               f"{missing or 'every row'}", field="points", value=missing)
    cost = _cost_column(points)
    many_models = points["model"].nunique() > 1
    groups = list(dict.fromkeys(_group(row, many_models) for _, row in points.sort_values(
        "bytes per vector", ascending=False).iterrows()))
    colors = {g: COLORS[i % len(COLORS)] for i, g in enumerate(groups)}
    fig = new_figure(13.0 if cost else 7.5, 6.0)
    axes = fig.subplots(1, 2 if cost else 1, sharey=True, squeeze=False)[0]
    _panel(axes[0], points, "bytes per vector", "pareto (bytes)", colors, many_models)
    axes[0].set_xlabel("bytes per vector (log scale)")
    axes[0].set_title("against size: Pareto on bytes per vector", fontsize=10)
    _legends(axes[0], points, colors)
    if cost:
        _cost_panel(axes[1], points, cost, colors, many_models)
    fig.suptitle(_title(title, hardware, assumption), fontsize=11)
    return done(fig, None, True)


def _cost_panel(ax, points, cost: str, colors: dict, many_models: bool) -> None:
    _panel(ax, points, cost, "pareto", colors, many_models)
    currency = next((c for c in points.get("currency", []) if isinstance(c, str) and c), "")
    ax.set_xlabel(f"{currency} {cost}".strip())
    ax.set_title("against cost: Pareto on the cost of a million documents", fontsize=10)


def _title(title: str, hardware: str | None, assumption: str) -> str:
    notes = [f"embedding throughput measured on {hardware}" if hardware else "", assumption]
    subtitle = "\n".join(textwrap.fill(n, 150) for n in notes if n)
    return title + (f"\n{subtitle}" if subtitle else "")
