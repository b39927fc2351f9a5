"""The bytes-per-pod chart draws what the plans say."""

from __future__ import annotations

import pytest

from tke_playbook.download import DownloadSpec, RepoFile, make_plan, tutorial_plan
from tke_playbook.download.charts import plot_bytes_per_shard

FILES = [RepoFile("a.safetensors", 9_900), RepoFile("b.safetensors", 4_500), RepoFile("a.bin", 9_900),
         RepoFile("b.bin", 5_100), RepoFile("config.json", 10)]


def test_side_by_side_bars_match_the_plans():
    spec = DownloadSpec()
    plans = {"tutorial": tutorial_plan(spec, FILES), "ours": make_plan(spec, FILES)}
    fig = plot_bytes_per_shard(plans, unit=1_000, unit_name="k")
    ax = fig.axes[0]
    heights = [round(p.get_height(), 2) for p in ax.patches]
    expected = [round(b / 1000, 2) for plan in plans.values() for b in plan.bytes_per_shard]
    assert heights == expected
    assert any("ideal" in t.get_text() for t in ax.get_legend().get_texts())


def test_given_axes_are_returned_and_empty_input_refused():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    assert plot_bytes_per_shard(make_plan(DownloadSpec(), FILES), ax=ax) is ax
    with pytest.raises(ValueError, match="at least one"):
        plot_bytes_per_shard({})
