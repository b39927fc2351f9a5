"""Issue 20 item 4 and issue 21 item 9 (capacity parts): one definition of the sustainable rate used by the search,
the plan and the replay; numbers that cannot contradict each other; server-side time accounted as vLLM does;
and the capacity library's public functions refusing what cannot work with one line naming the field."""

from __future__ import annotations

import asyncio
import math
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tke_playbook import capacity, loadgen
from tke_playbook.capacity import LocalSettings, QueryLoad, SustainableRate
from tke_playbook.errors import InvalidSpecError
from tke_playbook.localserver.batcher import Batcher
from tke_playbook.localserver.metrics import ServerMetrics
from tke_playbook.loadgen import promtext

sys.path.insert(0, str(Path(__file__).parent))
from fake_embedding_server import FakeEmbeddingServer  # noqa: E402


# --- server-side time (vLLM's RUNNING phase) ----------------------------------------------------------------


def test_server_inference_time_never_exceeds_the_request_time():
    """vLLM's request_inference_time_seconds is the RUNNING phase: from the first scheduled step to the end, wall
    time. A request whose inputs ran as two batches at once on two workers was charged the sum of both batches,
    so 'server inference mean ms' came out above the client's own latency (issue 20 item 4)."""
    metrics = ServerMetrics("m")

    def encode(rows):
        time.sleep(0.2)
        return np.ones((len(rows), 4), dtype=np.float32)

    async def main():
        batcher = Batcher(encode, max_batch=8, max_wait_s=0.01, workers=2, metrics=metrics)
        await batcher.start()
        began = time.perf_counter()
        await batcher.submit([[1, 2, 3]] * 16)  # 16 inputs: two batches of 8, on two workers at once
        took = time.perf_counter() - began
        await batcher.close()
        return took

    took = asyncio.run(main())
    parsed = promtext.parse(metrics.render())
    inference = promtext.histogram(parsed, "vllm:request_inference_time_seconds")
    e2e = promtext.histogram(parsed, "vllm:e2e_request_latency_seconds")
    assert inference.count == 1 and e2e.count == 1
    assert inference.sum <= e2e.sum + 1e-6 <= took + 1e-3, (inference.sum, e2e.sum, took)


# --- one definition of the sustainable rate; no contradictions -------------------------------------------------


def _closed_summary(peak: float, tokens: int = 8) -> pd.DataFrame:
    return pd.DataFrame([{"concurrency": 4.0, "input_tokens": tokens, "inputs": 1, "requests": 50, "errors": 0,
                          "error_rate": 0.0, "req_per_s": peak, "embeddings_per_s": peak, "tokens_per_s": peak * tokens,
                          "latency_mean_ms": 5.0, "p50_ms": 5.0, "p90_ms": 6.0, "p99_ms": 8.0}])


def test_the_search_offers_no_more_than_the_closed_loop_peak_of_the_same_shape():
    """Issue 20 item 4: 06 showed a closed-loop peak of 52.9 req/s and a sustainable rate of 94.1 req/s for the
    same short single requests - the rate came from a second closed-loop run and was the offered rate of a short
    level, not what the server answered. Now the search reuses the sweep's peak for that shape."""
    with FakeEmbeddingServer() as srv:
        closed = loadgen.run_closed_loop(srv.url, "m", [1, 4], None, [8], max_duration_s=0.3)
        search = capacity.find_sustainable_rate(srv.url, "m", 60_000, input_tokens=8, ceiling_from=closed.summary,
                                                fractions=(0.5, 1.0), level_s=0.2, min_requests=10)
    peak = float(closed.summary["req_per_s"].max())
    assert search.ceiling_rps == peak and search.closed is None  # the sweep's own number, not a second one
    assert (search.opened.summary["rate"] <= peak + 0.01).all()
    assert search.sustainable.rate <= min(peak, float(search.opened.summary["req_per_s"].max()))


