"""Scorecard figures: heatmaps of 3+ models on one shared colour scale, per-model projections, the interval plot
and quality against cost. Each takes data and returns a Figure."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tke_playbook import plots
from tke_playbook.errors import InvalidSpecError
from tke_playbook.evaluate.similarity import project_2d
from tke_playbook.scorecard import Throughput, cost_table


def _sims(n=8, models=4):
    rng = np.random.default_rng(0)
    out = {}
    for m in range(models):
        x = rng.standard_normal((n, 5))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[f"model-{m}"] = x @ x.T * (0.5 + 0.1 * m)
    return out


def test_heatmap_grid_shares_one_colour_scale_and_labels_rows_once():
    sims = _sims()
    labels = [f"sentence {i}" for i in range(8)]
    fig = plots.plot_heatmap_grid(sims, labels, ["a"] * 4 + ["b"] * 4, columns=3)
    assert isinstance(fig, Figure)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 4
    low = min(0.0, min(float(m.min()) for m in sims.values()))
    assert {im.get_clim() for im in images} == {(low, 1.0)}
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(colorbars) == 1
    titled = {ax.get_title(): ax for ax in fig.axes if ax.images}
    assert titled["model-0"].get_yticklabels()[0].get_text().endswith("sentence 0")
    assert titled["model-1"].get_yticklabels()[0].get_text() == "1"  # only numbers beside the first column
    assert titled["model-3"].get_yticklabels()[0].get_text().endswith("sentence 0")  # a new row of panels
    assert sum(ax.get_visible() for ax in fig.axes if not ax.images and ax.get_label() != "<colorbar>") == 0


def test_heatmap_grid_refuses_mismatched_labels():
    with pytest.raises(InvalidSpecError, match="labels"):
        plots.plot_heatmap_grid(_sims(models=3), ["only one"])


def test_projections_one_panel_per_model():
    rng = np.random.default_rng(1)
    points = {f"m{i}": project_2d(rng.standard_normal((12, 6))) for i in range(3)}
    fig = plots.plot_projections(points, ["a", "b"] * 6, ["en", "zh"] * 6)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["m0", "m1", "m2"]


def test_projections_share_one_legend_beside_every_panel():
    """Issue 20: the key sat inside the first panel only (over its points) and the others had none."""
    rng = np.random.default_rng(1)
    points = {f"m{i}": project_2d(rng.standard_normal((12, 6))) for i in range(2)}
    fig = plots.plot_projections(points, ["a", "b"] * 6, ["en", "zh"] * 6)
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "English", "Chinese"]
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent()
    assert all(box.x0 >= ax.get_window_extent().x1 - 5 for ax in fig.axes)  # beside the panels (its padding aside)


def test_project_2d_pca_and_unknown_method():
    xy = project_2d(np.eye(4), "pca")
    assert xy.shape == (4, 2)
    with pytest.raises(InvalidSpecError, match="'pca' or 'umap'"):
        project_2d(np.eye(4), "tsne")


def _quality():
    return pd.DataFrame({"ndcg@10": [0.7, 0.5, 0.6], "ndcg@10 low": [0.6, 0.4, 0.5],
                         "ndcg@10 high": [0.8, 0.6, 0.7]}, index=pd.Index(["bge", "bm25", "e5"], name="system"))


def test_metric_intervals_sorted_best_on_top():
    fig = plots.plot_metric_intervals(_quality())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["bm25", "e5", "bge"]


def test_quality_vs_cost_plots_priced_systems_and_lists_the_rest():
    costs = cost_table(_quality(), [Throughput("bge", 20_000, "PNV5b.8XLARGE96"),
                                    Throughput("e5", 4_000, "PNV5b.8XLARGE96")])
    fig = plots.plot_quality_vs_cost(costs, hardware="PNV5b.8XLARGE96 (1 x L20)")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any("no throughput given: bm25" in t for t in texts)
    assert "list price, verify" in ax.get_xlabel() and "measured on PNV5b.8XLARGE96" in ax.get_title()
    # costs 5x apart: a linear axis from 0 with several labelled ticks (a log axis showed a single tick)
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    fig.canvas.draw()
    assert len([t for t in ax.get_xticklabels() if t.get_text()]) >= 3
    wide = cost_table(_quality(), [Throughput("bge", 40_000, "PNV5b.8XLARGE96"),
                                   Throughput("e5", 400, "PNV5b.8XLARGE96")])
    assert plots.plot_quality_vs_cost(wide).axes[0].get_xscale() == "log"


def test_quality_vs_cost_with_one_measured_cost_says_so_and_shows_every_system():
    """The local run: one model on this machine's CPU (and its hybrid, the same cost), BM25 and TF-IDF without a
    throughput - two overlapping points on one tick said nothing."""
    quality = pd.DataFrame({"kind": ["dense", "lexical", "hybrid", "lexical"],
                            "ndcg@10": [0.458, 0.502, 0.448, 0.529], "ndcg@10 low": [0.30, 0.34, 0.31, 0.36],
                            "ndcg@10 high": [0.62, 0.66, 0.58, 0.69]},
                           index=pd.Index(["minilm", "bm25", "hybrid", "tfidf"], name="system"))
    costs = cost_table(quality, [Throughput("minilm", 1500, "SA5.LARGE8"), Throughput("hybrid", 1500, "SA5.LARGE8")])
    fig = plots.plot_quality_vs_cost(costs, hardware="this machine's CPU")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert [label.split("\n")[0] for label in labels] == ["hybrid", "minilm", "bm25", "tfidf"]  # every system
    cost = costs.loc["minilm", "cost per 1M tokens"]
    assert f"{cost:.3g} CNY per 1M tokens on SA5.LARGE8" in labels[1] and "no model to serve" in labels[2]
    assert "one measured cost" in ax.get_title() and "measured on this machine's CPU" in ax.get_title()
