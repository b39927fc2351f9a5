"""Capacity: sustainable rate from sweeps, capacity plans with cost, MFU against spec peaks, tuning advice that
re-renders the plan, local tuning candidates, the node price table."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tke_playbook import capacity, hostenv
from tke_playbook.capacity import DocumentLoad, QueryLoad, SustainableRate
from tke_playbook.errors import InvalidSpecError
from tke_playbook.manifests.plan import build_plan
from tke_playbook.specs import prices
from tke_playbook.specs.hardware import peak_bf16_tflops
from tke_playbook.specs.serving import ServingChoices, resolve

E5 = "intfloat/e5-mistral-7b-instruct"
BGE = "BAAI/bge-m3"


def _open(rows):
    """Open-loop summary rows: (rate, achieved req/s, p99 ms, errors)."""
    return pd.DataFrame([{"rate": r, "input_tokens": 32, "inputs": 1, "requests": 100, "errors": e,
                          "error_rate": e / 100, "req_per_s": got, "embeddings_per_s": got, "tokens_per_s": got * 34,
                          "latency_mean_ms": p / 3, "p50_ms": p / 4, "p90_ms": p / 2, "p99_ms": p}
                         for r, got, p, e in rows])


def test_sustainable_rate_is_the_last_rate_before_the_knee():
    summary = _open([(10, 10, 40, 0), (20, 19.8, 60, 0), (30, 29.5, 150, 0), (40, 33, 900, 0), (50, 34, 120, 0)])
    found = capacity.sustainable_rate(summary, 200)  # limit 160 ms with the default 20% margin
    # the level offered 30 req/s and held; the rate is never more than the server answered there (29.5)
    assert found.rate == 29.5 and found.level == 30 and found.p99_ms == 150 and found.kind == "open"
    assert found.tokens_per_s == pytest.approx(29.5 * 34) and found.embeddings_per_s == pytest.approx(29.5)
    assert capacity.sustainable_rate(summary, 200, margin=0.5).rate == 19.8  # limit 100 ms
    assert capacity.sustainable_rate(summary, 30) is None


def test_errors_and_undelivered_rates_do_not_count():
    with_errors = _open([(10, 10, 40, 0), (20, 19, 50, 3)])
    assert capacity.sustainable_rate(with_errors, 200).rate == 10
    undelivered = _open([(10, 10, 40, 0), (20, 15, 50, 0)])  # the server answered 15 of the 20 offered per second
    assert capacity.sustainable_rate(undelivered, 200).rate == 10  # below 85% of the offered rate: not held
    assert capacity.sustainable_rate(undelivered, 200, tolerance=0.3).rate == 15  # never more than answered


def test_closed_loop_gives_the_best_throughput_within_target():
    summary = _open([(0, 50, 30, 0), (0, 120, 90, 0), (0, 130, 400, 0)]).drop(columns="rate")
    summary.insert(0, "concurrency", [1.0, 4.0, 16.0])
    found = capacity.sustainable_rate(summary, 200)
    assert found.kind == "closed" and found.rate == 120 and found.level == 4.0


def test_several_shapes_must_be_chosen():
    summary = pd.concat([_open([(10, 10, 40, 0)]), _open([(10, 10, 40, 0)]).assign(input_tokens=512)])
    with pytest.raises(InvalidSpecError, match="input_tokens="):
        capacity.sustainable_rate(summary, 200)
    assert capacity.sustainable_rate(summary, 200, input_tokens=512).input_tokens == 512


def _per_replica(rate=30.0, tokens_per_s=50_000.0, target=200.0, input_tokens=512):
    return SustainableRate(rate, 150.0, target, rate * 16, tokens_per_s, input_tokens, 16)


def test_query_plan_replicas_nodes_and_cost():
    table = hostenv.load_prices()
    plan = capacity.plan_capacity(QueryLoad(100, 200), _per_replica(), "PNV5b.16XLARGE192", prices=table)
    assert plan.replicas == 4 and plan.gpus == 4 and plan.nodes == 2  # 100 / 30 -> 4; two L20 per node
    per_day = prices.price_of("PNV5b.16XLARGE192", table).per_hour * 24
    assert plan.cost_per_day == pytest.approx(2 * per_day) and not plan.price_verified
    assert plan.serving_changes() == {"replicas": 4}
    assert plan.utilisation == pytest.approx(100 / 120)
    shown = plan.table().set_index("item")["value"]
    assert "illustrative" in shown["cost"] and shown["nodes"] == "2 x PNV5b.16XLARGE192"


def test_document_plan_from_tokens_per_second():
    load = DocumentLoad(documents_per_day=86_400_000, avg_tokens=500, hours_per_day=8, peak_factor=1.5)
    assert load.tokens_per_s == pytest.approx(86_400_000 * 500 / (8 * 3600) * 1.5)
    plan = capacity.plan_capacity(load, _per_replica(tokens_per_s=300_000), "PNV5b.8XLARGE96")
    assert plan.replicas == math.ceil(load.tokens_per_s / 300_000) and plan.nodes == plan.replicas


def test_plans_refuse_what_cannot_work():
    with pytest.raises(InvalidSpecError, match="find the sustainable rate at that target"):
        capacity.plan_capacity(QueryLoad(10, 100), _per_replica(target=200), "PNV5b.8XLARGE96")
    with pytest.raises(InvalidSpecError, match="no sustainable rate"):
        capacity.plan_capacity(QueryLoad(10, 100), None, "PNV5b.8XLARGE96")
    with pytest.raises(InvalidSpecError, match="larger node type"):
        capacity.plan_capacity(QueryLoad(10, 200), _per_replica(), "PNV5b.8XLARGE96", gpus_per_replica=2)
    with pytest.raises(InvalidSpecError, match="hours_per_day"):
        DocumentLoad(1000, 500, hours_per_day=30)


def test_price_file_overrides_the_defaults(tmp_path, monkeypatch):
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text("PNV5b.8XLARGE96: {per_hour: 10, currency: USD}\nMY.NODE: 3\n")
    table = hostenv.load_prices(yaml_file)
    assert table["PNV5b.8XLARGE96"].per_hour == 10 and table["PNV5b.8XLARGE96"].verified
    assert table["MY.NODE"].per_day == 72
    plan = capacity.plan_capacity(QueryLoad(30, 200), _per_replica(), "PNV5b.8XLARGE96", prices=table)
    assert plan.cost_per_day == 240 and plan.currency == "USD" and plan.price_verified
    csv_file = tmp_path / "prices.csv"
    csv_file.write_text("node_type,per_hour,currency\nPNV5b.8XLARGE96,7.5,CNY\n")
    monkeypatch.setenv(hostenv.PRICES_ENV, str(csv_file))
    assert prices.price_of("pnv5b.8xlarge96", hostenv.load_prices()).per_hour == 7.5
    with pytest.raises(InvalidSpecError, match="does not exist"):
        hostenv.load_prices(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("PNV5b.8XLARGE96: {per_hour: cheap}\n")
    with pytest.raises(InvalidSpecError, match="per_hour"):
        hostenv.load_prices(tmp_path / "bad.yaml")


@pytest.mark.parametrize("gpu,peak", [("L20", 119.5), ("L40S", 362), ("A10", 125), ("A100-80GB", 312),
                                      ("H100", 989), ("H800", 989), ("H20", 148), ("T4", None)])
def test_spec_sheet_peaks(gpu, peak):
    assert peak_bf16_tflops(gpu) == peak  # facts.md section 9 (T4 has no bf16)


def test_mfu_is_tokens_times_two_params_over_peak():
    # facts.md section 9: e5-mistral (7.11 B params) at 34,000 tokens/s is ~483 TFLOP/s
    mfu = capacity.model_flops_utilisation(34_000, E5, "H20", gpus=4)
    assert mfu == pytest.approx(34_000 * 2 * 7_110_660_096 / (4 * 148e12))
    assert capacity.model_flops_utilisation(34_000, E5, "T4") is None
    summary = _open([(10, 10, 40, 0)])
    out = capacity.with_mfu(summary, BGE, "L20")
    assert list(out.columns[list(out.columns).index("tokens_per_s"):][:3]) == ["tokens_per_s", "tflops", "mfu"]
    assert out["mfu"].iloc[0] == pytest.approx(340 * 2 * 567_754_752 / 119.5e12)
    assert "119.5" in capacity.mfu_note(BGE, "L20")


def _closed_sweep(levels, *, tokens=512, inputs=1, queue=5.0, inference=20.0):
    rows = []
    for concurrency, tokens_per_s in levels:
        rows.append({"concurrency": float(concurrency), "input_tokens": tokens, "inputs": inputs, "requests": 100,
                     "errors": 0, "error_rate": 0.0, "req_per_s": tokens_per_s / tokens / inputs,
                     "embeddings_per_s": tokens_per_s / tokens, "tokens_per_s": tokens_per_s, "latency_mean_ms": 50,
                     "p50_ms": 40, "p90_ms": 80, "p99_ms": 100, "server_queue_mean_ms": queue,
                     "server_inference_mean_ms": inference})
    return pd.DataFrame(rows)


def test_encoder_token_budget_and_sequences_from_the_sweep():
    spec = resolve(ServingChoices(model=BGE, max_model_len=8192, gpu="L20"))  # encoder: budget 16384 by default
    sweep = _closed_sweep([(16, 100_000), (64, 200_000)])  # 64 x 512 = 32768 tokens in flight at the best level
    advice = capacity.recommend_vllm(sweep, spec)
    flags = {r.flag: r.value for r in advice.recommendations}
    assert flags == {"--max-num-batched-tokens": "32768", "--max-num-seqs": "64"}
    assert advice.notes  # still growing at the top level: sweep higher
    tuned = advice.apply(spec)
    assert (tuned.max_num_batched_tokens, tuned.max_batch_size) == (32768, 64)
    plan = build_plan(None, serving=tuned, api_key="capacity-test-key-0123", key_salt=bytes(32))
    command = " ".join(plan[-2]["spec"]["template"]["spec"]
                       ["containers"][0]["command"])
    assert "--max-num-batched-tokens 32768" in command and "--max-num-seqs 64" in command


def test_under_used_gpu_gets_several_api_servers():
    spec = resolve(ServingChoices(model=BGE, gpu="L20", max_batch_size=256))
    sweep = _closed_sweep([(4, 20_000), (16, 21_000)], tokens=16, queue=30.0, inference=3.0)
    advice = capacity.recommend_vllm(sweep, spec, mfu=0.02)
    assert [r.flag for r in advice.recommendations] == ["--api-server-count"]
    assert "--api-server-count 4" in advice.apply(spec).extra_args
    busy = _closed_sweep([(4, 20_000), (16, 60_000)], tokens=16, queue=30.0, inference=3.0)
    assert capacity.recommend_vllm(busy, spec, mfu=0.02).recommendations == ()  # still scaling: no change


def test_decoder_models_keep_their_token_budget():
    spec = resolve(ServingChoices(model=E5, gpu="L20", max_batch_size=64))
    advice = capacity.recommend_vllm(_closed_sweep([(16, 30_000), (32, 31_000)]), spec)
    assert all(r.flag != "--max-num-batched-tokens" for r in advice.recommendations)
    assert capacity.recommend_vllm(pd.DataFrame(), spec).notes


def _search(queue, inference):
    opened = _open([(10, 10, 40, 0), (20, 20, 60, 0)]).assign(server_queue_mean_ms=queue,
                                                              server_inference_mean_ms=inference)

    class _Result:
        def table(self):
            return opened

    found = capacity.sustainable_rate(opened, 200)
    return capacity.RateSearch(25.0, None, _Result(), found, 200.0)


def test_local_candidates_follow_where_time_goes():
    default = capacity.LocalSettings()
    queued = capacity.local_candidates(_search(queue=50, inference=10), default, cores=2)
    assert queued[0] == capacity.LocalSettings(max_batch=128, max_wait_ms=4.0)  # batching is the limit
    computing = capacity.local_candidates(_search(queue=1, inference=20), default, cores=2)
    assert computing[0] == capacity.LocalSettings(max_batch=16, max_wait_ms=0.5)
    assert queued[1] == capacity.LocalSettings(workers=1)
    assert "--max-batch 128 --max-wait-ms 4" == queued[0].flags
    with pytest.raises(InvalidSpecError, match="max_batch"):
        capacity.LocalSettings(max_batch=0)


def test_search_and_replay_against_a_live_server():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_embedding_server import FakeEmbeddingServer

    with FakeEmbeddingServer() as srv:
        search = capacity.find_sustainable_rate(srv.url, "m", 60_000, input_tokens=8, concurrency=(2,),
                                                ceiling_requests=40, fractions=(0.1, 0.2), level_s=0.1,
                                                min_requests=20)
        report, result = capacity.replay(srv.url, "m", search.sustainable, duration_s=0.2)  # its shape, target
    # nothing breaks a 60 s p99, so the higher level is sustainable unless a loaded machine answered less than
    # the offered rate there (the delivery rule): then the level below is, and the higher one is shown not holding
    # (the rows keep their "rate" column: without it the rule cannot see the offered rate and skips delivery)
    levels = search.opened.summary.sort_values("rate").reset_index(drop=True)
    limit = 60_000 * (1 - search.sustainable.margin)
    held = [capacity.planning.level_holds(row, limit) for _, row in levels.iterrows()]
    assert search.sustainable.level == levels["rate"].iloc[held.index(False) - 1 if False in held else -1]
    assert held[0] and levels["rate"].iloc[-1] == pytest.approx(round(search.ceiling_rps * 0.2, 2))
    row = search.opened.summary.set_index("rate").loc[search.sustainable.level]
    assert search.sustainable.rate == min(search.sustainable.level, row["req_per_s"])  # never more than answered
    assert sorted(search.opened.summary["rate"]) == sorted({round(search.ceiling_rps * f, 2) for f in (0.1, 0.2)})
    assert report.predicted_rps == search.sustainable.rate and report.errors == 0 and report.met_target
    assert report.requests == len(result.records) == math.ceil(search.sustainable.rate * 0.2)
    assert report.shape.startswith("8 tokens x 1 input")
    assert report.held == (report.met_target and report.rate_within_tolerance)
    assert str(report).startswith("replay HELD" if report.held else "replay DID NOT HOLD")


def test_search_goes_lower_when_even_the_lowest_rate_breaks_the_target():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_embedding_server import FakeEmbeddingServer

    with FakeEmbeddingServer() as srv:
        search = capacity.find_sustainable_rate(srv.url, "m", 0.0001, input_tokens=4, concurrency=(2,),
                                                ceiling_requests=20, fractions=(0.5, 1.0), level_s=0.05,
                                                min_requests=5)
    assert search.sustainable is None
    assert len(search.opened.summary) == 4  # 0.5 broke it, then 0.25, 0.125, 0.0625 were tried
    # what the cells after the search start from: the best level measured, marked as not holding, and said
    start = search.planning_rate
    best = search.opened.summary.sort_values(["p99_ms", "rate"]).iloc[0]
    assert start is not None and not start.held and start.level == best["rate"]
    assert start.rate == min(best["rate"], best["req_per_s"]) and start.p99_ms == best["p99_ms"]
    assert "ABOVE the 0 ms target" in str(start)
    assert any("did not hold" in note for note in search.notes), search.notes
    plan = capacity.plan_capacity(capacity.QueryLoad(10.0, 0.0001), start, "PNV5b.8XLARGE96")
    assert plan.replicas >= 1 and any("did not hold" in note for note in plan.notes), plan.notes


def test_cluster_tuning_rerenders_the_workload_with_the_flags():
    spec = resolve(ServingChoices(model=BGE, max_model_len=8192, gpu="L20"))
    outcome = capacity.tune_vllm(_closed_sweep([(16, 100_000), (64, 200_000)]), spec)
    assert outcome.spec.max_num_batched_tokens == 32768 and outcome.spec.max_batch_size == 64
    assert "--max-num-batched-tokens 32768" in outcome.rendered() and "kind: Deployment" in outcome.rendered()
    assert list(outcome.table()["flag"]) == ["--max-num-batched-tokens", "--max-num-seqs"]
    assert outcome.flags == "--max-num-batched-tokens 32768 --max-num-seqs 64"


@pytest.mark.slow
def test_local_tuning_loop_measures_the_local_server():
    # one local server start (the quick loop: the default settings only); candidates are tested without servers
    outcome = capacity.LocalServerTuning(capacity.tune_local(60_000, candidates=[], input_tokens=8, concurrency=(2,),
                                                             ceiling_requests=20, fractions=(0.2,), level_s=0.2,
                                                             min_requests=10))
    table = outcome.table()
    assert list(table["flags"]) == ["--max-batch 64 --max-wait-ms 2"] and "best" not in table  # nothing compared
    assert "measured only the defaults (the tuning: " in outcome.local.summary()
    assert table["sustainable_rps"].iloc[0] > 0 and table["ceiling_rps"].iloc[0] > 0
    assert outcome.rendered().startswith("tke-playbook serve --max-batch 64 --max-wait-ms 2")
    assert outcome.local.tuned_vs_default == 1.0
