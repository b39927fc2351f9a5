"""One panel comparing two embedders: retrieval quality, quality by language slice, score distributions,
query latency, dimension and memory. Takes a :class:`tke_playbook.evaluate.compare.Comparison`."""

from __future__ import annotations

import numpy as np

from ..evaluate.similarity import pca_2d
from ..reporting import estimate_text
from ._style import COLORS, MODEL_COLORS, done, figure_and_axes, new_figure
from .analysis import plot_pca
from .heatmaps import plot_heatmaps_side_by_side


def _bar_labels(ax, bars, fmt: str) -> None:
    for bar in bars:
        height = bar.get_height()
        if np.isfinite(height):
            ax.annotate(fmt.format(height), (bar.get_x() + bar.get_width() / 2, height), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)


def _grouped_bars(ax, groups: list[str], values: list[list[float]], names, fmt: str = "{:.2f}") -> None:
    x = np.arange(len(groups))
    width = 0.38
    for index, (name, row) in enumerate(zip(names, values)):
        bars = ax.bar(x + (index - 0.5) * width, row, width, label=name, color=MODEL_COLORS[index])
        _bar_labels(ax, bars, fmt)
    ax.set_xticks(x, groups, fontsize=8)


def _quality(ax, comparison, k: int) -> None:
    keys = [c for c in comparison.a.slices.columns if c.startswith(("ndcg@", "recall@")) or c == "mrr"]
    chosen = [c for c in (f"ndcg@{k}", f"recall@{k}", "ndcg@1", "mrr") if c in keys]
    values = [[float(r.slices.loc["all", c]) for c in chosen] for r in (comparison.a, comparison.b)]
    _grouped_bars(ax, chosen, values, comparison.names)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    ax.set_title("Retrieval quality (all queries)")
    ax.legend(fontsize=8, frameon=False, loc="upper right")


def _slices(ax, comparison, k: int) -> None:
    metric = f"ndcg@{k}" if f"ndcg@{k}" in comparison.a.slices.columns else "mrr"
    slices = [s for s in ("all", "same-language", "cross-lingual") if s in comparison.a.slices.index]
    values = [[float(r.slices.loc[s, metric]) for s in slices] for r in (comparison.a, comparison.b)]
    _grouped_bars(ax, slices, values, comparison.names)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by language of the relevant document")


