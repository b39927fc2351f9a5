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
    assert visible[0].get_legend() is not None and visible[1].get_legend() is None


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
    fig = plots.plot_quality_vs_cost(costs)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any("no throughput given: bm25" in t for t in texts)
    assert ax.get_xscale() == "log" and "list price, verify" in ax.get_xlabel()