def test_an_open_loop_answering_more_than_the_closed_loop_peak_is_capped_and_said():
    with FakeEmbeddingServer() as srv:
        search = capacity.find_sustainable_rate(srv.url, "m", 60_000, input_tokens=8,
                                                ceiling_from=_closed_summary(20.0), fractions=(1.5,), level_s=0.3,
                                                min_requests=10)
    assert search.sustainable.rate == 20.0 and "more than the closed-loop ceiling" in search.notes[0]


def test_the_replay_uses_the_planned_shape_and_target_and_says_what_to_do():
    planned = SustainableRate(20.0, 50.0, 100.0, 60.0, 480.0, 8, 3)  # 8 tokens x 3 inputs per request, 100 ms
    with FakeEmbeddingServer(delay_s=0.3) as srv:  # every answer takes 300 ms: the 100 ms target cannot hold
        report, result = capacity.replay(srv.url, "m", planned, duration_s=0.5, warmup_requests=0)
    assert {len(r["inputs"]) for r in srv.requests} == {3} and {len(r["inputs"][0].split()) for r in srv.requests} == {8}
    assert report.target_ms == 100.0 and not report.held and report.shape.startswith("8 tokens x 3 input")
    text = str(report)
    assert text.startswith("replay DID NOT HOLD") and "what to do: plan more replicas" in text
    assert "relax the target" in text and "tuned settings" in text
    assert report.held == capacity.level_holds(result.summary.iloc[0], 100.0)  # the same rule as the search


# --- refused at the public boundary (issue 21 item 9, capacity parts) ----------------------------------------


@pytest.mark.parametrize("summary, field", [
    (pd.DataFrame(columns=["rate", "input_tokens", "requests", "errors", "error_rate", "req_per_s",
                           "embeddings_per_s", "tokens_per_s", "p99_ms"]), "summary"),
    (_closed_summary(10.0).drop(columns="p99_ms"), "summary"),
    ([{"rate": 1.0}], "summary"),
])
def test_sustainable_rate_refuses_what_is_not_a_summary(summary, field):
    with pytest.raises(InvalidSpecError) as caught:
        capacity.sustainable_rate(summary, 200)
    assert caught.value.field == field and "\n" not in str(caught.value)


def test_no_nan_figures_from_a_level_that_answered_nothing():
    """A level whose rate reads 0 req/s (nothing answered in its wall time) gave a plan of NaN embeddings/s."""
    opened = pd.DataFrame([{"rate": r, "input_tokens": 8, "inputs": 1, "requests": 30, "errors": 0, "error_rate": 0.0,
                            "req_per_s": got, "embeddings_per_s": got, "tokens_per_s": got * 8, "latency_mean_ms": 9.0,
                            "p50_ms": 8.0, "p90_ms": 9.0, "p99_ms": 10.0} for r, got in ((5.0, 5.0), (10.0, 0.0))])
    found = capacity.sustainable_rate(opened, 200)
    assert found.rate == 5.0 and math.isfinite(found.tokens_per_s) and math.isfinite(found.embeddings_per_s)
    assert capacity.sustainable_rate(opened.iloc[1:], 200) is None


@pytest.mark.parametrize("call, field", [
    (lambda: capacity.replay("http://127.0.0.1:9", "m", math.inf, 200), "rate"),
    (lambda: capacity.replay("http://127.0.0.1:9", "m", 1e9, 200), "rate"),
    (lambda: capacity.replay("http://127.0.0.1:9", "m", 10.0, 200, duration_s=-5), "duration_s"),
    (lambda: capacity.plan_capacity(QueryLoad(300, 200), SustainableRate(1e-6, 1, 200, 1e-6, 1e-6, 8, 1),
                                    "PNV5b.8XLARGE96"), "per_replica"),
    (lambda: capacity.plan_capacity(QueryLoad(300, 200), SustainableRate(10, 1, 200, 10, 80, 8, 1),
                                    "PNV5b.8XLARGE96", min_replicas=1e30), "min_replicas"),
    (lambda: LocalSettings(workers=-3), "workers"),
    (lambda: LocalSettings(max_batch=10**9), "max_batch"),
])
def test_absurd_arguments_are_refused_with_one_line_naming_the_field(call, field):
    with pytest.raises(InvalidSpecError) as caught:
        call()
    message = str(caught.value)
    assert caught.value.field == field and field in message and "\n" not in message


