"""The frontier plot on small synthetic points: two panels when a cost is known (one without), Pareto points drawn
large with a black edge and joined, one label per distinct Pareto position, the hardware and the storage
assumption in the title, and a PNG that renders."""

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tke_playbook.errors import InvalidSpecError
from tke_playbook.plots.frontier import plot_frontier

COST = "per 1M docs, embedded + stored 12 months"


def points(cost: bool = True) -> pd.DataFrame:
    rows = [(384, "float32", 0.46, 1536, 9.2, False), (384, "fp8_e4m3", 0.49, 384, 4.7, True),
            (384, "binary", 0.40, 48, 3.36, True), (384, "ubinary", 0.40, 48, 3.36, True),
            (128, "float32", 0.41, 512, 5.2, False), (128, "ubinary", 0.38, 16, 3.24, True)]
    frame = pd.DataFrame(rows, columns=["dimensions", "precision", "ndcg@10", "bytes per vector", COST, "pareto"])
    frame["model"] = "sentence-transformers/all-MiniLM-L6-v2"
    frame["ndcg@10 low"], frame["ndcg@10 high"] = frame["ndcg@10"] - 0.1, frame["ndcg@10"] + 0.1
    frame["pareto (bytes)"] = frame["pareto"]
    frame["not matryoshka"] = frame["dimensions"] < 384
    frame["currency"] = "CNY"
    if not cost:
        frame[COST] = np.nan
    return frame.set_index(frame["dimensions"].astype(str) + "-" + frame["precision"])


def test_two_panels_with_pareto_points_marked_and_the_assumptions_said():
    fig = plot_frontier(points(), hardware="this machine's CPU (test, 2 cores)", assumption="storage at 0.35 CNY")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert "this machine's CPU (test, 2 cores)" in fig._suptitle.get_text()
    assert "storage at 0.35 CNY" in fig._suptitle.get_text()
    for ax in fig.axes:
        sizes = [c.get_sizes() for c in ax.collections if hasattr(c, "get_sizes")]
        edges = [s for s in sizes if s.size and s[0] == 95]
        assert len(edges) == 4  # the four Pareto points, large
        texts = [t.get_text() for t in ax.texts]
        assert "384d binary/ubinary" in texts and texts.count("384d binary/ubinary") == 1  # one label, not two
        assert ax.get_lines(), "the Pareto step line"
    assert "CNY per 1M docs" in fig.axes[1].get_xlabel()
    legend_texts = [t.get_text() for legend in fig.axes[0].findobj(lambda a: hasattr(a, "get_texts"))
                    for t in legend.get_texts()]
    assert any("not Matryoshka-trained: expect loss" in t for t in legend_texts)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:4] == b"\x89PNG"


def test_without_a_cost_one_panel_on_bytes_per_vector():
    fig = plot_frontier(points(cost=False))
    assert len(fig.axes) == 1 and "bytes per vector" in fig.axes[0].get_xlabel()


def test_not_a_frontier_is_refused():
    with pytest.raises(InvalidSpecError, match="run_frontier"):
        plot_frontier(pd.DataFrame({"ndcg@10": [0.5]}))
