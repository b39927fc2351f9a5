"""Issue 20 item 2 and 06's minor items: numbers say what hardware they were measured on.

On the local target 06 measured all-MiniLM-L6-v2 on this machine's CPU, yet it priced GPU nodes ("7 x
PNV5b.8XLARGE96 ... 3,360 CNY/day") and computed MFU against the L20's peak. Now the plan is in replicas of the
server that was measured, MFU appears only against the peak of a GPU that served, and what a GPU node would need
appears only inside a block titled "Projection, not a measurement" (from 2 x params FLOPs per token and the MFU
facts.md section 9 measured). Also: figures say what served them, latency axes are log scales, a stream with few
requests is drawn as points, tables keep fixed decimals, tuning says when the defaults are best, the vllm-bench
files stay under the state folder, and TKE_PLAYBOOK_QUICK=false is not quick mode.
"""

from __future__ import annotations

import math
import re

import jupytext
import pandas as pd
import pytest

from tke_playbook import capacity, loadgen
from tke_playbook.capacity import DocumentLoad, QueryLoad, SustainableRate
from tke_playbook.errors import InvalidSpecError
from tke_playbook.hostenv import load_prices
from tke_playbook.plots import plot_capacity_table, plot_latency_knee, plot_mixed_latency, plot_sweep
from tke_playbook.specs.hardware import GPUS, NODE_TYPES
from tke_playbook.specs.prices import LOCAL_PRICE_NODE
from tke_playbook.specs.serving import ServingChoices, resolve

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
E5 = "intfloat/e5-mistral-7b-instruct"
# Every GPU and GPU node type the toolkit knows.
GPU_WORDS = re.compile("|".join([rf"\b{re.escape(g.name)}\b" for g in GPUS] +
                                [re.escape(n.name) for n in NODE_TYPES if n.gpu is not None]))


def _sweep() -> pd.DataFrame:
    rows = [(c, t, i, rps) for t in (32, 200) for i in (1, 8) for c, rps in ((1, 30.0), (4, 55.0))]
    return pd.DataFrame([{"concurrency": float(c), "input_tokens": t, "inputs": i, "requests": 60, "errors": 0,
                          "error_rate": 0.0, "req_per_s": r / i, "embeddings_per_s": r, "tokens_per_s": r * t,
                          "latency_mean_ms": 20.0 * i, "p50_ms": 18.0 * i * t / 32, "p90_ms": 25.0 * i,
                          "p99_ms": 30.0 * i * t / 32} for c, t, i, r in rows])


def _texts(*objects) -> str:
    out = []
    for obj in objects:
        out.append(str(obj))
        if hasattr(obj, "table"):
            out.append(obj.table().to_string())
        if isinstance(obj, pd.DataFrame):
            out.append(obj.to_string())
        if hasattr(obj, "_repr_html_"):
            out.append(obj._repr_html_())
    return "\n".join(out)


