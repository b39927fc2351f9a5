"""Two-stage pipelines (first stage's top k, then a reranker on /rerank): through mteb on the shipped set and on a
corpus, their table against their own first stage, the pair-score cache, and refusals.

Expectations: an oracle reranker (the qrels' grades) gives the ideal reordering of the first stage's top k,
computed here from the first stage's own recorded run; the local server's /rerank must order as
sentence-transformers' ``cos_sim`` does on the same texts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tke_playbook.embed.api import Reranked
from tke_playbook.embed.http import EmbeddingClient
from tke_playbook.errors import InvalidSpecError
from tke_playbook.evaluate import metrics
from tke_playbook.evaluate.metrics import ranked
from tke_playbook.scorecard import BM25Retriever, Hybrid, run_scorecard
from tke_playbook.scorecard.pipelines import TwoStage, pipeline_table, rerank_run, two_stage_systems

sys.path[:0] = [str(Path(__file__).parents[1] / "corpus")]
from conftest import HashingEmbedder  # noqa: E402  (tests/corpus/conftest.py)

DEPTH = 12


class OracleReranker:
    """Orders documents by their judged grade for the query (unjudged last), ties by position; counts pairs sent."""

    name = "oracle"

    def __init__(self, dataset):
        self.grades = {(q.text, d.text): dataset.qrels.get(q.id, {}).get(d.id, 0) for q in dataset.queries
                       for d in dataset.documents}
        self.pairs = 0

    def rerank(self, query, documents, top_n=None):
        self.pairs += len(documents)
        scores = [float(self.grades.get((query, d), 0)) for d in documents]
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
        return Reranked(query, tuple(documents), order, [scores[i] for i in order])


def ideal_reordering(run, dataset, depth):
    """Each query's top ``depth`` of ``run`` sorted by grade (stable), the rest unchanged."""
    out = {}
    for qid, scores in run.items():
        order = ranked(scores)
        head = sorted(order[:depth], key=lambda d: -dataset.qrels.get(qid, {}).get(d, 0))
        final = head + order[depth:]
        out[qid] = {d: float(len(final) - i) for i, d in enumerate(final)}
    return out


@pytest.fixture(scope="module")
def oracle_result(dataset, tmp_path_factory):
    oracle = OracleReranker(dataset)
    bm25 = BM25Retriever()
    result = run_scorecard([bm25, TwoStage(bm25, oracle, DEPTH)], cache_dir=tmp_path_factory.mktemp("pipes"),
                           progress=False, n_boot=500, visuals=False)
    return result, oracle


def test_a_pipeline_reorders_its_first_stages_top_k_and_keeps_the_rest(oracle_result, dataset):
    result, oracle = oracle_result
    name = "bm25→oracle"
    assert result.kinds[name] == "two-stage" and result.stages[name]["first_system"] == "bm25"
    expected = ideal_reordering(result.runs["bm25"], dataset, DEPTH)
    for qid in dataset.qrels:
        assert ranked(result.runs[name][qid]) == ranked(expected[qid])
    assert result.table.loc[name, "ndcg@10"] == pytest.approx(metrics.ndcg_at_k(dataset.qrels, expected, 10))
    assert result.table.loc[name, "ndcg@10"] > result.table.loc["bm25", "ndcg@10"]
    assert oracle.pairs == DEPTH * len(dataset.queries)  # every query's top k, once


def test_the_pipeline_table_compares_each_pipeline_with_its_own_first_stage(oracle_result):
    result, _ = oracle_result
    table = pipeline_table(result)
    row = table.loc["bm25→oracle"]
    assert row["first stage"] == "bm25" and row["depth"] == DEPTH and row["reranker"] == "oracle"
    assert row["gain"] == pytest.approx(result.table.loc["bm25→oracle", "ndcg@10"] - result.table.loc["bm25",
                                                                                                        "ndcg@10"])
    assert row["gain"] > 0 and row["p (Holm)"] == pytest.approx(row["p"])  # one pipeline: nothing to correct


def test_a_rerun_sends_no_pair_twice(dataset, tmp_path):
    oracle, bm25 = OracleReranker(dataset), BM25Retriever()
    systems = [bm25, TwoStage(bm25, oracle, DEPTH), TwoStage(bm25, oracle, DEPTH + 4, name="deeper")]
    run_scorecard(systems, cache_dir=tmp_path, progress=False, n_boot=200, visuals=False, reuse_results=False)
    first = oracle.pairs
    assert first == (DEPTH + 4) * len(dataset.queries)  # the deeper pipeline sent only its 4 new pairs per query
    run_scorecard(systems, cache_dir=tmp_path, progress=False, n_boot=200, visuals=False, reuse_results=False)
    assert oracle.pairs == first


