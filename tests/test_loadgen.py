"""The load generator: every request accounted for, faults recorded, Poisson arrivals, summaries, engines."""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_embedding_server (importlib mode)
from fake_embedding_server import FakeEmbeddingServer  # noqa: E402

from tke_playbook import loadgen  # noqa: E402
from tke_playbook.errors import InvalidSpecError  # noqa: E402
from tke_playbook.loadgen.engine import describe_error, prompt_tokens  # noqa: E402
from tke_playbook.loadgen.rawhttp import _Connection  # noqa: E402

ENGINES = [pytest.param("raw", id="raw-engine"), pytest.param("aiohttp", id="aiohttp-engine")]


@pytest.mark.parametrize("engine", ENGINES)
def test_1000_requests_at_64_with_10_percent_errors_lose_none(engine):
    kinds = ("429", "503", "500", "close")
    with FakeEmbeddingServer(error_rate=0.1, error_kinds=kinds, seed=7) as srv:
        result = loadgen.run_closed_loop(srv.url, "fake-model", [64], 1000, [8], engine=engine, timeout=10)
    records = result.records
    injected = sum(1 for f in srv.faults if f in kinds)
    assert len(srv.faults) == 1000 and 50 < injected < 150
    assert len(records) == 1000 and list(records.columns) == list(loadgen.RECORD_COLUMNS)
    assert int(records["ok"].sum()) + int((~records["ok"]).sum()) == 1000
    assert int((~records["ok"]).sum()) == injected
    errors = records[~records["ok"]]
    assert errors["error"].notna().all() and records.loc[records["ok"], "error"].isna().all()
    assert set(errors["status"]) <= {0, 429, 500, 503}
    assert (errors["status"] == 0).sum() == srv.faults.count("close")
    row = result.summary.iloc[0]
    assert row["requests"] == 1000 and row["errors"] == injected
    assert row["error_rate"] == pytest.approx(injected / 1000)
    assert (records.loc[records["ok"], "prompt_tokens"] == 8).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_timeouts_are_records_with_status_0(engine):
    with FakeEmbeddingServer(script=["slow", "slow"], slow_s=3.0) as srv:
        result = loadgen.run_closed_loop(srv.url, "m", [2], 6, [4], engine=engine, timeout=0.8,
                                         scrape_metrics=False)
    records = result.records
    assert len(records) == 6 and (~records["ok"]).sum() == 2
    assert (records.loc[~records["ok"], "status"] == 0).all()
    assert records.loc[~records["ok"], "error"].str.contains("imeout").all()


@pytest.mark.parametrize("engine", ENGINES)
def test_nothing_listening_gives_error_records_not_a_crash(engine):
    with FakeEmbeddingServer() as srv:
        url = srv.url
    result = loadgen.run_closed_loop(url, "m", [4], 10, [4], engine=engine, timeout=2)
    assert len(result.records) == 10 and not result.records["ok"].any()
    assert (result.records["status"] == 0).all() and result.summary.iloc[0]["error_rate"] == 1.0
    assert result.notes and "metrics" in result.notes[0]


def test_time_bound_stops_issuing_but_keeps_every_issued_request():
    with FakeEmbeddingServer(delay_s=0.05) as srv:
        result = loadgen.run_closed_loop(srv.url, "m", [2], 1000, [4], max_duration_s=0.3, scrape_metrics=False)
    assert 0 < len(result.records) < 1000 and len(result.records) == len(srv.requests)


def test_open_loop_arrivals_are_poisson_and_all_recorded():
    with FakeEmbeddingServer() as srv:
        result = loadgen.run_open_loop(srv.url, "m", [200.0], requests=300, input_tokens=[4], seed=3)
    records = result.records.sort_values("start_s")
    assert len(records) == 300 and records["ok"].all() and len(srv.requests) == 300
    assert records["concurrency"].isna().all() and (records["rate"] == 200.0).all()
    gaps = np.diff(records["start_s"].to_numpy())
    assert 0.7 / 200 < gaps.mean() < 1.3 / 200
    assert 0.7 < gaps.std() / gaps.mean() < 1.3  # exponential gaps: coefficient of variation near 1
    assert list(result.summary.columns[:2]) == ["rate", "input_tokens"]


