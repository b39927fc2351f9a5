"""The bytes-per-pod chart draws what the plans say."""

from __future__ import annotations

import pytest

from tke_playbook.plots import plot_bytes_per_pod
from tke_playbook.podworker.planner import make_plan, tutorial_plan
from tke_playbook.podworker.rules import RepoFile
from tke_playbook.specs import DownloadSpec

FILES = [RepoFile("a.safetensors", 9_900), RepoFile("b.safetensors", 4_500), RepoFile("a.bin", 9_900),
         RepoFile("b.bin", 5_100), RepoFile("config.json", 10)]


def test_side_by_side_bars_match_the_plans():
    spec = DownloadSpec()
    ours, theirs = make_plan(spec, FILES), tutorial_plan(spec, FILES)
    fig = plot_bytes_per_pod(ours, tutorial=theirs)
    ax = fig.axes[0]
    heights = [round(p.get_height(), 6) for p in ax.patches]
    expected = [round(b / 1e6, 6) for plan in (ours, theirs) for b in plan.bytes_per_shard]
    assert heights == expected
    assert any("even share" in t.get_text() for t in ax.get_legend().get_texts())
    even = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert round(even[0].get_ydata()[0], 6) == round(ours.total_bytes / len(ours.shards) / 1e6, 6)


def test_given_axes_are_returned_and_an_empty_plan_refused():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    plan = make_plan(DownloadSpec(), FILES)
    assert plot_bytes_per_pod(plan, ax=ax) is ax

    class Empty:
        bytes_per_shard, total_bytes = (), 0

    with pytest.raises(ValueError, match="no shards"):
        plot_bytes_per_pod(Empty())
