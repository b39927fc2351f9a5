"""The dimension × precision frontier: every point is the server's own answer (vLLM's ``dimensions``,
``embed_dtype`` and Cohere binary types on the local server with the Matryoshka override), scored like any system,
sized and priced by the stated rules, Pareto points marked; storage prices as an editable table.

Expectations are computed here from upstream pieces: sentence-transformers' vectors of the same texts, cut and
renormalised as vLLM does Matryoshka, cast by torch (as vLLM's ``tensor2binary``) or quantised by
sentence-transformers' ``quantize_embeddings``, ranked by cosine (Hamming for bits) and scored by nDCG@10; sizes
from the element widths (4, 2, 2, 1, 1 bytes, 1/8 for a bit); costs from the price tables."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from tke_playbook.embed.http import EmbeddingClient
from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.evaluate import metrics
from tke_playbook.evaluate.similarity import run_from_matrix
from tke_playbook.localserver import start_server
from tke_playbook.scorecard import Throughput, price_table
from tke_playbook.scorecard.frontier import NOT_MATRYOSHKA, local_frontier, pareto_front, run_frontier
from tke_playbook.scorecard.storage_prices import GIB, storage_price, storage_price_table
from tke_playbook.hostenv import offline_model_dir

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("float32", "fp8_e4m3", "ubinary")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The local server with the Matryoshka override, and the embedding cache its frontiers share."""
    folder = tmp_path_factory.mktemp("frontier")
    with start_server(timeout=240, log_path=folder / "server.log",
                      hf_overrides={"matryoshka_dimensions": [128, 64]}) as server:
        yield server, folder / "cache"


@pytest.fixture(scope="module")
def frontier(served):
    server, cache = served
    return run_frontier([EmbeddingClient(server.url)], dimensions=(None, 128, 100), precisions=PRECISIONS,
                        throughputs={MODEL: Throughput(MODEL, 1000.0, "SA5.LARGE8")}, cache_dir=cache,
                        progress=False, n_boot=300, documents=2_000_000, months=6, not_matryoshka=(MODEL,))


@pytest.fixture(scope="module")
def st():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(offline_model_dir()), device="cpu")


def expected_ndcg(st, dataset, dims, precision) -> float:
    from sentence_transformers.util.quantization import quantize_embeddings

    def vectors(texts):
        raw = st.encode(texts)[:, :dims or None]
        unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        if precision == "ubinary":
            return np.unpackbits(quantize_embeddings(unit, precision="ubinary"), axis=1) * 2.0 - 1.0
        return torch.from_numpy(unit).to({"float32": torch.float32, "fp8_e4m3": torch.float8_e4m3fn}[
            precision]).float().numpy()

    q, d = vectors([x.text for x in dataset.queries]), vectors([x.text for x in dataset.documents])
    if precision == "ubinary":  # Hamming: integer dot products of +-1 vectors, ties exact (broken by document id)
        sim = (q.astype(np.int64) @ d.astype(np.int64).T).astype(np.float64)
    else:
        sim = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (d / np.linalg.norm(d, axis=1, keepdims=True)).T
    run = run_from_matrix(sim, [x.id for x in dataset.queries], [x.id for x in dataset.documents])
    return metrics.ndcg_at_k(dataset.qrels, run, 10)


def test_each_point_is_the_servers_precision_scored_as_sentence_transformers_would(frontier, st, dataset):
    points = frontier.points
    assert len(points) == 6 and set(points["precision"]) == set(PRECISIONS)
    for _, row in points.iterrows():
        dims = row["dimensions"] if row["truncated"] else None
        assert row["ndcg@10"] == pytest.approx(expected_ndcg(st, dataset, dims, row["precision"]), abs=1e-6), row.name
        assert row["ndcg@10 low"] <= row["ndcg@10"] <= row["ndcg@10 high"]
    assert frontier.ratio("ubinary") == pytest.approx(expected_ndcg(st, dataset, None, "ubinary")
                                                      / expected_ndcg(st, dataset, None, "float32"))


def test_a_dimension_the_server_refuses_is_listed_with_its_reason(frontier):
    refused = frontier.refused
    assert len(refused) == 3 and all("@100d-" in s for s in refused["system"])
    assert all("only supports Matryoshka dimensions [128, 64], got 100" in why for why in refused["why"])  # vLLM's
    assert "3 variant(s) refused" in frontier.assumptions()