def test_open_loop_count_from_duration_and_seeded_schedule():
    with FakeEmbeddingServer() as srv:
        a = loadgen.run_open_loop(srv.url, "m", [100.0, 50.0], duration_s=0.2, input_tokens=[4], seed=1)
        b = loadgen.run_open_loop(srv.url, "m", [100.0], duration_s=0.2, input_tokens=[4], seed=1)
    assert a.records.groupby("rate").size().to_dict() == {50.0: 10, 100.0: 20}
    first = a.records[a.records["rate"] == 100.0]["start_s"].to_numpy()
    second = b.records["start_s"].to_numpy()
    np.testing.assert_allclose(np.diff(first), np.diff(second), atol=1e-9)


def test_metrics_scraped_before_and_after_each_level():
    with FakeEmbeddingServer() as srv:
        result = loadgen.run_closed_loop(srv.url, "m", [1, 4], 20, [4])
    assert list(result.server["server_requests"]) == [20.0, 20.0]
    assert list(result.server["server_prompt_tokens"]) == [80.0, 80.0]
    table = result.table()
    assert len(table) == 2 and {"p50_ms", "server_p50_ms"} <= set(table.columns)


def test_api_key_is_sent_and_a_wrong_key_is_counted():
    with FakeEmbeddingServer(api_key="k") as srv:
        good = loadgen.run_closed_loop(srv.url, "m", [2], 4, [4], api_key="k", scrape_metrics=False)
        bad = loadgen.run_closed_loop(srv.url, "m", [2], 4, [4], scrape_metrics=False)
    assert good.records["ok"].all()
    assert (bad.records["status"] == 401).all() and bad.records["error"].str.contains("401").all()


def test_sync_wrapper_works_inside_a_running_loop():
    async def notebook_cell():
        with FakeEmbeddingServer() as srv:
            return loadgen.run_closed_loop(srv.url, "m", [2], 5, [4], scrape_metrics=False)

    assert len(asyncio.run(notebook_cell()).records) == 5


@pytest.mark.parametrize("kwargs,match", [
    pytest.param({"concurrency_levels": [0]}, "positive", id="concurrency-zero"),
    pytest.param({"input_tokens": [1.5]}, "whole numbers", id="fractional-tokens"),
    pytest.param({"engine": "curl"}, "'raw' or 'aiohttp'", id="unknown-engine"),
    pytest.param({"url": "127.0.0.1:8000"}, "not an HTTP URL", id="url-without-scheme"),
])
def test_bad_arguments_are_refused(kwargs, match):
    arguments = {"url": "http://127.0.0.1:9", "model": "m", "requests_per_level": 1, **kwargs}
    with pytest.raises(InvalidSpecError, match=match):
        loadgen.run_closed_loop(**arguments)


def test_open_loop_needs_a_bound():
    with pytest.raises(InvalidSpecError, match="duration_s or requests"):
        loadgen.run_open_loop("http://127.0.0.1:9", "m", [1.0], duration_s=None)


def hand_made_records():
    rows = [  # concurrency 1: 4 requests over 2 s, one error; concurrency 2: 2 requests over 1 s
        (0.0, 0.1, 200, True, 10, 8, 1.0), (0.5, 0.2, 200, True, 10, 8, 1.0), (1.0, 0.3, 503, False, None, 8, 1.0),
        (1.6, 0.4, 200, True, 12, 8, 1.0), (3.0, 1.0, 200, True, 10, 8, 2.0), (3.0, 0.5, 200, True, 10, 8, 2.0)]
    frame = pd.DataFrame(rows, columns=["start_s", "latency_s", "status", "ok", "prompt_tokens", "input_tokens",
                                        "concurrency"])
    frame["rate"] = math.nan
    frame["error"] = [None, None, "HTTP 503: busy", None, None, None]
    return frame


