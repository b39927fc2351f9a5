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
    assert len(records) == 1000 and list(records.columns) == [*loadgen.RECORD_COLUMNS, "inputs"]
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
    assert any("metrics" in note for note in result.notes)


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
        # the send bound (1.25 s for 0.2 s) is not what this test is about: a loaded machine fell that far behind
        a = loadgen.run_open_loop(srv.url, "m", [100.0, 50.0], duration_s=0.2, input_tokens=[4], seed=1,
                                  max_duration_s=60)
        b = loadgen.run_open_loop(srv.url, "m", [100.0], duration_s=0.2, input_tokens=[4], seed=1, max_duration_s=60)
    assert a.records.groupby("rate").size().to_dict() == {50.0: 10, 100.0: 20}
    # records come in the order answers arrived (a loaded machine reorders them): the schedule is the sorted starts
    first = np.sort(a.records[a.records["rate"] == 100.0]["start_s"].to_numpy())
    second = np.sort(b.records["start_s"].to_numpy())
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
    pytest.param({"progress": "yes"}, "progress must be", id="progress-not-a-bar"),
    pytest.param({"batch_size": [1, 0]}, "positive", id="batch-size-zero"),
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


# --- embedding-shaped workloads (issue 16) ------------------------------------------------------------------


class _Bar:
    def __init__(self):
        self.count, self.closed, self.labels = 0, False, []

    def update(self, n=1):
        self.count += n

    def set_postfix_str(self, text):
        self.labels.append(text)

    def close(self):
        self.closed = True


def test_sweep_over_length_inputs_and_concurrency():
    bar = _Bar()
    with FakeEmbeddingServer() as srv:
        result = loadgen.run_closed_loop(srv.url, "m", [1, 4], 12, [8, 32], batch_size=[1, 5], progress=bar)
    summary = result.summary
    assert len(summary) == 2 * 2 * 2 and list(summary.columns[:3]) == ["concurrency", "input_tokens", "inputs"]
    assert set(map(tuple, summary[["concurrency", "input_tokens", "inputs"]].to_numpy().tolist())) == {
        (c, t, i) for c in (1.0, 4.0) for t in (8, 32) for i in (1, 5)}
    # the server really received requests of 5 inputs of 32 words, and usage counted their words
    assert sum(1 for r in srv.requests if len(r["inputs"]) == 5 and len(r["inputs"][0].split()) == 32) == 24
    five = summary[(summary["inputs"] == 5) & (summary["input_tokens"] == 32)]
    assert np.allclose(five["embeddings_per_s"], 5 * five["req_per_s"])
    assert np.allclose(five["tokens_per_s"], 5 * 32 * five["req_per_s"])  # usage.prompt_tokens of 5 x 32 words
    assert bar.count == 96 and bar.closed and any("c=4" in label for label in bar.labels)
    assert set(result.server["inputs"]) == {1, 5} and len(result.table()) == 8


def test_progress_true_draws_a_tqdm_bar(capsys):
    with FakeEmbeddingServer() as srv:
        loadgen.run_open_loop(srv.url, "m", [200.0], requests=20, input_tokens=[4], progress=True,
                              scrape_metrics=False)
    assert "open loop" in capsys.readouterr().err


def test_mixed_workload_reports_each_stream_against_its_target():
    streams = [loadgen.Stream("bulk", 20.0, 64, inputs=8, p99_target_ms=60_000),
               loadgen.Stream("query", 100.0, 4, p99_target_ms=0.001)]  # an impossible target: must be "missed"
    with FakeEmbeddingServer() as srv:
        result = loadgen.run_mixed(srv.url, "m", streams, duration_s=0.5)
    records = result.records
    assert records.groupby("stream").size().to_dict() == {"bulk": 10, "query": 50}
    assert set(records.loc[records["stream"] == "bulk", "inputs"]) == {8}
    assert list(result.summary["stream"]) == ["bulk", "query"]
    bulk = result.summary.set_index("stream").loc["bulk"]
    assert bulk["embeddings_per_s"] == pytest.approx(8 * bulk["req_per_s"])
    targets = result.targets().set_index("stream")
    assert targets.loc["bulk", "met"] is True or targets.loc["bulk", "met"] == True  # noqa: E712
    assert targets.loc["query", "met"] == False  # noqa: E712
    shapes = {(len(r["inputs"]), len(r["inputs"][0].split())) for r in srv.requests}
    assert shapes == {(8, 64), (1, 4)}
    assert result.server is not None and result.server["server_requests"].iloc[0] == 60