def _distributions(ax, comparison) -> None:
    data, positions, colors, ticks = [], [], [], []
    for index, result in enumerate((comparison.a, comparison.b)):
        dist = result.distributions
        for offset, (label, mask) in enumerate((("relevant", dist["relevant"]), ("irrelevant", ~dist["relevant"]))):
            data.append(dist.loc[mask, "score"].to_numpy(dtype=float))
            positions.append(index * 2.6 + offset)
            colors.append(MODEL_COLORS[index])
            ticks.append(label)
    box = ax.boxplot(data, positions=positions, widths=0.7, patch_artist=True, showfliers=False,
                     medianprops={"color": "black"})
    for patch, color, tick in zip(box["boxes"], colors, ticks):
        patch.set_facecolor(color)
        patch.set_alpha(0.85 if tick == "relevant" else 0.35)
    ax.set_xticks(positions, ticks, fontsize=8)
    for index, result in enumerate((comparison.a, comparison.b)):
        auc = result.separation.get("auc", float("nan"))
        ax.text(index * 2.6 + 0.5, 1.02, f"{result.name}\nAUC {auc:.2f}", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", fontsize=7, color=MODEL_COLORS[index])
    ax.set_ylabel("cosine similarity")
    ax.set_title("Scores: relevant vs irrelevant pairs", pad=26)


def _latency(ax, comparison) -> None:
    samples = []
    for result in (comparison.a, comparison.b):
        q = result.timings.loc[result.timings["call"] == "query", "seconds"].to_numpy(dtype=float) * 1000
        samples.append(q if len(q) else np.array([np.nan]))
    box = ax.boxplot(samples, patch_artist=True, widths=0.5, showfliers=True, medianprops={"color": "black"})
    for patch, color in zip(box["boxes"], MODEL_COLORS):
        patch.set_facecolor(color)
        patch.set_alpha(0.7)
    ax.set_xticks([1, 2], list(comparison.names), fontsize=8)
    finite = np.concatenate([s[np.isfinite(s)] for s in samples])
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 50:
        ax.set_yscale("log")
    ax.set_ylabel("ms per query (one text per call)")
    ax.set_title("Query latency")


def _single_bars(ax, comparison, values, fmt: str, ylabel: str, title: str, log: bool = False) -> None:
    shown = [v if v is not None and np.isfinite(v) else 0.0 for v in values]
    bars = ax.bar(list(comparison.names), shown, color=MODEL_COLORS[:2], width=0.55)
    for bar, value in zip(bars, values):
        text = fmt.format(value) if value is not None and np.isfinite(value) else "unknown"
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8)
    if log and all(v > 0 for v in shown):
        ax.set_yscale("log")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def plot_comparison_panel(comparison, *, k: int = 10, title: str | None = None):
    """Six panels: quality metrics, quality by language slice, score distributions, query latency, embedding
    dimension and memory (returns the Figure)."""
    fig = new_figure(15.0, 8.5)
    axes = fig.subplots(2, 3)
    _quality(axes[0, 0], comparison, k)
    _slices(axes[0, 1], comparison, k)
    _distributions(axes[0, 2], comparison)
    _latency(axes[1, 0], comparison)
    _single_bars(axes[1, 1], comparison, [float(comparison.a.dim), float(comparison.b.dim)], "{:.0f}",
                 "dimensions (TF-IDF: vocabulary terms)", "Embedding dimension")
    memory = [r.memory_bytes / 1e6 if r.memory_bytes is not None else None for r in (comparison.a, comparison.b)]
    _single_bars(axes[1, 2], comparison, memory, "{:.3g} MB", "MB", "Model memory", log=True)
    a, b = comparison.names
    fig.suptitle(title or f"{a} vs {b} on {comparison.dataset.name}", fontsize=13)
    return done(fig, None, True)


def plot_comparison_heatmaps(comparison, *, annotate="auto"):
    """The two embedders' similarity matrices over the dataset's heatmap sentences, side by side."""
    sentences = comparison.dataset.sentence_set()
    return plot_heatmaps_side_by_side(comparison.a.sentence_sim, comparison.b.sentence_sim, sentences.labels(),
                                      sentences.topics, comparison.names, annotate=annotate,
                                      label_fallbacks=sentences.ids)


def plot_comparison_pca(comparison, *, labels: bool = False):
    """Each embedder's document vectors projected on two principal components, coloured by topic, with
    English as circles and Chinese as triangles (a model that clusters by language shows two clouds)."""
    docs = comparison.dataset.documents
    fig = new_figure(14.0, 6.0)
    for ax, result in zip(fig.subplots(1, 2), (comparison.a, comparison.b)):
        plot_pca(pca_2d(result.doc_vectors), [d.topic for d in docs], ax=ax, langs=[d.lang for d in docs],
                 labels=[d.id for d in docs] if labels else None, title=result.name)
    fig.suptitle("Documents in embedding space (PCA)", fontsize=13)
    return done(fig, None, True)