def test_the_local_rerank_orders_bm25s_top_k_as_sentence_transformers_does(local_server, dataset, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import cos_sim

    from tke_playbook.hostenv import offline_model_dir

    client = EmbeddingClient(local_server.url)
    result = run_scorecard(["bm25", TwoStage("bm25", client, depth=10)], cache_dir=tmp_path, progress=False,
                           n_boot=200, visuals=False)
    st = SentenceTransformer(str(offline_model_dir()), device="cpu")
    texts = {d.id: d.text for d in dataset.documents}
    for query in dataset.queries[:5]:
        top = ranked(result.runs["bm25"][query.id])[:10]
        scores = cos_sim(st.encode([query.text]), st.encode([texts[d] for d in top]))[0].numpy()
        expected = [top[i] for i in np.argsort(-scores, kind="stable")]
        assert ranked(result.runs["bm25→all-MiniLM-L6-v2"][query.id])[:10] == expected


def test_a_rerun_with_the_same_client_objects_reuses_every_result(local_server, tmp_path):
    """The client's last latency and token count are measurements, not what decides a system's results."""
    client = EmbeddingClient(local_server.url)
    systems = [client, "bm25", TwoStage("bm25", client, depth=10)]
    run_scorecard(systems, cache_dir=tmp_path, progress=False, n_boot=200, visuals=False)
    again = run_scorecard(systems, cache_dir=tmp_path, progress=False, n_boot=200, visuals=False)
    assert all(again.reused.values()), again.reused


def test_pipelines_over_the_lexical_and_hybrid_first_stages(local_server):
    client = EmbeddingClient(local_server.url)
    hybrid = Hybrid(client)
    pipelines = two_stage_systems([client, "bm25", hybrid, "tfidf"])
    assert [p.first for p in pipelines] == ["bm25", hybrid] and all(p.reranker is client for p in pipelines)
    with pytest.raises(InvalidSpecError, match="no endpoint among the systems"):
        two_stage_systems(["bm25"])


def test_bad_pipelines_are_refused_with_what_to_do():
    with pytest.raises(InvalidSpecError, match="needs a reranker"):
        TwoStage("bm25", BM25Retriever())
    with pytest.raises(InvalidSpecError, match="depth=0"):
        TwoStage("bm25", OracleReranker.__new__(OracleReranker), depth=0)


def test_rerank_run_keeps_documents_past_the_depth_in_first_stage_order():
    run = {"q": {"a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0}}

    class Reverse:
        def rerank(self, query, documents, top_n=None):
            return Reranked(query, tuple(documents), range(len(documents))[::-1], [1.0] * len(documents))

    assert ranked(rerank_run(run, dict.fromkeys("abcd", "x"), {"q": "x"}, Reverse(), 2)["q"]) == ["b", "a", "c", "d"]


def test_a_pipeline_runs_on_a_customer_corpus(dataset, local_server, tmp_path):
    from tke_playbook.corpus import Chunker, load_corpus, pydoc_queries, write_pydoc_corpus
    from tke_playbook.scorecard.corpusrun import RunOptions, run_corpus

    folder = write_pydoc_corpus(tmp_path / "docs", limit=8)
    corpus = load_corpus(folder, Chunker.for_model(chunk_tokens=96), progress=False)
    queries, qrels = pydoc_queries(limit=8)
    options = RunOptions(cache_dir=tmp_path / "cache", progress=False, depth=30)
    result = run_corpus(corpus, queries, [HashingEmbedder(), "bm25", f"bm25>{local_server.url}"], qrels=qrels,
                        options=options, n_boot=200)
    name = "bm25→all-MiniLM-L6-v2"
    assert result.systems[-1] == name and result.figures[name]["kind"] == "two-stage"
    client = EmbeddingClient(local_server.url)
    texts = dict(zip(corpus.ids, corpus.texts))
    qid, text = next(iter(queries.items()))
    top = ranked(result.runs["bm25"][qid])[:20]
    expected = [top[i] for i in client.rerank(text, [texts[c] for c in top]).order]
    assert ranked(result.runs[name][qid])[:20] == expected
    assert ranked(result.runs[name][qid])[20:] == ranked(result.runs["bm25"][qid])[20:]
    assert not np.isnan(result.table().loc[name, "ndcg@10"])


def test_the_reranker_of_a_target_is_a_deployed_model_or_the_first_endpoint():
    from tke_playbook.scorecard.pipelines import reranker_for

    class LocalTarget:  # the local target serves one model: endpoint() takes no name
        def endpoint(self):
            raise AssertionError("not called without a name")

    assert reranker_for(LocalTarget(), "") is None and reranker_for(LocalTarget(), "  ") is None
    with pytest.raises(InvalidSpecError, match="This target serves one model; leave RERANKER empty"):
        reranker_for(LocalTarget(), "BAAI/bge-reranker-v2-m3")