@pytest.mark.parametrize("kwargs,match", [
    pytest.param({"name": ""}, "name", id="no-name"),
    pytest.param({"rate": 0}, "rate", id="zero-rate"),
    pytest.param({"inputs": 2.5}, "whole", id="fractional-inputs"),
])
def test_bad_streams_are_refused(kwargs, match):
    with pytest.raises(InvalidSpecError, match=match):
        loadgen.Stream(**{"name": "q", "rate": 1.0, "input_tokens": 8, **kwargs})


# Key names of vllm/benchmarks/serve.py (vLLM) for a pooling backend: main_async's setup keys, the dict benchmark()
# returns for EmbedBenchmarkMetrics (input_lens and errors are dropped without --save-detailed), the e2el statistics
# of process_one_metric with the default --metric-percentiles 99, and client_queue_time with --max-concurrency.
VLLM_SETUP = ["date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate",
              "burstiness", "max_concurrency"]
VLLM_EMBED = ["duration", "completed", "total_input_tokens", "total_input_sequences", "request_throughput",
              "input_sequence_throughput", "total_token_throughput", "latencies", "queue_times", "mean_e2el_ms",
              "median_e2el_ms", "std_e2el_ms", "p99_e2el_ms"]
VLLM_QUEUE = ["mean_client_queue_time_ms", "median_client_queue_time_ms", "std_client_queue_time_ms",
              "p99_client_queue_time_ms"]


def test_results_load_with_the_keys_vllm_bench_serve_writes(tmp_path):
    import json

    with FakeEmbeddingServer(error_rate=0.2, error_kinds=("503",), seed=3) as srv:
        closed = loadgen.run_closed_loop(srv.url, "m", [4], 40, [16], batch_size=3)
        opened = loadgen.run_open_loop(srv.url, "m", [100.0], requests=30, input_tokens=[16])
    (path,) = loadgen.write_vllm_bench_json(closed.records, "org/m", tmp_path / "closed")
    loaded = json.loads(path.read_text())
    assert set(VLLM_SETUP + VLLM_EMBED + VLLM_QUEUE) <= set(loaded) and set(loadgen.VLLM_BENCH_KEYS) <= set(loaded)
    assert not {"input_lens", "errors"} & set(loaded)
    ok = closed.records[closed.records["ok"]]
    assert loaded["backend"] == "openai-embeddings" and loaded["request_rate"] == "inf"
    assert loaded["max_concurrency"] == 4 and loaded["num_prompts"] == 40 and loaded["completed"] == len(ok)
    assert loaded["total_input_sequences"] == 3 * len(ok) and loaded["total_input_tokens"] == 3 * 16 * len(ok)
    assert loaded["request_throughput"] == pytest.approx(loaded["completed"] / loaded["duration"])
    assert loaded["total_token_throughput"] == pytest.approx(loaded["total_input_tokens"] / loaded["duration"])
    assert loaded["p99_e2el_ms"] == pytest.approx(np.percentile(ok["latency_s"], 99) * 1000)
    assert loaded["median_e2el_ms"] == pytest.approx(np.median(ok["latency_s"]) * 1000)
    assert len(loaded["latencies"]) == len(ok) and path.name.startswith("00-openai-embeddings-infqps-concurrency4-m-")
    (open_path,) = loadgen.write_vllm_bench_json(opened.records, "m", tmp_path / "open", label="x")
    open_loaded = json.loads(open_path.read_text())
    assert open_loaded["request_rate"] == 100.0 and open_loaded["max_concurrency"] is None
    assert set(VLLM_SETUP + VLLM_EMBED) <= set(open_loaded) and not set(VLLM_QUEUE) & set(open_loaded)


