"""Plots of a scorecard on your own documents: how much the systems agree, how long the chunks are, and how fast
each system embedded them. Each takes data and returns a Figure (or the Axes it was given)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._style import COLORS, done, figure_and_axes


def plot_agreement(matrix, ax=None, *, k: int = 10, title: str | None = None):
    """Systems × systems mean overlap@k (``scorecard.CorpusScorecard.overlap()``), annotated."""
    names = [str(n) for n in matrix.index]
    size = 2.5 + 0.9 * len(names)
    fig, ax, owns = figure_and_axes(ax, size + 1.5, size)
    values = np.asarray(matrix, dtype=float)
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9, color="white" if value < 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(title or f"Agreement: shared chunks in the top {k} (mean over queries)")
    fig.colorbar(image, ax=ax, shrink=0.8, label=f"overlap@{k}")
    return done(fig, ax, owns)


def plot_chunk_tokens(tokens: Sequence[int], ax=None, *, limit: int | None = None, title: str = "Chunk lengths"):
    """Histogram of tokens per chunk, with the chunk limit marked."""
    fig, ax, owns = figure_and_axes(ax, 7.0, 3.5)
    ax.hist(np.asarray(tokens, dtype=float), bins=40, color=COLORS[0])
    if limit:
        ax.axvline(limit, color=COLORS[3], linestyle="--", label=f"limit {limit} tokens")
        ax.legend(fontsize=8)
    ax.set_xlabel("tokens per chunk (the model's tokenizer)")
    ax.set_ylabel("chunks")
    ax.set_title(title)
    return done(fig, ax, owns)


def plot_embedding_speed(table, ax=None, *, hardware: str = "", title: str = "Embedding the chunks"):
    """Chunks per second and p99 request latency of each system that embedded the corpus (a scorecard table with
    ``chunks/s`` and ``p99 ms``); ``hardware`` says what it was measured on."""
    data = table[np.isfinite(table["chunks/s"].astype(float))]
    fig, ax, owns = figure_and_axes(ax, 7.0, 1.2 + 0.5 * max(1, len(data)))
    y = np.arange(len(data))
    bars = ax.barh(y, data["chunks/s"].astype(float), color=[COLORS[i % len(COLORS)] for i in range(len(data))])
    for bar, p99 in zip(bars, data["p99 ms"].astype(float)):
        ax.annotate(f"{bar.get_width():.1f}/s, p99 {p99:.0f} ms", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(y, list(data.index), fontsize=8)
    ax.set_xlabel("chunks per second")
    ax.set_title(f"{title}" + (f" ({hardware})" if hardware else ""))
    if not len(data):
        ax.text(0.5, 0.5, "no system embedded chunks", ha="center", va="center", transform=ax.transAxes)
    return done(fig, ax, owns)
