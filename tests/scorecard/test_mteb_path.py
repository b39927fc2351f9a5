"""The mteb path: the shipped set as a local custom task, systems evaluated by ``mteb.evaluate``, and mteb's
scores checked against our own metrics computed independently from the embeddings (nDCG@10, recall@10, MRR@10).
Named MTEB tasks need a hub: offline they fail with one clear message."""

import pytest

from tke_playbook.embed.http import EmbeddingClient
from tke_playbook.errors import PlaybookError, UnknownNameError
from tke_playbook.evaluate import metrics as evaluation
from tke_playbook.evaluate import similarity
from tke_playbook.scorecard import (BM25Retriever, Hybrid, bilingual_task, named_task, reciprocal_rank_fusion,
                                    run_scorecard, subsample)


@pytest.fixture(scope="module")
def mteb_result(local_server, tmp_path_factory):
    client = EmbeddingClient(local_server.url)
    return run_scorecard([client, BM25Retriever(), Hybrid(client)], cache_dir=tmp_path_factory.mktemp("cache"),
                         progress=False, reuse_results=False, visuals=False)


@pytest.fixture(scope="module")
def independent_runs(local_server, dataset):
    """Rankings computed without mteb or the scorecard: the endpoint's vectors and cosine; BM25; RRF of both."""
    client = EmbeddingClient(local_server.url)
    docs = client.embed_documents([d.text for d in dataset.documents])
    queries = client.embed_queries([q.text for q in dataset.queries])
    dense = similarity.retrieve(queries, docs, dataset.query_ids, dataset.doc_ids, k=None)
    bm25 = BM25Retriever().index(dataset.doc_ids, [d.text for d in dataset.documents])
    lexical = similarity.run_from_matrix(bm25.scores([q.text for q in dataset.queries]), dataset.query_ids,
                                         dataset.doc_ids)
    return {"sentence-transformers/all-MiniLM-L6-v2": dense, "bm25": lexical,
            "hybrid-all-MiniLM-L6-v2+bm25": reciprocal_rank_fusion([dense, lexical])}


def test_every_system_went_through_mteb(mteb_result):
    assert mteb_result.task == "TkeBilingualRetrieval"
    assert mteb_result.systems == list(mteb_result.mteb_scores.index) == [
        "sentence-transformers/all-MiniLM-L6-v2", "bm25", "hybrid-all-MiniLM-L6-v2+bm25"]
    assert not any(mteb_result.reused.values())
    assert mteb_result.kinds == {"sentence-transformers/all-MiniLM-L6-v2": "dense", "bm25": "lexical",
                                 "hybrid-all-MiniLM-L6-v2+bm25": "hybrid"}


@pytest.mark.parametrize("system", ["sentence-transformers/all-MiniLM-L6-v2", "bm25",
                                    "hybrid-all-MiniLM-L6-v2+bm25"])
def test_mteb_scores_agree_with_our_metrics(mteb_result, independent_runs, dataset, system):
    run, qrels = independent_runs[system], dataset.qrels
    scores = mteb_result.mteb_scores.loc[system]
    ours = {"ndcg": evaluation.ndcg_at_k(qrels, run, 10), "recall": evaluation.recall_at_k(qrels, run, 10),
            "mrr": evaluation.mrr(qrels, run, k=10)}
    assert scores["exact_ndcg_at_10"] == pytest.approx(ours["ndcg"], abs=1e-6)
    assert scores["exact_recall_at_10"] == pytest.approx(ours["recall"], abs=1e-6)
    assert scores["mrr_at_10"] == pytest.approx(ours["mrr"], abs=1e-6)
    assert scores["ndcg_at_10"] == pytest.approx(ours["ndcg"], abs=5e-6)  # mteb's own average, rounded to 5 places
    row = mteb_result.table.loc[system]
    assert (row["ndcg@10"], row["recall@10"], row["mrr@10"]) == pytest.approx(
        (ours["ndcg"], ours["recall"], ours["mrr"]), abs=1e-9)


def test_the_task_carries_the_shipped_set(dataset):
    task = bilingual_task()
    data = task.dataset["default"]["test"]
    assert list(data["queries"]["id"]) == dataset.query_ids and list(data["corpus"]["id"]) == dataset.doc_ids
    assert data["relevant_docs"] == dataset.qrels


def test_subsample_keeps_every_judged_document(dataset):
    task = subsample(bilingual_task(), max_queries=5, max_documents=12, seed=1)
    data = task.dataset["default"]["test"]
    kept = set(data["queries"]["id"])
    judged = {d for q in kept for d in dataset.qrels[q]}
    assert len(kept) == 5 and set(data["relevant_docs"]) == kept
    assert judged <= set(data["corpus"]["id"]) and len(data["corpus"]) == max(12, len(judged))


def test_named_task_offline_fails_with_one_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PlaybookError, match="Could not load MTEB task SciFact from .*connection to the hub"):
        named_task("SciFact", max_queries=10)


def test_unknown_task_name_suggests_retrieval_tasks():
    with pytest.raises(UnknownNameError, match="T2Retrieval"):
        named_task("T2Retrival")
