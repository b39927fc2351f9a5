"""Similarity heatmaps: one annotated matrix with topic blocks outlined, or two models side by side."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.transforms import blended_transform_factory

from ..errors import InvalidSpecError
from ._style import done, figure_and_axes, new_figure, safe_labels, topic_blocks

CMAP = "RdYlBu_r"
ANNOTATE_MAX = 24  # annotate="auto" writes values into cells up to this many rows


def _check(sim, labels, topics) -> np.ndarray:
    matrix = np.asarray(sim, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise InvalidSpecError(f"a similarity heatmap needs a square, non-empty matrix, got shape {matrix.shape}",
                               field="sim", value=matrix.shape)
    n = matrix.shape[0]
    if len(labels) != n:
        raise InvalidSpecError(f"{len(labels)} labels for a {n}×{n} matrix: pass one label per row", field="labels",
                               value=len(labels))
    if topics is not None and len(topics) != n:
        raise InvalidSpecError(f"{len(topics)} topics for a {n}×{n} matrix: pass one topic per row", field="topics",
                               value=len(topics))
    return matrix


def _annotation_size(n: int) -> float:
    return 9.0 if n <= 8 else 7.5 if n <= 12 else 6.0 if n <= 18 else 5.0


def _cell_inches(n: int) -> float:
    return 0.6 if n <= 8 else 0.5 if n <= 12 else 0.42 if n <= 20 else max(0.18, 9.0 / n)


def _label_inches(labels: Sequence[str]) -> float:
    return 0.4 + 0.065 * max((len(str(label)) + 4 for label in labels), default=4)


def draw_heatmap(ax, sim, labels: Sequence[str], topics: Sequence[str] | None = None, *, annotate=True,
                 title: str | None = None, vmin: float | None = None, vmax: float = 1.0,
                 label_fallbacks: Sequence[str] | None = None, show_ylabels: bool = True, colorbar: bool = True):
    """Draw on ``ax``; returns the image. Columns are numbered, rows carry ``"<number> <label>"``."""
    matrix = _check(sim, labels, topics)
    n = matrix.shape[0]
    low = min(0.0, float(matrix.min())) if vmin is None else vmin
    # aspect "auto" (figure sizes keep cells square): constrained layout mis-measures tick labels of equal-aspect axes
    image = ax.imshow(matrix, cmap=CMAP, vmin=low, vmax=vmax, interpolation="nearest", aspect="auto")
    shown = safe_labels(labels, label_fallbacks)
    ax.set_xticks(range(n), [str(i + 1) for i in range(n)])
    if show_ylabels:
        ax.set_yticks(range(n), [f"{i + 1}  {label}" for i, label in enumerate(shown)])
    else:
        ax.set_yticks(range(n), [str(i + 1) for i in range(n)])
    ax.tick_params(length=0, labelsize=8)
    if annotate == "auto":
        annotate = n <= ANNOTATE_MAX
    if annotate:
        _annotate(ax, matrix, low, vmax)
    if topics is not None:
        _outline_topics(ax, topics)
    if title:
        ax.set_title(title, pad=22 if topics is not None else 6)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="cosine similarity")
    return image


def _annotate(ax, matrix: np.ndarray, low: float, high: float) -> None:
    """Each cell's value, white on the dark ends of the colour scale and black in its middle."""
    n = matrix.shape[0]
    size, middle = _annotation_size(n), (low + high) / 2
    for i in range(n):
        for j in range(n):
            value = matrix[i, j]
            far = abs(value - middle) > 0.3 * (high - low)
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=size,
                    color="white" if far else "black", gid="annotation")


def _outline_topics(ax, topics: Sequence[str]) -> None:
    """A box around each topic's block of rows and columns, the topic's name above it."""
    top = blended_transform_factory(ax.transData, ax.transAxes)
    for topic, start, stop in topic_blocks(topics):
        ax.add_patch(Rectangle((start - 0.5, start - 0.5), stop - start, stop - start, fill=False,
                               edgecolor="black", linewidth=2.0, gid="topic-block"))
        ax.text((start + stop - 1) / 2, 1.01, str(topic), transform=top, ha="center", va="bottom", fontsize=8,
                fontweight="bold")