def test_open_loop_arrivals_are_drawn_as_they_are_due():
    """replay(rate=1e9) asked numpy for every arrival of the run up front (112 GiB); a long run at the highest
    rate allowed must cost the same memory as a short one."""
    with FakeEmbeddingServer() as srv:
        tracemalloc.start()
        result = loadgen.run_open_loop(srv.url, "m", [loadgen.runner.MAX_RATE], duration_s=3600, input_tokens=[4],
                                       max_duration_s=0.3, drain_s=2, scrape_metrics=False, max_connections=8)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MiB for {len(result.records)} requests"
    assert "stopped sending at its 0.3 s time budget" in result.summary["note"].iloc[0]


# --- 06's GPU projection: each load says its own tokens/s, the total once; estimates not over-precise ----------

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PARAMS = 22_713_216  # the model's parameter count (its safetensors header), as the catalog records it


def test_each_load_of_a_projection_says_its_own_tokens_per_s_and_the_total_appears_once():
    """06 showed 'load: 200.0 queries/s ... + 5,000,000 documents/day x 32 tokens ... = 1,852 tokens/s' over
    'needed: 8,652 tokens/s': the 1,852 was the documents' part only, and read as the whole load."""
    queries = 200 * 34                       # 200 queries/s x 34 prompt tokens each
    documents = 5_000_000 * 32 / (24 * 3600)  # 5M documents/day x 32 tokens over 24 h = 1,851.85 tokens/s
    projection = capacity.project_gpu([QueryLoad(200, 200), capacity.DocumentLoad(5_000_000, 32)], MINILM,
                                      "PNV5b.8XLARGE96", tokens_per_query=34)
    rows = projection.table()
    loads = list(rows.loc[rows["item"] == "load", "value"])
    assert len(loads) == 2 and loads[0].startswith("200.0 queries/s") and loads[1].startswith("5,000,000 documents")
    assert loads[0].endswith(f"= {queries:,.0f} tokens/s") and loads[1].endswith(f"= {documents:,.0f} tokens/s")
    total = f"{queries + documents:,.0f} tokens/s"  # 8,652
    assert rows.set_index("item").loc["needed", "value"].startswith(total)
    assert str(projection).count(total) == 1, str(projection)


def test_the_projection_shows_its_estimates_to_three_significant_figures():
    """'per GPU 1,610,093 tokens/s' claimed seven digits of an estimate built on a 61% MFU borrowed from another
    model: per GPU = MFU x 119.5 TFLOP/s (the L20's spec sheet) / (2 x params), MFU = 34,000 tokens/s x 2 x 7.11 B
    params / 790 TFLOP/s (facts.md section 9)."""
    mfu = 34_000 * 2 * 7_110_660_096 / 790e12
    per_gpu = mfu * 119.5e12 / (2 * MINILM_PARAMS)  # 1,610,093.6
    three = float(f"{per_gpu:.3g}")                  # 1,610,000
    projection = capacity.project_gpu(QueryLoad(200, 200), MINILM, "PNV5b.8XLARGE96", tokens_per_query=34)
    shown = projection.table().set_index("item").loc["per GPU (estimate)", "value"]
    assert shown.startswith(f"{three:,.0f} tokens/s = 61% MFU") and f"{per_gpu:,.0f}" not in str(projection)
    assert projection.tokens_per_s_per_gpu == pytest.approx(per_gpu)  # rounded when shown, not when computed


@pytest.mark.parametrize("value, shown", [(1_610_093.6, "1,610,000"), (0.044466, "0.0445"), (480.0, "480"),
                                          (14.4, "14.4"), (14.0, "14"), (99.95, "100"), (-2345.6, "-2,350"),
                                          (0.000123456, "0.000123"), (0.0, "0")])
def test_an_estimate_reads_with_three_significant_figures_and_no_exponent(value, shown):
    from tke_playbook.reporting import estimate_text

    assert estimate_text(value) == shown


# --- 05 and 06 price the local server alike --------------------------------------------------------------------