def test_summary_math_on_hand_made_records():
    summary = loadgen.summarize(hand_made_records()).set_index("concurrency")
    one, two = summary.loc[1.0], summary.loc[2.0]
    assert (one["requests"], one["errors"], one["error_rate"]) == (4, 1, 0.25)
    assert one["req_per_s"] == pytest.approx(3 / 2.0) and one["tokens_per_s"] == pytest.approx(32 / 2.0)
    assert one["latency_mean_ms"] == pytest.approx(700 / 3) and one["p50_ms"] == pytest.approx(200)
    assert one["p90_ms"] == pytest.approx(np.percentile([100, 200, 400], 90))
    assert two["req_per_s"] == pytest.approx(2.0) and two["p99_ms"] == pytest.approx(np.percentile([1000, 500], 99))
    assert list(summary.reset_index().columns) == ["concurrency", "input_tokens", *loadgen.SUMMARY_COLUMNS]


def test_summary_refuses_foreign_frames():
    with pytest.raises(ValueError, match="lack columns"):
        loadgen.summarize(pd.DataFrame({"latency": [1.0]}))


def test_headroom_warning_at_half_the_ceiling():
    summary = loadgen.summarize(hand_made_records())  # best 2 req/s
    assert loadgen.headroom_warning(summary, 3.0) is not None and "more than half" in \
        loadgen.headroom_warning(summary, 4.0)
    assert loadgen.headroom_warning(summary, 5.0) is None and loadgen.headroom_warning(summary, None) is None


def test_texts_of_chosen_length_are_deterministic():
    assert loadgen.make_text(50) == loadgen.make_text(50) != loadgen.make_text(50, variant=1)
    assert len(loadgen.make_text(50).split()) == 50
    bodies = loadgen.encoded_bodies("m", 10, batch_size=3, variants=4)
    assert len(set(bodies)) == 4 and b'"encoding_format":"base64"' in bodies[0]
    with pytest.raises(InvalidSpecError, match="at least 1"):
        loadgen.make_text(0)


def test_prompt_tokens_and_error_text_from_raw_answers():
    assert prompt_tokens(b'{"data":[],"usage":{"prompt_tokens": 17,"total_tokens":17}}') == 17
    assert prompt_tokens(b'{"data":[]}') is None
    assert describe_error(400, b'{"object":"error","message":"too long","code":400}') == "HTTP 400: too long"
    assert describe_error(502, b"<html>bad gateway</html>") == "HTTP 502: <html>bad gateway</html>"


class _Transport:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


@pytest.mark.parametrize("pieces,body,closes", [
    pytest.param([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", b"lo"], b"hello", False,
                 id="content-length-split"),
    pytest.param([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n", b"2\r\nlo\r\n0\r\n\r\n"],
                 b"hello", False, id="chunked"),
    pytest.param([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello"], b"hello", True, id="read-until-close"),
    pytest.param([b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"], b"hi", True, id="http-1.0-closes"),
    pytest.param([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"], b"hi", True,
                 id="connection-close-header"),
])
def test_raw_connection_parses_answers(pieces, body, closes):
    async def go():
        conn = _Connection()
        conn.connection_made(_Transport())
        waiter = asyncio.get_running_loop().create_future()
        conn.expect(waiter)
        for piece in pieces:
            conn.data_received(piece)
        if not waiter.done():
            conn.connection_lost(None)
        return await waiter, conn.closed

    assert asyncio.run(go()) == ((200, body), closes)


def test_null_server_and_ceiling_measurement():
    with loadgen.start_null_server() as server:
        result = loadgen.run_closed_loop(server.url, "null", [4], 50, [6])
    assert result.records["ok"].all() and (result.records["prompt_tokens"] == 6).all()
    ceiling = loadgen.measure_ceiling(concurrency=4, requests=200)
    assert ceiling > 0 and math.isfinite(ceiling)


def test_summary_keeps_records_without_a_level():
    # hand-built records with neither concurrency nor rate must still be counted, not dropped by groupby
    frame = hand_made_records()
    frame["concurrency"] = math.nan
    summary = loadgen.summarize(frame)
    assert len(summary) == 1 and summary.iloc[0]["requests"] == 6 and summary.iloc[0]["errors"] == 1


def test_null_server_that_cannot_start_says_why():
    from tke_playbook.errors import ServerError

    with pytest.raises(ServerError, match="(?s)did not start: .*Invalid argument"):
        loadgen.start_null_server(cpu=100_000)  # no such CPU: the child fails before listening