def test_sizes_and_costs_follow_the_stated_rules(frontier, st, dataset):
    points = frontier.points.set_index(["dimensions", "precision"])
    assert points.loc[(384, "float32"), "bytes per vector"] == 1536
    assert points.loc[(128, "fp8_e4m3"), "bytes per vector"] == 128
    assert points.loc[(128, "ubinary"), "bytes per vector"] == 16
    assert points.loc[(384, "float32"), "index GiB"] == pytest.approx(1536 * 2_000_000 / 2 ** 30)
    texts = [d.text for d in dataset.documents]
    tokens = sum(len(ids) for ids in st.tokenizer(texts)["input_ids"]) / len(texts)
    hourly = float(price_table().loc["SA5.LARGE8", "hourly_price"])
    per_token = hourly / (1000.0 * 3600)  # a node-hour's price over the tokens it embeds in an hour
    row = points.loc[(128, "fp8_e4m3")]
    assert row["tokens per document"] == pytest.approx(tokens)
    assert row["embed per 1M docs"] == pytest.approx(1e6 * tokens * per_token, rel=1e-9)
    store = 128 * 1e6 / GIB * 0.35
    assert row["store per 1M docs per month"] == pytest.approx(store)
    assert row[frontier.cost_column] == pytest.approx(row["embed per 1M docs"] + 6 * store)
    assert "0.35 CNY per GiB-month (illustrative, verify), kept 6 months" in frontier.assumptions()


def test_pareto_points_are_the_undominated_ones(frontier):
    points = frontier.points
    cost, quality = points[frontier.cost_column].to_numpy(), points["ndcg@10"].to_numpy()
    for i, on in enumerate(points["pareto"]):
        beaten = ((cost <= cost[i]) & (quality >= quality[i]) & ((cost < cost[i]) | (quality > quality[i]))).any()
        assert on == (not beaten)
    assert points["pareto"].any()
    assert list(pareto_front([1, 2, 3, 2], [0.5, 0.4, 0.9, 0.6])) == [True, False, True, True]
    assert list(pareto_front([1, np.nan], [0.5, 0.9])) == [True, False]


def test_the_table_labels_truncated_points_and_tests_them_against_full_float32(frontier):
    table = frontier.table()
    truncated = table[table["dimensions"].str.startswith("128")]
    assert len(truncated) == 3 and all(NOT_MATRYOSHKA in d for d in truncated["dimensions"])
    full = table[(table["dimensions"] == "384") & (table["precision"] == "float32")]
    assert full["Δ vs full float32 (p Holm)"].iloc[0].startswith("+0.000")
    assert set(table["pareto"]) <= {"yes", ""}


def test_the_local_frontier_starts_its_own_server_with_the_override_and_says_so(tmp_path):
    frontier = local_frontier(dimensions=(64,), precisions=("float32",), cache_dir=tmp_path, progress=False,
                              n_boot=200)
    assert sorted(frontier.points["dimensions"]) == [64, 384]
    note = frontier.assumptions()
    assert "--hf-overrides '{\"matryoshka_dimensions\": [64]}'" in note and NOT_MATRYOSHKA in note
    assert "stopped after the run" in note


def test_storage_prices_are_an_editable_table(tmp_path, monkeypatch):
    table = storage_price_table()
    assert table.loc["cfs-standard", "per_gib_month"] > 0 and "verify" in table.loc["cfs-standard", "source"]
    # the defaults are illustrative, not Tencent Cloud's list prices: the source must not call them list prices
    # (05 showed "list price, verify (illustrative estimate, not a list price: ...)")
    assert not table["source"].str.contains("list price,").any(), table["source"].tolist()
    assert table["source"].str.contains("not a list price").all()
    table.loc["memory", ["per_gib_month", "source"]] = [30.0, "our contract"]
    edited = storage_price("memory", table)
    assert edited.per_gib_month == 30.0 and edited.verified and "30 CNY per GiB-month (verified)" in \
        edited.assumption()
    path = tmp_path / "storage.yaml"
    path.write_text("cfs-standard: {per_gib_month: 0.5, currency: CNY}\nnvme: 2\n", encoding="utf-8")
    monkeypatch.setenv("TKE_PLAYBOOK_STORAGE_PRICES", str(path))
    assert storage_price("cfs-standard").per_gib_month == 0.5 and storage_price("nvme").verified
    with pytest.raises(UnknownNameError, match="Did you mean 'memory'"):
        storage_price("memroy")
    path.write_text("cfs-standard: {per_gib_month: cheap}\n", encoding="utf-8")
    with pytest.raises(InvalidSpecError, match="needs per_gib_month"):
        storage_price()
    with pytest.raises(InvalidSpecError, match="must be a number >= 0"):
        storage_price("x", pd.DataFrame({"per_gib_month": [-1.0], "currency": ["CNY"]}, index=["x"]))


def test_bad_frontier_inputs_are_refused(frontier):
    with pytest.raises(InvalidSpecError, match="pass EmbeddingClients"):
        run_frontier(["bm25"])
    with pytest.raises(InvalidSpecError, match="documents=0"):
        run_frontier([], documents=0)