def _local_plan(prices=None):
    from tke_playbook.hostenv import load_prices

    per_replica = SustainableRate(20.0, 120.0, 200.0, 20.0, 680.0, 34, 1)  # 20 req/s x 34 tokens per replica
    plan = capacity.plan_capacity(QueryLoad(200, 200), per_replica, served_on=capacity.local_server(MINILM),
                                  prices=load_prices() if prices is None else prices)
    return plan, per_replica


def test_06s_local_plan_prices_a_replica_as_the_cpu_node_05_prices_the_same_server_as(home):
    """06 said 'not priced: the price table holds GPU node types only' while the table holds SA5.LARGE8 and 05
    prices this very server as one SA5.LARGE8 node. Both now price one local server as one node of the same type
    at the same hourly price, so 06's cost per day and 05's cost per million tokens agree."""
    from tke_playbook.playbook import open_target
    from tke_playbook.scorecard import Throughput, cost_per_million_tokens, price_table

    node = open_target("local").evaluation.price_node()  # what 05 prices the local server's throughput as
    hourly = float(price_table().loc[node, "hourly_price"])  # 05's price table
    plan, per_replica = _local_plan()
    assert plan.replicas == 10 and plan.priced_as == node and plan.node_type is None and plan.gpus == 0
    assert plan.cost_per_day == pytest.approx(10 * 24 * hourly)
    cost = plan.table().set_index("item").loc["cost", "value"]
    assert f"{10 * 24 * hourly:,.0f} CNY/day" in cost and f"10 x {node}" in cost and "CPU node type" in cost
    assert "illustrative price" in cost and "not priced" not in cost and "GPU node types only" not in cost
    # one replica-day of 06 at its per-replica tokens/s costs what 05's cost per million tokens says
    per_million = plan.cost_per_day / plan.replicas / (per_replica.tokens_per_s * 86_400) * 1e6
    assert per_million == pytest.approx(cost_per_million_tokens(Throughput("s", per_replica.tokens_per_s, node),
                                                                hourly, 0))


def test_06s_local_plan_uses_your_price_and_says_what_to_add_when_there_is_none():
    from tke_playbook.specs.prices import LOCAL_PRICE_NODE, NodePrice

    plan, _ = _local_plan({LOCAL_PRICE_NODE: NodePrice(LOCAL_PRICE_NODE, 1.5, "USD", True, "from my file")})
    cost = plan.table().set_index("item").loc["cost", "value"]
    assert plan.cost_per_day == 10 * 24 * 1.5 and cost.startswith("360 USD/day:") and "illustrative" not in cost
    unpriced, _ = _local_plan({})
    cost = unpriced.table().set_index("item").loc["cost", "value"]
    assert unpriced.cost_per_day is None and LOCAL_PRICE_NODE in cost and "prices file" in cost


def test_one_owner_of_the_node_type_a_local_server_is_priced_as():
    from tke_playbook import scorecard
    from tke_playbook.scorecard.htmlreport import DEFAULT_NODE_TYPE
    from tke_playbook.specs.hardware import get_node_type
    from tke_playbook.specs.prices import LOCAL_PRICE_NODE

    assert scorecard.LOCAL_PRICE_NODE is LOCAL_PRICE_NODE and DEFAULT_NODE_TYPE is LOCAL_PRICE_NODE
    assert get_node_type(LOCAL_PRICE_NODE).gpu is None  # a CPU node: the local server is a CPU server


# --- issue 22: a rate search that found no knee, or took a saturating level ----------------------------------


def _one_worker_server(capacity_rps: float):
    """A stand-in for the open loop against a server that answers one request at a time in ``1 / capacity_rps``
    seconds: a single-server queue computed, not timed (arrivals evenly spaced at the offered rate), so an offered
    rate above ``capacity_rps`` builds a queue whose wait grows with the level's length."""
    async def run(url, model, rates, *, requests=None, duration_s=None, input_tokens=(8,), **_):
        rate = float(rates[0])
        count = requests if requests is not None else math.ceil(rate * duration_s)
        free, rows = 0.0, []
        for i in range(count):
            start = i / rate
            free = max(free, start) + 1 / capacity_rps
            rows.append({"start_s": start, "latency_s": free - start, "status": 200, "ok": True,
                         "prompt_tokens": input_tokens[0], "input_tokens": input_tokens[0], "concurrency": math.nan,
                         "rate": rate, "error": None, "inputs": 1})
        records = pd.DataFrame(rows)
        summary, notes = loadgen.summary.explain_levels(loadgen.summarize(records), records)
        return loadgen.LoadResult("open", records, summary, None, notes)
    return run


