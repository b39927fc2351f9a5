"""Cost per million tokens from throughput and the project's node price table (arithmetic in the comments)."""

import math

import pandas as pd
import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.hostenv import load_prices
from tke_playbook.scorecard import Throughput, cost_per_million_tokens, cost_table, price_table, throughput_from_summary


def test_cost_per_million_tokens_by_hand():
    # 30 per node-hour, 1 GPU, 10,000 tokens/s -> 36,000,000 tokens per hour -> 30 / 36 = 0.8333 per million
    assert cost_per_million_tokens(Throughput("m", 10_000, "n"), 30.0, 1) == pytest.approx(30 / 36)
    # 2-GPU node at 60/h, measured 40,000 tokens/s on both GPUs -> 20,000 per GPU, 30 per GPU-hour -> 0.4167
    assert cost_per_million_tokens(Throughput("m", 40_000, "n2", accelerators=2), 60.0, 2) == pytest.approx(30 / 72)


def test_price_table_is_the_shared_one_with_gpus_per_node_and_marked_to_verify():
    table = price_table()
    shared = load_prices()
    assert set(table.index) == set(shared)
    assert table.loc["PNV5b.8XLARGE96", "hourly_price"] == shared["PNV5b.8XLARGE96"].per_hour
    assert table.loc["PNV5b.8XLARGE96", "gpus"] == 1 and table.loc["PNV5b.16XLARGE192", "gpus"] == 2
    assert table.loc["SA5.LARGE8", "gpus"] == 0
    assert table["source"].str.startswith("list price, verify").all()  # defaults only: none verified


