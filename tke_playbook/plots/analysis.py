"""Embedding-space views: a 2-D PCA scatter coloured by topic, and score distributions of relevant and
irrelevant query-document pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.lines import Line2D

from ..errors import InvalidSpecError
from ._style import COLORS, done, figure_and_axes, new_figure, safe_labels

LANG_MARKERS = {"en": "o", "zh": "^"}


def plot_pca(points, topics: Sequence[str], ax=None, *, langs: Sequence[str] | None = None,
             labels: Sequence[str] | None = None, title: str = "Embeddings projected on two principal components"):
    """Scatter of 2-D points (e.g. :func:`tke_playbook.evaluate.similarity.pca_2d`) coloured by topic; with ``langs``,
    English is drawn as circles and Chinese as triangles; ``labels`` are written next to the points."""
    xy = np.asarray(points, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InvalidSpecError(f"points must have shape (n, 2), got {xy.shape}: project with similarity.pca_2d "
                               "first", field="points", value=xy.shape)
    for what, seq in (("topics", topics), ("langs", langs), ("labels", labels)):
        if seq is not None and len(seq) != len(xy):
            raise InvalidSpecError(f"{len(seq)} {what} for {len(xy)} points", field=what, value=len(seq))
    fig, ax, owns = figure_and_axes(ax, 8.0, 6.5)
    for index, topic in enumerate(dict.fromkeys(topics)):
        _scatter_topic(ax, xy, topics, langs, topic, COLORS[index % len(COLORS)])
    if labels is not None:
        for (x, y), text in zip(xy, safe_labels(labels)):
            ax.annotate(text, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7, color="#333333")
    handles, names = ax.get_legend_handles_labels()
    for lang in sorted(set(langs)) if langs is not None else ():
        handles.append(Line2D([], [], marker=LANG_MARKERS.get(lang, "o"), linestyle="", color="grey"))
        names.append({"en": "English", "zh": "Chinese"}.get(lang, lang))
    ax.legend(handles, names, fontsize=8, loc="best", frameon=False)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.grid(alpha=0.25)
    return done(fig, ax, owns)


def _scatter_topic(ax, xy, topics: Sequence[str], langs: Sequence[str] | None, topic: str, color) -> None:
    """One topic's points, a marker per language; the topic is named in the legend once."""
    named = False
    for lang in (sorted(set(langs)) if langs is not None else [None]):
        mask = np.array([t == topic and (lang is None or g == lang)
                         for t, g in zip(topics, langs if langs is not None else topics)])
        if not mask.any():
            continue
        ax.scatter(xy[mask, 0], xy[mask, 1], s=60, color=color, marker=LANG_MARKERS.get(lang, "o"),
                   edgecolor="white", linewidth=0.8, label=None if named else topic)
        named = True


def _groups(distributions, split_cross_lingual: bool):
    rel = distributions["relevant"].astype(bool)
    if split_cross_lingual and "cross_lingual" in distributions.columns:
        cross = distributions["cross_lingual"].astype(bool)
        return [("relevant, same language", rel & ~cross, "#2ca02c"),
                ("relevant, cross-lingual", rel & cross, "#9467bd"),
                ("irrelevant", ~rel, "#7f7f7f")]
    return [("relevant", rel, "#2ca02c"), ("irrelevant", ~rel, "#7f7f7f")]


def plot_score_distributions(distributions, ax=None, *, title: str = "Scores of relevant and irrelevant pairs",
                             bins: int = 30, split_cross_lingual: bool = True):
    """Histograms (as densities) of cosine scores for relevant and irrelevant query-document pairs, from
    :func:`tke_playbook.evaluate.similarity.score_distributions`; relevant pairs split by language when known."""
    missing = {"score", "relevant"} - set(distributions.columns)
    if missing:
        raise InvalidSpecError(f"distributions lack column(s) {sorted(missing)}: build them with "
                               "similarity.score_distributions", field="distributions", value=sorted(missing))
    fig, ax, owns = figure_and_axes(ax, 8.0, 4.5)
    scores = distributions["score"].to_numpy(dtype=float)
    if len(scores):
        low, high = float(scores.min()), float(scores.max())
        edges = np.linspace(low, high if high > low else low + 1e-6, bins + 1)
        for name, mask, color in _groups(distributions, split_cross_lingual):
            values = scores[mask.to_numpy()]
            if len(values) == 0:
                continue
            ax.hist(values, bins=edges, density=True, alpha=0.45, color=color,
                    label=f"{name} (n={len(values)}, mean {values.mean():.2f})")
            ax.axvline(values.mean(), color=color, linestyle="--", linewidth=1.2)
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title)
    return done(fig, ax, owns)


def plot_projections(points: dict, topics: Sequence[str], langs: Sequence[str] | None = None, *, columns: int = 3,
                     method: str = "PCA", title: str | None = None):
    """One 2-D projection per model (``{name: (n, 2) points}``, e.g. from ``similarity.project_2d``), coloured
    by topic, English as circles and Chinese as triangles (returns the Figure)."""
    if not points:
        raise InvalidSpecError("plot_projections needs at least one {name: points}", field="points", value=0)
    cols = max(1, min(int(columns), len(points)))
    rows = -(-len(points) // cols)
    fig = new_figure(5.2 * cols + 1.4, 4.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for index, ax in enumerate(axes):
        if index >= len(points):
            ax.set_visible(False)
            continue
        name, xy = list(points.items())[index]
        plot_pca(xy, topics, ax=ax, langs=langs, title=name)
        ax.set_xlabel(f"{method} 1")
        ax.set_ylabel(f"{method} 2")
    legend = axes[0].get_legend()
    handles, names = legend.legend_handles, [t.get_text() for t in legend.get_texts()]
    for ax in axes[:len(points)]:  # one key for every panel, beside them: it covers no point of any panel
        ax.get_legend().remove()
    fig.legend(handles, names, loc="outside right upper", fontsize=9, frameon=False,
               title="topic / language", title_fontsize=9)
    fig.suptitle(title or f"Documents in each model's embedding space ({method})", fontsize=13)
    return done(fig, None, True)