def test_on_a_cluster_the_deployed_endpoint_is_asked_and_refusals_are_listed(local_server, tmp_path):
    """A deployed model that is not Matryoshka-trained refuses the smaller dimensions (vLLM's 400): the frontier
    keeps the points it can measure and lists the rest with the server's reason, instead of failing."""
    from tke_playbook.playbook.cluster import ClusterEvaluation
    from tke_playbook.playbook.records import Records
    from tke_playbook.playbook.settings import Settings
    from tke_playbook.playbook.steps import Session
    from tke_playbook.reporting import QuietReporter
    from tke_playbook.specs.target import Target

    class DeployedOnACluster:  # the cluster's serving step, its endpoint played by the local server
        def endpoint(self, model=""):
            return type("Endpoint", (), {"client": lambda self: EmbeddingClient(local_server.url)})()

        def measured_on(self):
            return "SA5.LARGE8 (CPU)"

    session = Session(Settings(Target.CLUSTER, tmp_path), Records(Target.CLUSTER, tmp_path), QuietReporter())
    frontier = ClusterEvaluation(session, None, DeployedOnACluster()).frontier(quick=True, node_type="SA5.LARGE8",
                                                                            progress=False)
    assert sorted(frontier.points["precision"]) == ["float32", "fp8_e4m3", "ubinary"]
    assert (frontier.points["dimensions"] == 384).all() and len(frontier.refused) == 3
    assert all("does not support Matryoshka embeddings" in why for why in frontier.refused["why"])
    assert not frontier.notes  # no second server on a cluster


# --- one throughput per model on a page (05 showed 3,747 tokens/s in its cost table, 2,778 in the frontier's text) ---


def test_the_frontier_prices_with_the_throughput_the_page_measured(frontier, served, st, dataset):
    """05 passes what its cost table showed - scorecard_throughputs' list - and the frontier prices with it and
    says how large a sample it was measured on; before, a list was refused and the frontier measured its own."""
    server, cache = served
    shown = Throughput(MODEL, 500.0, "SA5.LARGE8", source="05's cost table", texts=40, tokens=900)
    again = run_frontier([EmbeddingClient(server.url)], dimensions=(None,), precisions=("float32",),
                         throughputs=[shown], cache_dir=cache, progress=False, n_boot=200)
    texts = [d.text for d in dataset.documents]
    tokens = sum(len(ids) for ids in st.tokenizer(texts)["input_ids"]) / len(texts)
    hourly = float(price_table().loc["SA5.LARGE8", "hourly_price"])
    row = again.points.iloc[0]
    assert row["embed per 1M docs"] == pytest.approx(1e6 * tokens * hourly / (500.0 * 3600), rel=1e-9)
    text = again.assumptions()
    assert "500 tokens/s on SA5.LARGE8 (05's cost table; measured on 40 texts, 900 tokens)" in text
    assert "separately" not in text


def test_a_frontier_that_measures_its_own_throughput_says_so_and_on_what(served, st, dataset):
    """Given no throughput the frontier times its own scorecard run: its text says that is a separate measurement
    (it differs from a cost table above) and names the sample - every query and document, as the tokenizer counts."""
    server, cache = served
    own = run_frontier([EmbeddingClient(server.url)], dimensions=(None,), precisions=("float32",), cache_dir=cache,
                       progress=False, n_boot=200)
    texts = [q.text for q in dataset.queries] + [d.text for d in dataset.documents]
    tokens = sum(len(ids) for ids in st.tokenizer(texts)["input_ids"])
    text = own.assumptions()
    assert f"measured on {len(texts)} texts, {tokens:,} tokens" in text
    assert "measured separately, during the frontier's own scorecard run" in text


def test_the_playbook_and_05_hand_the_frontier_the_measured_throughputs(tmp_path, monkeypatch):
    """The facade passes ``throughputs`` through, and 05's frontier cell gives it the cost table's."""
    import ast
    from pathlib import Path

    from tke_playbook.playbook import open_target
    from tke_playbook.scorecard import frontier as fr

    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path))
    given: dict = {}
    monkeypatch.setattr(fr, "local_frontier", lambda *args, **kwargs: given.update(kwargs))
    measured = [Throughput(MODEL, 321.0, "SA5.LARGE8")]
    open_target("local").evaluation.frontier(quick=True, throughputs=measured)
    assert given["throughputs"] is measured
    source = (Path(__file__).resolve().parents[2] / "notebooks" / "05_compare_models.py").read_text(encoding="utf-8")
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", None) == "frontier"]
    assert calls and all(any(k.arg == "throughputs" and getattr(k.value, "id", None) == "throughputs"
                             for k in call.keywords) for call in calls)
