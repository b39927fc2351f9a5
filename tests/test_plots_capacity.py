"""Capacity plots: sweep panels per input length, tokens/s against batch size, the mixed workload's two latency
distributions, the latency knee and the capacity plan table - legends outside the data area, PNGs that render."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tke_playbook import plots
from tke_playbook.capacity import QueryLoad, SustainableRate, plan_capacity
from tke_playbook.errors import InvalidSpecError


def _sweep():
    rows = []
    for tokens in (32, 512):
        for inputs in (1, 8):
            for concurrency in (1, 4, 16):
                tps = 1000.0 * concurrency * inputs / (1 + tokens / 256)
                rows.append({"concurrency": float(concurrency), "input_tokens": tokens, "inputs": inputs,
                             "req_per_s": tps / tokens / inputs, "embeddings_per_s": tps / tokens,
                             "tokens_per_s": tps, "p99_ms": 10.0 * concurrency * inputs})
    return pd.DataFrame(rows)


def _legend_outside(ax):
    legend = ax.get_legend()
    ax.figure.canvas.draw()
    box, area = legend.get_window_extent(), ax.get_window_extent()
    return box.x0 >= area.x1 - 1  # the legend starts right of the plotting area


def test_sweep_has_one_line_per_shape_in_both_panels(tmp_path):
    fig = plots.plot_sweep(_sweep())
    left, right = fig.axes
    assert len(left.get_lines()) == len(right.get_lines()) == 4
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels == ["32 tokens", "32 tokens x 8 inputs", "512 tokens", "512 tokens x 8 inputs"]
    assert left.get_ylabel() == "embeddings/s" and right.get_ylabel() == "p99 latency (ms, log scale)"
    assert [t.get_text() for t in left.get_xticklabels()] == ["1", "4", "16"]
    assert _legend_outside(right)
    fig.savefig(tmp_path / "sweep.png")


def test_tokens_against_batch_size_takes_the_best_concurrency():
    fig = plots.plot_tokens_vs_batch(_sweep())
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 2 and ax.get_xlabel() == "inputs per request (batch size)"
    x, y = lines[0].get_data()
    assert list(x) == [1.0, 8.0] and y[1] == pytest.approx(1000.0 * 16 * 8 / (1 + 32 / 256))
    assert _legend_outside(ax)


def test_mixed_latency_has_a_panel_per_stream_with_its_target(tmp_path):
    rng = np.random.default_rng(0)
    records = pd.DataFrame({"stream": ["bulk"] * 50 + ["query"] * 200,
                            "latency_s": np.r_[rng.uniform(1, 3, 50), rng.uniform(0.01, 0.05, 200)], "ok": True})
    targets = pd.DataFrame({"stream": ["bulk", "query"], "target_ms": [5000.0, 100.0]})
    fig = plots.plot_mixed_latency(records, targets)
    assert [ax.get_title() for ax in fig.axes] == ["bulk (50 ok)", "query (200 ok)"]
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert "target 100 ms" in legend and any(t.startswith("p99") for t in legend)
    fig.savefig(tmp_path / "mixed.png")


def test_latency_knee_marks_target_and_sustainable_rate():
    summary = pd.DataFrame({"rate": [10.0, 20.0, 30.0, 40.0], "p50_ms": [5, 6, 9, 900], "p99_ms": [9, 12, 40, 4000]})
    fig = plots.plot_latency_knee(summary, target_ms=50, sustainable_rps=30)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["p99", "p50", "target 50 ms", "sustainable 30.0 req/s"]
    assert ax.get_yscale() == "log" and _legend_outside(ax)


def test_capacity_plan_table(tmp_path):
    per_replica = SustainableRate(30.0, 120.0, 200.0, 30.0, 1000.0, 32, 1)
    plan = plan_capacity(QueryLoad(100, 200), per_replica, "PNV5b.8XLARGE96")
    fig = plots.plot_capacity_table(plan)
    texts = [cell.get_text().get_text() for cell in fig.axes[0].tables[0].get_celld().values()]
    assert any("4 x PNV5b.8XLARGE96" == t for t in texts) and any(t.startswith("4 (each at") for t in texts)
    fig.savefig(tmp_path / "plan.png")


def test_capacity_plots_want_loadgen_frames():
    with pytest.raises(InvalidSpecError, match="inputs"):
        plots.plot_tokens_vs_batch(_sweep().drop(columns="inputs"))
    with pytest.raises(InvalidSpecError, match="stream"):
        plots.plot_mixed_latency(pd.DataFrame({"latency_s": [0.1], "ok": [True]}))


def _legend_clear_of_the_data(ax):
    """The legend box does not overlap the plotting area (so it cannot hide a line or a bar)."""
    ax.figure.canvas.draw()
    box, area = ax.get_legend().get_window_extent(), ax.get_window_extent()
    return box.x0 >= area.x1 - 1 or box.y1 <= area.y0 + 1


def test_latency_legends_never_cover_the_data():
    rng = np.random.default_rng(1)
    records = pd.DataFrame({"latency_s": rng.uniform(0.01, 0.05, 200), "ok": True, "status": 200,
                            "concurrency": np.repeat([1.0, 4.0], 100), "rate": np.nan,
                            "input_tokens": np.repeat([32, 200], 100), "prompt_tokens": 32.0, "start_s": 0.0})
    mixed = pd.DataFrame({"stream": ["bulk"] * 50 + ["query"] * 50, "latency_s": rng.uniform(0.01, 1, 100),
                          "ok": True})
    summary = pd.DataFrame({"concurrency": [1.0, 4.0], "req_per_s": [50.0, 120.0], "p50_ms": [10.0, 20.0],
                            "p99_ms": [15.0, 40.0], "error_rate": [0.0, 0.0]})
    figures = [plots.plot_latency_histogram(records), plots.plot_latency_cdf(records),
               plots.plot_throughput_vs_concurrency(summary),
               plots.plot_mixed_latency(mixed)]
    for fig in figures:
        for ax in fig.axes:
            if ax.get_legend() is not None:
                assert _legend_clear_of_the_data(ax), ax.get_title()