def test_a_prices_file_overrides_the_defaults(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text("PNV5b.8XLARGE96: {per_hour: 36, currency: CNY}\n", encoding="utf-8")
    monkeypatch.setenv("TKE_PLAYBOOK_NODE_PRICES", str(path))
    table = price_table()
    assert table.loc["PNV5b.8XLARGE96", "hourly_price"] == 36 and "from" in table.loc["PNV5b.8XLARGE96", "source"]


def test_cost_table_joins_quality_throughput_and_an_edited_price_table():
    quality = pd.DataFrame({"ndcg@10": [0.6, 0.5], "ndcg@10 low": [0.5, 0.4], "ndcg@10 high": [0.7, 0.6]},
                           index=pd.Index(["bge", "bm25"], name="system"))
    prices = price_table()
    prices.loc["PNV5b.8XLARGE96", "hourly_price"] = 36.0  # the user's own price
    table = cost_table(quality, [Throughput("bge", 10_000, "pnv5b.8xlarge96")], prices)
    # 36 / (10,000 * 3600) * 1e6 = 1.0
    assert table.loc["bge", "cost per 1M tokens"] == pytest.approx(1.0)
    assert table.loc["bge", "low"] == 0.5 and table.loc["bge", "node type"] == "PNV5b.8XLARGE96"
    assert math.isnan(table.loc["bm25", "cost per 1M tokens"])


def test_unknown_node_type_says_to_add_a_price():
    quality = pd.DataFrame({"ndcg@10": [0.6]}, index=pd.Index(["bge"], name="system"))
    with pytest.raises(InvalidSpecError, match="add it to the price table"):
        cost_table(quality, [Throughput("bge", 1000, "XYZ.LARGE")])


def test_throughput_from_a_loadgen_summary_takes_the_best_error_free_level():
    summary = pd.DataFrame({"concurrency": [1, 4, 16], "tokens_per_s": [1000.0, 3500.0, 5000.0],
                            "errors": [0, 0, 3]})
    t = throughput_from_summary("bge", summary, "PNV5b.8XLARGE96")
    assert t.tokens_per_s == 3500.0 and "error-free" in t.source


@pytest.mark.parametrize("make, message", [
    pytest.param(lambda: Throughput("m", 0, "n"), "tokens_per_s", id="zero-throughput"),
    pytest.param(lambda: Throughput("m", 10, "n", accelerators=0), "accelerators", id="no-accelerator"),
    pytest.param(lambda: throughput_from_summary("m", pd.DataFrame({"x": [1]}), "n"), "tokens_per_s column",
                 id="not-a-summary"),
    pytest.param(lambda: cost_table(pd.DataFrame({"ndcg@10": [0.5]}, index=["m"]), [],
                                    pd.DataFrame({"price": [1.0]})), "lacks", id="not-a-price-table"),
])
def test_bad_cost_inputs_are_refused(make, message):
    with pytest.raises(InvalidSpecError, match=message):
        make()


def test_the_node_type_chosen_in_00_prices_a_cluster_run(home):
    """Issue 20 item 5: GN7.2XLARGE32 chosen in 00, yet 05 priced on PNV5b.8XLARGE96."""
    from tke_playbook.playbook import ClusterPlaybook
    from tke_playbook.specs.hardware import get_node_type

    pb = ClusterPlaybook(root=home)  # nothing here asks the cluster: the choice is in the state file
    pb.site.choose_node_type(get_node_type("GN7.2XLARGE32"))
    assert pb.evaluation.price_node() == "GN7.2XLARGE32"
    assert pb.evaluation.price_node("pnv4.7xlarge116") == "PNV4.7XLARGE116"


def test_locally_a_cpu_measurement_is_never_priced_as_a_gpu_node(home):
    from tke_playbook.errors import UnknownNameError
    from tke_playbook.playbook import LocalPlaybook
    from tke_playbook.specs.hardware import get_node_type

    local = LocalPlaybook(root=home)
    local.site.choose_node_type(get_node_type("PNV5b.8XLARGE96"))  # for the fit checks; nothing served on it here
    assert get_node_type(local.evaluation.price_node()).gpu_count == 0
    with pytest.raises(InvalidSpecError, match="measured on this machine's CPU"):
        local.evaluation.price_node("GN7.2XLARGE32")
    with pytest.raises(UnknownNameError, match="Did you mean"):
        local.evaluation.price_node("SA5.LARGE")


def test_the_cost_summary_reads_without_nan():
    """Issue 20: tables showed NaN where a system (BM25, TF-IDF) has no throughput."""
    from tke_playbook.scorecard import cost_summary

    quality = pd.DataFrame({"ndcg@10": [0.7, 0.5], "ndcg@10 low": [0.6, 0.4], "ndcg@10 high": [0.8, 0.6]},
                           index=pd.Index(["bge", "bm25"], name="system"))
    summary = cost_summary(cost_table(quality, [Throughput("bge", 10_000, "SA5.LARGE8")]))
    shown = summary.to_string()
    assert "nan" not in shown.lower() and "<NA>" not in shown and "None" not in shown
    assert summary.loc["bm25", "cost per 1M tokens"] == "–" and summary.loc["bge", "priced as"] == "SA5.LARGE8"
    # 0.6 per node-hour / (10,000 tokens/s x 3600 s) x 1e6 = 0.01667 per million tokens
    assert summary.loc["bge", "cost per 1M tokens"] == "0.0167 CNY" and summary.loc["bge", "price"] == "illustrative, verify"


def test_a_two_stage_pipeline_is_not_shown_as_free():
    """05 showed '–' for bm25→all-MiniLM-L6-v2, which calls the model's /rerank on every query: it read as free.
    Its /rerank calls are not timed, so its cost says it is not priced; a lexical system still needs no server."""
    from tke_playbook.scorecard import cost_summary

    quality = pd.DataFrame({"kind": ["dense", "lexical", "two-stage"], "ndcg@10": [0.5, 0.5, 0.45],
                            "ndcg@10 low": [0.4, 0.4, 0.3], "ndcg@10 high": [0.6, 0.6, 0.6]},
                           index=pd.Index(["minilm", "bm25", "bm25→minilm"], name="system"))
    costs = cost_table(quality, [Throughput("minilm", 3000, "SA5.LARGE8")])
    summary = cost_summary(costs)
    assert "/rerank" in summary.loc["bm25→minilm", "cost per 1M tokens"]
    assert "not priced" in summary.loc["bm25→minilm", "cost per 1M tokens"]
    assert summary.loc["bm25", "cost per 1M tokens"] == "–"
    assert "/rerank" in costs.loc["bm25→minilm", "unpriced because"]
    assert "word overlap" in costs.loc["bm25", "unpriced because"]


def test_the_scorecards_throughput_keeps_the_sample_it_was_measured_on():
    """Tokens over seconds of the calls the endpoint counted (22 queries, 36 documents: 1,200 tokens in 2 s), and
    how many texts and tokens that was, so a reader can judge a rough single-stream figure."""
    from types import SimpleNamespace

    from tke_playbook.scorecard import scorecard_throughputs

    calls = [{"kind": "query", "texts": 22, "seconds": 0.5, "tokens": 300},
             {"kind": "document", "texts": 36, "seconds": 1.5, "tokens": 900}]
    (found,) = scorecard_throughputs(SimpleNamespace(embed_calls={"m": calls, "bm25": []}), "SA5.LARGE8")
    assert found.tokens_per_s == pytest.approx(1200 / 2)
    assert (found.texts, found.tokens) == (58, 1200)
    assert found.describe() == "600 tokens/s on SA5.LARGE8 (scorecard cold run, one stream; measured on 58 texts, " \
                               "1,200 tokens)"