def plot_similarity_heatmap(sim, labels: Sequence[str], topics: Sequence[str] | None = None, ax=None,
                            annotate="auto", title: str = "Cosine similarity", *,
                            label_fallbacks: Sequence[str] | None = None):
    """An annotated similarity heatmap with topic blocks outlined (returns the Figure, or ``ax`` when given).

    ``annotate``: True, False or ``"auto"`` (values written when there are at most 24 rows).
    ``label_fallbacks`` (e.g. sentence ids) replace Chinese labels when no CJK font is installed."""
    n, shown = len(labels), safe_labels(labels, label_fallbacks)
    side = n * _cell_inches(n)
    fig, ax, owns = figure_and_axes(ax, side + _label_inches(shown) + 1.3, side + 1.2)
    draw_heatmap(ax, sim, labels, topics, annotate=annotate, title=title, label_fallbacks=label_fallbacks)
    return done(fig, ax, owns)


def plot_heatmaps_side_by_side(sim_a, sim_b, labels: Sequence[str], topics: Sequence[str] | None = None,
                               names: Sequence[str] = ("model A", "model B"), *, annotate="auto",
                               label_fallbacks: Sequence[str] | None = None):
    """Two models' similarity matrices over the same sentences, on one colour scale (returns the Figure)."""
    if len(names) != 2:
        raise InvalidSpecError(f"names must hold two model names, got {list(names)}", field="names", value=names)
    a, b = _check(sim_a, labels, topics), _check(sim_b, labels, topics)
    n = len(labels)
    if annotate == "auto":
        annotate = n <= 18
    low = min(0.0, float(a.min()), float(b.min()))
    side = n * _cell_inches(n) * 0.85
    fig = new_figure(2 * side + _label_inches(safe_labels(labels, label_fallbacks)) + 1.8, side + 1.6)
    left, right = fig.subplots(1, 2)
    draw_heatmap(left, a, labels, topics, annotate=annotate, title=names[0], vmin=low,
                 label_fallbacks=label_fallbacks, colorbar=False)
    image = draw_heatmap(right, b, labels, topics, annotate=annotate, title=names[1], vmin=low,
                         label_fallbacks=label_fallbacks, show_ylabels=False, colorbar=False)
    fig.colorbar(image, ax=[left, right], fraction=0.025, pad=0.01, label="cosine similarity")
    fig.suptitle(f"Cosine similarity: {names[0]} vs {names[1]}")
    return done(fig, None, True)


def plot_heatmap_grid(sims, labels: Sequence[str], topics: Sequence[str] | None = None, *, columns: int = 3,
                      annotate="auto", label_fallbacks: Sequence[str] | None = None,
                      title: str = "Cosine similarity of the sentence set"):
    """Any number of models' similarity matrices (``{name: matrix}``) over the same sentences, on ONE shared
    colour scale: sentence labels once per row of panels, numbers on every axis, one colour bar."""
    items = list(sims.items()) if hasattr(sims, "items") else list(sims)
    if not items:
        raise InvalidSpecError("plot_heatmap_grid needs at least one {name: matrix}", field="sims", value=0)
    matrices = [(name, _check(sim, labels, topics)) for name, sim in items]
    n, cols = len(labels), max(1, min(int(columns), len(matrices)))
    rows = -(-len(matrices) // cols)
    annotate = n <= 12 if annotate == "auto" else annotate
    low = min(0.0, *(float(m.min()) for _, m in matrices))
    side = max(3.2, n * _cell_inches(n) * 0.8)
    shown = safe_labels(labels, label_fallbacks)
    fig = new_figure(cols * side + _label_inches(shown) + 1.2, rows * (side + 0.9) + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    image = None
    for index, ax in enumerate(axes):
        if index >= len(matrices):
            ax.set_visible(False)
            continue
        name, matrix = matrices[index]
        image = draw_heatmap(ax, matrix, labels, topics, annotate=annotate, title=name, vmin=low,
                             label_fallbacks=label_fallbacks, show_ylabels=index % cols == 0, colorbar=False)
    fig.colorbar(image, ax=list(axes[:len(matrices)]), fraction=0.02, pad=0.01, label="cosine similarity (shared)")
    fig.suptitle(title)
    return done(fig, None, True)