def plot_metric_intervals(table, metric: str = "ndcg@10", ax=None, *, title: str | None = None):
    """Each system's ``metric`` with its 95 % bootstrap interval (a scorecard table: ``metric``, ``metric low``,
    ``metric high``), best at the top."""
    data = table.sort_values(metric)
    fig, ax, owns = figure_and_axes(ax, 8.0, 1.0 + 0.5 * len(data))
    y = np.arange(len(data))
    low = (data[metric] - data[f"{metric} low"]).to_numpy(dtype=float)
    high = (data[f"{metric} high"] - data[metric]).to_numpy(dtype=float)
    colors = [COLORS[i % len(COLORS)] for i in range(len(data))]
    ax.errorbar(data[metric], y, xerr=[low, high], fmt="none", ecolor="grey", capsize=4)
    ax.scatter(data[metric], y, color=colors, s=60, zorder=3)
    for yi, (value, lo, hi) in enumerate(zip(data[metric], data[f"{metric} low"], data[f"{metric} high"])):
        ax.annotate(f"{value:.3f}  [{lo:.3f}, {hi:.3f}]", (hi, yi), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_yticks(y, list(data.index), fontsize=9)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel(f"{metric} (95% bootstrap interval over queries)")
    ax.set_title(title or f"{metric} by system")
    ax.grid(axis="x", alpha=0.25)
    return done(fig, ax, owns)


def _cost_text(row) -> str:
    cost = float(row["cost per 1M tokens"])
    if not np.isfinite(cost):
        reason = row.get("unpriced because")  # cost_table's reason (a two-stage pipeline's /rerank is not timed)
        if isinstance(reason, str) and reason:
            return reason
        return "no model to serve (word overlap)" if row.get("kind") == "lexical" else "no throughput measured"
    currency = row.get("currency") if isinstance(row.get("currency"), str) else ""
    return f"{estimate_text(cost)} {currency} per 1M tokens on {row['node type']}".replace("  ", " ")


def _quality_with_costs(ax, costs, metric: str) -> None:
    """Too few distinct costs for an axis: quality by system (with its interval), each system's cost under its
    name."""
    data = costs.sort_values(metric)
    y = np.arange(len(data))
    low = (data[metric] - data["low"]).to_numpy(dtype=float)
    high = (data["high"] - data[metric]).to_numpy(dtype=float)
    ax.errorbar(data[metric], y, xerr=[np.nan_to_num(low), np.nan_to_num(high)], fmt="o", color=COLORS[0],
                ecolor="grey", capsize=4, ms=7)
    ax.set_yticks(y, [f"{system}\n{_cost_text(row)}" for system, row in data.iterrows()], fontsize=8)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel(f"{metric} (95% bootstrap interval over queries)")
    ax.grid(axis="x", alpha=0.25)


def _quality_against_cost(ax, priced, metric: str) -> None:
    for index, (system, row) in enumerate(priced.iterrows()):
        color = COLORS[index % len(COLORS)]
        err = [[row[metric] - row["low"]], [row["high"] - row[metric]]] if np.isfinite(row["low"]) else None
        ax.errorbar(row["cost per 1M tokens"], row[metric], yerr=err, fmt="o", color=color, capsize=4, ms=8)
        ax.annotate(f"{system}\n{row['node type']}", (row["cost per 1M tokens"], row[metric]),
                    xytext=(8, 4 - 26 * (index % 3)), textcoords="offset points", fontsize=8)
    values = priced["cost per 1M tokens"].astype(float)
    if values.min() > 0 and values.max() / values.min() >= 10:  # a log axis only when it spans a decade or more
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, values.max() * 1.35)
    currency = next((c for c in priced.get("currency", []) if c), "")
    ax.set_xlabel(f"cost per million tokens ({currency}; prices: list price, verify)")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.25)


def plot_quality_vs_cost(costs, metric: str = "ndcg@10", ax=None, *, title: str = "Quality against cost",
                         hardware: str | None = None):
    """Quality (y, with its interval) against cost per million tokens (x) from ``scorecard.cost_table``, for the
    systems with a cost (the others listed in the corner). With fewer than two distinct costs (locally: one model
    on this machine's CPU) there is nothing to trade off, and the figure says so: quality by system, each with its
    cost under its name. ``hardware``: where the throughput was measured (``pb.serving.measured_on()``)."""
    priced = costs[np.isfinite(costs["cost per 1M tokens"].astype(float))]
    distinct = np.unique(priced["cost per 1M tokens"].astype(float).round(12))
    single = len(distinct) < 2
    fig, ax, owns = figure_and_axes(ax, 8.5, 1.6 + 0.6 * len(costs) if single else 5.5)
    if single:
        _quality_with_costs(ax, costs, metric)
        what = ("one measured cost (illustrative price), so quality decides" if len(distinct) == 1
                else "no cost measured")
        heading = f"{title}: {what}"
    else:
        _quality_against_cost(ax, priced, metric)
        unpriced = [s for s in costs.index if s not in priced.index]
        if unpriced:
            ax.text(0.01, 0.02, "no throughput given: " + ", ".join(unpriced), transform=ax.transAxes, fontsize=7,
                    color="grey")
        heading = title
    ax.set_title(heading + (f"\nthroughput measured on {hardware}" if hardware else ""), fontsize=10)
    return done(fig, ax, owns)
