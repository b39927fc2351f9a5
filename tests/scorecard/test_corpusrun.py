"""The scorecard on a corpus: systems, labels (document or chunk), intervals, the halving rule, agreement, the
blind labelling pool, and the shareable report."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parents[1] / "corpus")]
from conftest import HashingEmbedder  # noqa: E402  (tests/corpus/conftest.py)

from tke_playbook.corpus import Chunker, load_corpus, pydoc_queries, write_pydoc_corpus  # noqa: E402
from tke_playbook.errors import InvalidSpecError, UnknownNameError  # noqa: E402
from tke_playbook.scorecard.corpusrun import RunOptions, corpus_systems, max_passage, run_corpus  # noqa: E402
from tke_playbook.scorecard.htmlreport import render_report  # noqa: E402


@pytest.fixture(scope="module")
def pydocs(tmp_path_factory):
    folder = write_pydoc_corpus(tmp_path_factory.mktemp("pydocs") / "python-docs", limit=10)
    corpus = load_corpus(folder, Chunker.for_model(chunk_tokens=96), progress=False)
    queries, qrels = pydoc_queries(limit=10)
    return folder, corpus, queries, qrels


@pytest.fixture(scope="module")
def result(pydocs, tmp_path_factory):
    _, corpus, queries, qrels = pydocs
    options = RunOptions(cache_dir=tmp_path_factory.mktemp("cache"), progress=False)
    return run_corpus(corpus, queries, [HashingEmbedder(), "bm25", "hybrid"], qrels=qrels, options=options,
                      n_boot=500)


def test_document_labels_score_each_document_by_its_best_chunk(result):
    assert result.unit == "document" and result.systems == ["hashing-embedder", "bm25",
                                                            "hybrid-hashing-embedder+bm25"]
    table = result.table()
    assert (table["judged queries"] == len(result.judged())).all() and len(result.judged()) >= 10
    for name in result.systems:
        row = table.loc[name]
        assert 0 <= row["ndcg@10 low"] <= row["ndcg@10"] <= row["ndcg@10 high"] <= 1
    assert max_passage({"q": {"a#0": 0.2, "a#1": 0.9, "b#0": 0.5}}, {"a#0": "a", "a#1": "a", "b#0": "b"}) == \
        {"q": {"a": 0.9, "b": 0.5}}


def test_the_summary_for_a_page_keeps_each_interval_in_one_column(result):
    """The full table has 14 columns (too wide for a notebook page: the browser suite saw 07 scroll sideways); the
    summary shows each metric with its interval in one cell, with the same numbers."""
    table, summary = result.table(), result.summary()
    assert len(summary.columns) <= 6 and list(summary.index) == ["hashing-embedder", "bm25",
                                                                 "hybrid-hashing-embedder+bm25"]
    row = table.loc["bm25"]
    assert summary.loc["bm25", "ndcg@10 (95% CI)"] == \
        f"{row['ndcg@10']:.3f} ({row['ndcg@10 low']:.3f}–{row['ndcg@10 high']:.3f})"
    unlabelled = result.with_qrels({}).summary()
    assert (unlabelled["ndcg@10 (95% CI)"] == "—").all()


def test_the_summarys_latency_says_it_times_a_bulk_request_and_dashes_systems_that_embedded_nothing(result):
    """07's page showed ``p99 ms 9,747.2`` beside nDCG: the p99 of one bulk request of 64 chunks, read as a query's
    latency by anyone who had seen 04's 68 ms. The column names what it times and how many chunks a request held;
    bm25 and hybrid embed nothing, so they show "—", not NaN."""
    table, summary = result.table(), result.summary()
    column = f"bulk p99 ms ({RunOptions().batch_size} chunks/request)"
    assert column in summary.columns and "p99 ms" not in summary.columns, list(summary.columns)
    dense = table.loc["hashing-embedder"]
    assert summary.loc["hashing-embedder", column] == f"{dense['p99 ms']:,.1f}"
    assert summary.loc["hashing-embedder", "bulk chunks/s"] == f"{dense['chunks/s']:,.1f}"
    for lexical in ("bm25", "hybrid-hashing-embedder+bm25"):
        assert summary.loc[lexical, column] == summary.loc[lexical, "bulk chunks/s"] == "—"


def test_the_halving_rule_is_three_times_the_judged_queries_at_the_labels_per_query(result):
    halve = result.labels_to_halve()
    n = len(result.judged())
    per_query = sum(len(result.qrels[q]) for q in result.judged()) / n
    assert halve["more_queries"] == 3 * n and halve["more_judgements"] == math.ceil(3 * n * per_query)
    assert "1/sqrt" in halve["method"]


def test_labels_arriving_rescore_without_embedding_again(result):
    unlabelled = result.with_qrels({})
    assert unlabelled.unit == "chunk" and unlabelled.table()["ndcg@10"].isna().all()
    pool = unlabelled.pool(k=5)
    first = pool[pool["query_id"] == pool["query_id"].iloc[0]]
    union = {c for run in result.runs.values() for c in list(run[first["query_id"].iloc[0]])[:5]}
    assert set(first["chunk_id"]) == union and "system" not in pool.columns  # blind: no system named
    assert first["chunk_id"].tolist() != sorted(first["chunk_id"])  # shuffled
    qid, chunk = first["query_id"].iloc[0], first["chunk_id"].iloc[0]
    labelled = unlabelled.with_qrels({qid: {chunk: 1.0}})
    again = labelled.pool(k=5)
    assert len(labelled.judged()) == 1 and chunk not in set(again[again["query_id"] == qid]["chunk_id"])
    assert labelled.table()["judged queries"].iloc[0] == 1


def test_agreement_and_disagreements_need_no_labels(result):
    table = result.with_qrels({}).agreement()
    assert len(table) == 3 and table["overlap@10"].between(0, 1).all()
    worst = result.disagreements("hashing-embedder", "bm25", n=5)
    assert len(worst) == 5 and (worst["disagreement"].diff().dropna() <= 0).all() and worst["text"].str.len().gt(0).all()


def test_systems_by_name_and_mistakes():
    assert [s.name for s in corpus_systems(["bm25", "tfidf"])] == ["bm25", "lexical-tfidf"]
    with pytest.raises(UnknownNameError, match="Did you mean 'bm25'"):
        corpus_systems(["bm52"])
    with pytest.raises(InvalidSpecError, match="list a dense system"):
        corpus_systems(["hybrid"])


def test_the_report_is_self_contained_without_secrets_or_absolute_paths(result, pydocs, tmp_path):
    folder = pydocs[0]
    from tke_playbook.cli.scorecard import ParityNote

    page = render_report(result, roots=[folder], secrets=["sk-very-secret"],
                         parity=[ParityNote("served", "another model behind the name")])
    assert "<img" in page and "data:image/png;base64," in page and "http" not in page.replace("https://", "")
    assert str(folder) not in page and str(Path.home()) not in page and str(tmp_path.parent) not in page
    assert "python-docs" in page and "Where they disagree most" in page and "would halve the" in page
    assert "served: parity not checked - another model behind the name" in page and "cost per 1M chunks" in page
    data = json.dumps(result.to_dict())
    assert str(folder) not in data
