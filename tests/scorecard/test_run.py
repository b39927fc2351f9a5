"""A whole scorecard on the shipped set: the offline line-up (MiniLM through the local server, BM25, hybrid,
TF-IDF), its table, paired tests and disagreements checked against the recorded rankings, and a rerun served
entirely from the caches."""

import numpy as np
import pytest

from tke_playbook.embed.http import EmbeddingClient
from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.evaluate import metrics as evaluation
from tke_playbook.scorecard import BM25Retriever, Hybrid, Kind, build_systems, local_systems, run_scorecard
from tke_playbook.scorecard.stats import first_relevant_rank

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


class CountingClient(EmbeddingClient):
    """The endpoint's client, counting the texts it sends."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.texts = 0

    def embed(self, texts, **kwargs):
        items = [texts] if isinstance(texts, str) else list(texts)
        self.texts += len(items)
        return super().embed(items, **kwargs)


def _systems(url):
    client = CountingClient(url)
    return [client, BM25Retriever(), Hybrid(client, name="hybrid"), "tfidf"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("scorecard-cache")


@pytest.fixture(scope="module")
def cold(local_server, cache):
    return run_scorecard(_systems(local_server.url), cache_dir=cache, progress=False, n_boot=500)


def test_table_has_every_system_with_intervals(cold, dataset):
    table = cold.table
    assert list(table.index) == [MINILM, "bm25", "hybrid", "lexical-tfidf"]
    assert table["kind"].tolist() == ["dense", "lexical", "hybrid", "lexical"]
    for metric in ("ndcg@10", "recall@10", "mrr@10"):
        assert (table[f"{metric} low"] <= table[metric]).all() and (table[metric] <= table[f"{metric} high"]).all()
    assert (table["queries"] == len(dataset.queries)).all()


def test_per_query_scores_come_from_the_recorded_rankings(cold, dataset):
    for name in cold.systems:
        frame, run = cold.per_query[name], cold.runs[name]
        assert frame["ndcg@10"].mean() == pytest.approx(evaluation.ndcg_at_k(dataset.qrels, run, 10))
        assert {"lang", "topic", "kind"} <= set(frame.columns)


def test_paired_table_and_disagreements_match_the_rankings(cold):
    paired = cold.paired_table(MINILM)
    assert list(paired.index) == ["bm25", "hybrid", "lexical-tfidf"]
    test = cold.paired(MINILM, "bm25")
    diff = cold.per_query["bm25"]["ndcg@10"] - cold.per_query[MINILM]["ndcg@10"]
    assert test.difference == pytest.approx(diff.mean()) and 0 < test.p_value <= 1
    assert paired.loc["bm25", "p_value"] == test.p_value
    assert paired.loc["bm25", "difference (system − vs)"] == test.difference  # the sign's direction is named
    table = cold.disagreements(MINILM, "bm25", k=3)
    for qid, row in table.iterrows():
        a = first_relevant_rank(cold.qrels[qid], cold.runs[MINILM][qid])
        b = first_relevant_rank(cold.qrels[qid], cold.runs["bm25"][qid])
        assert (a is not None and a <= 3) != (b is not None and b <= 3)
        assert row["found by"] == (MINILM if a is not None and a <= 3 else "bm25")
    assert {"query", "lang", "kind"} <= set(table.columns)


def test_visual_data_for_dense_systems(cold, dataset):
    assert list(cold.doc_vectors) == [MINILM, "lexical-tfidf"]  # embedders; the hybrid is drawn as its parts
    assert cold.doc_vectors[MINILM].shape == (len(dataset.documents), 384)
    n = len(dataset.sentences)
    assert cold.sentence_sims[MINILM].shape == (n, n)
    np.testing.assert_allclose(np.diag(cold.sentence_sims[MINILM]), 1.0, atol=1e-5)


def test_a_rerun_embeds_and_evaluates_nothing(cold, local_server, cache):
    assert not any(cold.reused.values()) and sum(len(c) for c in cold.embed_calls.values()) > 0
    systems = _systems(local_server.url)
    warm = run_scorecard(systems, cache_dir=cache, progress=False, n_boot=500)
    assert systems[0].texts == 0  # not one text sent to the endpoint: documents, queries, sentences all cached
    assert all(warm.reused.values()) and warm.embed_calls == cold.embed_calls  # the first run's measurements
    assert warm.table.equals(cold.table)
    assert warm.runs == cold.runs


def test_a_changed_system_is_evaluated_again(local_server, cache, cold):
    changed = run_scorecard([BM25Retriever(k1=1.2)], cache_dir=cache, progress=False, n_boot=500, visuals=False)
    assert changed.reused == {"bm25": False}


def test_local_systems_line_up_minilm_bm25_and_hybrid(minilm):
    items = local_systems(minilm, tfidf=True)
    systems = build_systems(items, "set", progress=False)
    assert [s.kind for s in systems] == [Kind.DENSE, Kind.LEXICAL, Kind.HYBRID, Kind.LEXICAL]
    assert systems[2].name == "hybrid-all-MiniLM-L6-v2+bm25"


def test_same_names_are_told_apart_and_bad_systems_refused():
    systems = build_systems(["bm25", "bm25"], "set", progress=False)
    assert [s.name for s in systems] == ["bm25", "bm25-2"]
    with pytest.raises(InvalidSpecError, match="unknown system 'bm52'"):
        build_systems(["bm52"], "set")
    with pytest.raises(InvalidSpecError, match="not a system"):
        build_systems([object()], "set")
    with pytest.raises(InvalidSpecError, match="needs an embedder"):
        Hybrid("bm25")


def test_unknown_system_names_in_result_queries(cold):
    with pytest.raises(UnknownNameError):
        cold.paired(MINILM, "bm-25")


def test_local_endpoints_serve_each_folder_and_stop(tmp_path):
    from tke_playbook.hostenv import offline_model_dir
    from tke_playbook.scorecard import local_endpoints, stop_local

    clients = local_endpoints([offline_model_dir()], log_path=tmp_path / "server.log")
    try:
        assert [c.model for c in clients] == [MINILM]
        result = run_scorecard(clients + ["bm25"], cache_dir=tmp_path, progress=False, n_boot=200, visuals=False)
        assert result.systems == [MINILM, "bm25"]
    finally:
        stop_local(clients)
    assert not clients[0].server.alive()


def test_pairwise_tests_cover_every_pair_of_the_scorecard(cold):
    pairs = cold.pairwise()
    assert len(pairs.tests) == 6 and set(pairs.ranking) == set(cold.systems)
    means = {name: cold.per_query[name]["ndcg@10"].mean() for name in cold.systems}
    assert list(pairs.ranking) == sorted(means, key=lambda n: -means[n])
    for test in pairs.tests:
        assert test.difference == pytest.approx(means[test.b] - means[test.a]) and test.queries == 22
    assert pairs.verdict().startswith(f"{pairs.ranking[0]} leads {pairs.ranking[1]} by ")