def test_on_the_local_target_nothing_but_the_projection_names_a_gpu_or_its_price():
    local = capacity.local_server(MINILM)  # what LocalServing.hardware() answers, whatever node type 00 chose
    assert not local.on_gpu and local.cores >= 1 and local.cpu and "CPU" in str(local)
    sweep = _sweep()
    per_replica = SustainableRate(20.0, 120.0, 200.0, 20.0, 680.0, 32, 1)
    bulk = capacity.sustainable_rate(sweep, 10_000, input_tokens=200, inputs=8)
    shown = _texts(local, capacity.mfu_note(MINILM, local), capacity.with_mfu(sweep, MINILM, local),
                   loadgen.compact_table(capacity.with_mfu(sweep, MINILM, local)),
                   capacity.plan_capacity(QueryLoad(200, 200), per_replica, served_on=local),
                   capacity.plan_capacity(DocumentLoad(5_000_000, 200), bulk, served_on=local))
    # the only price per day is the CPU node's a local server is priced as (as 05 prices it), never a GPU node's
    priced = [line for line in shown.splitlines() if re.search(r"[A-Z]{3}/day", line)]
    assert priced and all(LOCAL_PRICE_NODE in line and "CPU node type" in line for line in priced), priced
    assert not GPU_WORDS.findall(shown), GPU_WORDS.findall(shown)
    assert "MFU: not applicable on CPU" in shown and "mfu" not in capacity.with_mfu(sweep, MINILM, local)
    plan = capacity.plan_capacity(QueryLoad(200, 200), per_replica, served_on=local)
    assert plan.replicas == 10 and plan.gpus == 0 and plan.node_type is None and plan.priced_as == LOCAL_PRICE_NODE
    assert "one local CPU server" in plan.table().set_index("item").loc["one replica", "value"]
    projection = capacity.project_gpu([QueryLoad(200, 200), DocumentLoad(5_000_000, 200)], MINILM,
                                      "PNV5b.8XLARGE96", per_query=per_replica)
    for text in (str(projection), repr(projection), projection._repr_html_()):
        assert "Projection, not a measurement" in text and "PNV5b.8XLARGE96" in text
    with pytest.raises(InvalidSpecError, match="CPU server"):
        capacity.plan_capacity(QueryLoad(200, 200), per_replica, "PNV5b.8XLARGE96", served_on=local)


def test_the_projection_is_two_params_flops_per_token_times_a_cited_mfu():
    """facts.md section 9: e5-mistral-7b-instruct at 34,000 tokens/s on one H200 is 61% of a measured 790 TFLOP/s
    bf16 peak; the L20's spec-sheet peak is 119.5 TFLOP/s."""
    mfu, source = capacity.cited_mfu(E5)
    assert mfu == pytest.approx(34_000 * 2 * 7_110_660_096 / 790e12) and "facts.md section 9" in source
    load = DocumentLoad(86_400_000, 500)
    projection = capacity.project_gpu(load, E5, "PNV5b.8XLARGE96", prices=load_prices())
    per_gpu = mfu * 119.5e12 / (2 * 7_110_660_096)
    assert projection.tokens_per_s_per_gpu == pytest.approx(per_gpu)
    assert projection.gpus == math.ceil(load.tokens_per_s / per_gpu) and projection.nodes == projection.gpus
    assert any("not measured" in a for a in projection.assumptions)
    t4 = capacity.project_gpu(load, E5, "GN7.2XLARGE32")  # no bf16 on a T4: nothing to project from
    assert not t4.possible and "no dense bf16 peak" in str(t4)


def test_on_a_cluster_mfu_and_cost_belong_to_the_gpu_that_served():
    gpu = capacity.on_gpus(resolve(ServingChoices(model=E5, gpu="A10")), "PNV4.7XLARGE116")
    assert gpu.on_gpu and gpu.gpu == "A10" and gpu.node_type == "PNV4.7XLARGE116"
    out = capacity.with_mfu(_sweep(), E5, gpu)
    assert out["mfu"].iloc[0] == pytest.approx(30.0 * 32 * 2 * 7_110_660_096 / 125e12)
    plan = capacity.plan_capacity(QueryLoad(100, 200), SustainableRate(30.0, 150, 200, 30, 900, 32, 1),
                                  served_on=gpu)
    assert plan.node_type == "PNV4.7XLARGE116" and plan.gpus == 4 and plan.cost_per_day is not None


# --- figures ---------------------------------------------------------------------------------------------


def _footer(fig) -> str:
    return " ".join(t.get_text() for t in fig.findobj(lambda a: getattr(a, "get_gid", lambda: None)() ==
                                                      "measured-on"))


