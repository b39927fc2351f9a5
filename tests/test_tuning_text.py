"""What the local tuning run says about itself: who measured each setting (the rate search passed as ``baseline=``
or the tuning), how many requests that took, no "best" mark with nothing to compare, and the server's default
worker count instead of a raw None. No server starts: the searches are doubles holding one record per request."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from tke_playbook import capacity
from tke_playbook.capacity import local as local_tuning
from tke_playbook.capacity.planning import SustainableRate
from tke_playbook.loadgen.runner import LoadResult
from tke_playbook.localserver.settings import default_workers
from tke_playbook.reporting import PlainReporter


def _run(kind: str, requests: int) -> LoadResult:
    """A load run that sent ``requests`` requests (``records``: one row per request)."""
    records = pd.DataFrame({"latency_s": [0.05] * requests, "ok": [True] * requests})
    return LoadResult(kind, records, pd.DataFrame())


def _search(closed: int | None, opened: int, rate: float = 66.5) -> capacity.RateSearch:
    found = SustainableRate(rate, 105.5, 200.0, rate, rate * 32, 32, 1, "open", rate)
    return capacity.RateSearch(77.9, _run("closed", closed) if closed is not None else None, _run("open", opened),
                               found, 200.0)


def _tune_quick(search, **options):
    err = io.StringIO()
    outcome = capacity.tune_local_server(200.0, baseline=search, quick=True, max_candidates=1,
                                         progress=PlainReporter(io.StringIO(), err), **options)
    return outcome, err.getvalue().strip().splitlines()[-1]


def test_quick_line_says_the_rate_search_measured_the_defaults_with_its_requests():
    # the notebook's case: pb.serving.tune(..., baseline=search, quick=True) - the tuning itself sends nothing
    search = _search(closed=None, opened=57)  # ceiling taken from the sweep: only open-loop levels were sent
    outcome, line = _tune_quick(search)
    assert "the rate search above: 57 requests" in line, line
    assert "only the defaults" in line and "no other settings were tried" in line, line
    assert "1 setting(s) measured" not in line and " 0 requests" not in line, line
    with_ceiling = _tune_quick(_search(closed=40, opened=25))[1]  # a search that measured its ceiling too
    assert "the rate search above: 65 requests" in with_ceiling, with_ceiling
    assert outcome.rendered().startswith("tke-playbook serve --max-batch 64 --max-wait-ms 2")


def test_one_setting_has_no_best_mark_and_no_raw_none():
    outcome, _ = _tune_quick(_search(closed=None, opened=30))
    table = outcome.table()
    assert len(table) == 1 and "best" not in table.columns  # nothing was compared
    assert not table.isna().any().any(), table.to_dict("records")
    # the server started here decides its workers by the one rule (`tke-playbook serve --workers`' default)
    assert table["workers"].tolist() == [f"default ({default_workers()})"]


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 2), (16, 2)])
def test_default_workers_follow_the_server_rule(cores, workers):
    # the server's documented default (`--workers`: 2 when there are 2 or more cores), from the one owner
    tuning = capacity.LocalTuning([(capacity.LocalSettings(), _search(None, 10))], baseline=True, cores=cores)
    assert tuning.table()["workers"].tolist() == [f"default ({workers})"]
    assert default_workers(cores) == workers


def test_several_settings_say_who_measured_what_and_mark_the_best(monkeypatch):
    others = {capacity.LocalSettings(max_batch=16, max_wait_ms=0.5): _search(30, 20, rate=70.0),
              capacity.LocalSettings(workers=1): _search(30, 12, rate=50.0)}
    monkeypatch.setattr(local_tuning, "measure_local", lambda settings, *_, **__: others[settings])
    err = io.StringIO()
    outcome = capacity.tune_local(200.0, baseline=_search(None, 57), candidates=list(others),
                                  progress=PlainReporter(io.StringIO(), err), cores=2)
    line = err.getvalue().strip().splitlines()[-1]
    assert "3 settings measured" in line and "the rate search above: 57 requests" in line, line
    assert "the tuning: 92 requests" in line, line  # 30 + 20 + 30 + 12 sent by the two fresh servers' searches
    table = outcome.table()
    assert table["best"].tolist() == [False, True, False]
    assert table["workers"].tolist() == ["default (2)", "default (2)", 1]


def test_defaults_measured_by_the_tuning_itself_say_so(monkeypatch):
    monkeypatch.setattr(local_tuning, "measure_local", lambda settings, *_, **__: _search(20, 14))
    err = io.StringIO()
    outcome = capacity.tune_local(200.0, candidates=[], progress=PlainReporter(io.StringIO(), err), cores=2)
    line = err.getvalue().strip().splitlines()[-1]
    assert "measured only the defaults (the tuning: 34 requests)" in line, line
    assert "quick mode" not in line and "best" not in outcome.table().columns