_SCRAPE = """# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{{le="0.3",model_name="m"}} {n}
vllm:e2e_request_latency_seconds_bucket{{le="+Inf",model_name="m"}} {n}
vllm:e2e_request_latency_seconds_sum{{model_name="m"}} {e2e}
vllm:e2e_request_latency_seconds_count{{model_name="m"}} {n}
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{{le="+Inf",model_name="m"}} {n}
vllm:request_queue_time_seconds_sum{{model_name="m"}} {queue}
vllm:request_queue_time_seconds_count{{model_name="m"}} {n}
# TYPE vllm:request_inference_time_seconds histogram
vllm:request_inference_time_seconds_bucket{{le="+Inf",model_name="m"}} {n}
vllm:request_inference_time_seconds_sum{{model_name="m"}} {inference}
vllm:request_inference_time_seconds_count{{model_name="m"}} {n}
"""


def test_server_queue_and_inference_time_from_a_scrape_diff():
    from tke_playbook.loadgen.runner import _server_row

    before = _SCRAPE.format(n=10, e2e=1.0, queue=0.2, inference=0.7)
    after = _SCRAPE.format(n=30, e2e=3.0, queue=1.8, inference=1.1)  # 20 requests: 80 ms queue, 20 ms running
    row = _server_row(before, after, {"concurrency": 4.0})
    assert row["server_requests"] == 20
    assert row["server_queue_mean_ms"] == pytest.approx(80.0) and row["server_inference_mean_ms"] == pytest.approx(20)


def test_open_loop_sweeps_inputs_per_request_too():
    with FakeEmbeddingServer() as srv:
        result = loadgen.run_open_loop(srv.url, "m", [200.0], requests=10, input_tokens=[4], batch_size=[1, 3])
    assert result.summary[["rate", "inputs", "requests"]].to_dict("records") == [
        {"rate": 200.0, "inputs": 1, "requests": 10}, {"rate": 200.0, "inputs": 3, "requests": 10}]
    assert sorted(len(r["inputs"]) for r in srv.requests) == [1] * 10 + [3] * 10


def test_compact_table_is_narrow_drops_empty_server_quantiles_and_shows_integers_and_dashes():
    table = pd.DataFrame({
        "concurrency": [1.0, 4.0], "rate": [math.nan, math.nan], "input_tokens": [32, 32], "inputs": [1, 4],
        "requests": [20.0, 20.0], "errors": [0, 0], "error_rate": [0.0, 0.0], "req_per_s": [55.123, 130.456],
        "embeddings_per_s": [55.123, 521.8], "tokens_per_s": [1764.0, 16697.6], "latency_mean_ms": [18.1, 30.2],
        "p50_ms": [17.94, 29.51], "p90_ms": [20.0, 33.0], "p99_ms": [25.33, 40.71],
        "server_requests": [20.0, 20.0], "server_p50_ms": [math.nan, math.nan], "server_p90_ms": [math.nan, math.nan],
        "server_queue_mean_ms": [0.25, math.nan], "server_inference_mean_ms": [12.34, 20.5],
        "server_prompt_tokens": [660.0, 2640.0], "server_first_bucket_ms": [300.0, 300.0],
    })
    out = loadgen.compact_table(table)
    assert len(out.columns) <= 12, list(out.columns)
    assert not any("_" in c for c in out.columns), "headers must be able to wrap"
    assert not any("p50" in c and "server" in c for c in out.columns)  # all-NaN server quantiles are gone
    assert "offered req/s" not in out.columns  # closed loop: no rate
    assert out["concurrency"].tolist() == [1, 4] and str(out["concurrency"].dtype) == "Int64"
    assert out["requests"].tolist() == [20, 20]
    assert out["req/s"].tolist() == [55.1, 130.5]
    assert out["server queue mean ms"].tolist() == ["0.2", "–"]  # fixed decimals (issue 20: they varied by run)
    assert not out.astype(str).apply(lambda c: c.str.contains("nan|NaN|<NA>")).any().any()