def test_capacity_figures_say_what_served_and_use_log_latency_scales():
    local = capacity.local_server(MINILM)
    sweep = _sweep()
    fig = plot_sweep(sweep, hardware=local)
    assert fig.axes[1].get_yscale() == "log" and "local CPU server" in _footer(fig)
    opened = pd.DataFrame({"rate": [5.0, 10.0, 15.0], "p99_ms": [40.0, 55.0, 70.0], "p50_ms": [20.0, 25.0, 30.0]})
    knee = plot_latency_knee(opened, 200, 10.0, hardware=local)  # a knee within 20x: the old plot stayed linear
    assert knee.axes[0].get_yscale() == "log" and "log scale" in knee.axes[0].get_ylabel()
    plan = capacity.plan_capacity(QueryLoad(200, 200), SustainableRate(20.0, 120.0, 200.0, 20.0, 680.0, 32, 1),
                                  served_on=local)
    assert "local CPU server" in _footer(plot_capacity_table(plan))


def test_a_stream_with_few_requests_is_drawn_as_points():
    records = pd.DataFrame({"stream": ["bulk"] * 6 + ["query"] * 60, "latency_s": [2.0] * 6 + [0.05] * 60,
                            "ok": [True] * 66})
    fig = plot_mixed_latency(records, hardware="a test machine")
    bulk, query = fig.axes[:2]
    assert len(bulk.collections) == 1 and len(bulk.collections[0].get_offsets()) == 6 and not bulk.patches
    assert query.patches and "a test machine" in _footer(fig)


# --- tables, tuning, files, parameters -----------------------------------------------------------------------


def test_tables_keep_fixed_decimals_whatever_the_values():
    small = loadgen.compact_table(_sweep().assign(p99_ms=3.14159, req_per_s=2.0))
    large = loadgen.compact_table(_sweep().assign(p99_ms=314.159, req_per_s=2.5))
    assert small["p99 ms"].iloc[0] == 3.1 and large["p99 ms"].iloc[0] == 314.2  # one decimal in both runs
    assert str(small["req/s"].dtype) == str(large["req/s"].dtype) == "float64"


def test_tuning_says_the_defaults_are_best_instead_of_recommending_them():
    default = capacity.LocalSettings()
    search = type("S", (), {"sustainable": SustainableRate(10.0, 100, 200, 10, 300, 32, 1), "ceiling_rps": 40.0})()
    worse = type("S", (), {"sustainable": SustainableRate(8.0, 100, 200, 8, 240, 32, 1), "ceiling_rps": 35.0})()
    tuning = capacity.LocalTuning([(default, search), (capacity.LocalSettings(max_batch=16), worse)])
    outcome = capacity.LocalServerTuning(tuning)
    assert outcome.rendered().startswith("the defaults are best") and "x1.00" not in outcome.rendered()


def test_vllm_bench_files_go_to_the_state_folder_not_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path))
    records = pd.DataFrame({"start_s": [0.0, 0.1], "latency_s": [0.01, 0.02], "status": [200, 200], "ok": [True, True],
                            "prompt_tokens": [10.0, 10.0], "input_tokens": [8, 8], "concurrency": [1.0, 1.0],
                            "rate": [math.nan, math.nan], "error": [None, None], "inputs": [1, 1]})
    first = loadgen.write_vllm_bench_json(records, "m")
    again = loadgen.write_vllm_bench_json(records, "m")
    assert first[0].parent == tmp_path / "vllm-bench" and [p.name for p in again] == [p.name for p in first]
    assert len(list((tmp_path / "vllm-bench").glob("*.json"))) == len(again)


@pytest.mark.parametrize("value, quick", [("false", False), ("0", False), ("", False), ("1", True), ("yes", True)])
def test_notebook_06_reads_quick_mode_as_the_playbook_does(monkeypatch, value, quick):
    from tke_playbook.playbook import quick_mode

    monkeypatch.setenv("TKE_PLAYBOOK_QUICK", value)
    source = next(c.source for c in jupytext.read("notebooks/06_benchmark.py", fmt="py:percent").cells
                  if "parameters" in c.metadata.get("tags", []))
    scope: dict = {}
    exec(source, scope)  # noqa: S102 - the notebook's own parameters cell
    assert scope["QUICK"] is quick is quick_mode(value)