def test_a_saturating_level_is_not_the_sustainable_rate(monkeypatch):
    """Issue 22: 06 (local, QUICK) planned from 66.5 req/s - the highest level tried, offered at the 77.9 req/s
    closed-loop ceiling, where the server answered only 66.5 (85% of it: the delivery rule passes) and the 1 s level
    was too short for the queue to reach p99 - and the replay at that rate missed the target. A server of capacity
    mu offered more than mu builds a queue without bound, so the plan must start from a level offered below mu."""
    mu = 70.0
    monkeypatch.setattr(capacity.search, "run_open_loop_async", _one_worker_server(mu))
    search = capacity.find_sustainable_rate("http://127.0.0.1:9", "m", 200, input_tokens=8,
                                            ceiling_from=_closed_summary(78.0), level_s=1.0)
    levels = search.opened.summary.sort_values("rate")
    top = levels.iloc[-1]
    assert top["rate"] == 78.0 and capacity.level_holds(top, 160.0)  # the rule alone would take it
    assert top["req_per_s"] < top["rate"]  # ... though the server fell behind there
    assert search.sustainable.level < mu and search.sustainable.level == levels["rate"][levels["rate"] < mu].max()
    assert search.planning_rate == search.sustainable and search.sustainable.held
    assert any("saturating" in n and "78.0 req/s" in n for n in search.notes), search.notes


def test_a_search_whose_every_level_held_says_the_rate_is_a_lower_bound(monkeypatch):
    """Issue 22: when no level broke the target the search never found the knee; its rate is a lower bound."""
    monkeypatch.setattr(capacity.search, "run_open_loop_async", _one_worker_server(1000.0))
    search = capacity.find_sustainable_rate("http://127.0.0.1:9", "m", 200, input_tokens=8,
                                            ceiling_from=_closed_summary(78.0), fractions=(0.25, 0.5), level_s=1.0)
    assert search.sustainable.level == search.opened.summary["rate"].max() == 39.0  # the highest level held
    assert any("no knee found" in n and "lower bound" in n for n in search.notes), search.notes


def test_a_search_that_found_the_knee_says_nothing_of_a_lower_bound(monkeypatch):
    monkeypatch.setattr(capacity.search, "run_open_loop_async", _one_worker_server(70.0))
    search = capacity.find_sustainable_rate("http://127.0.0.1:9", "m", 100, input_tokens=8,
                                            ceiling_from=_closed_summary(78.0), level_s=1.0)
    broke = search.opened.summary.sort_values("rate").iloc[-1]
    assert not capacity.level_holds(broke, 80.0) and search.sustainable.level < broke["rate"]  # the knee: 78
    assert not any("no knee" in n or "saturating" in n for n in search.notes), search.notes


def test_the_replay_says_plainly_how_much_was_answered():
    report = capacity.ReplayReport(66.5, 64.2, 225.7, 200.0, 0, 200, 0.15, 65.1, "32 tokens x 1 input(s)")
    assert "answered 64.2 req/s of 65.1 drawn (1% short; up to 15% short allowed)" in str(report)
    over = capacity.ReplayReport(20.0, 21.0, 50.0, 200.0, 0, 60, 0.15, 20.5)
    assert "answered 21.0 req/s of 20.5 drawn (none short; up to 15% short allowed)" in str(over)
    plain = capacity.ReplayReport(20.0, 19.0, 50.0, 200.0, 0, 60, 0.15)  # no drawn rate: against the offered one
    assert "answered 19.0 req/s of 20.0 offered (5% short; up to 15% short allowed)" in str(plain)
