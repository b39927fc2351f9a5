"""Evaluating and comparing embedders through the interface only: an oracle with known answers, the lexical
baseline, embedders that fail or misbehave."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # fake_embedding_server (importlib mode)
from fake_embedding_server import FakeEmbeddingServer  # noqa: E402

from tke_playbook.embed.http import EmbeddingClient  # noqa: E402
from tke_playbook.embed.lexical import LexicalEmbedder  # noqa: E402
from tke_playbook.errors import EmbeddingAPIError, InvalidSpecError, PlaybookError  # noqa: E402
from tke_playbook.evaluate import compare  # noqa: E402
from tke_playbook.evaluate import metrics as evaluation
from tke_playbook.evaluate import similarity
from tke_playbook.evaluate.datasets import load_bilingual  # noqa: E402
from tke_playbook.specs.catalog import get_model  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    return load_bilingual()


class OracleEmbedder:
    """Documents are one-hot by id; a query is the grade-weighted sum of its relevant documents, so the ranking
    follows the grades exactly. Unknown texts (heatmap sentences) get a one-hot of their topic."""

    def __init__(self, dataset, name="oracle"):
        self.name = name
        self.calls = []
        self.docs = {d.text: i for i, d in enumerate(dataset.documents)}
        self.queries = {q.text: dataset.qrels[q.id] for q in dataset.queries}
        self.index = {d.id: i for i, d in enumerate(dataset.documents)}
        self.topics = {s.text: list(dataset.topics).index(s.topic) for s in dataset.sentences}
        self.dim = len(dataset.documents)

    def _row(self, text):
        row = np.zeros(self.dim, dtype=np.float32)
        if text in self.docs:
            row[self.docs[text]] = 1
        elif text in self.queries:
            for doc, grade in self.queries[text].items():
                row[self.index[doc]] = grade
        else:
            row[self.topics[text]] = 1
        return row / np.linalg.norm(row)

    def embed_documents(self, texts):
        self.calls.append(("documents", len(texts)))
        return np.stack([self._row(t) for t in texts])

    def embed_queries(self, texts, task=None):
        self.calls.append(("queries", len(texts)))
        return np.stack([self._row(t) for t in texts])


@pytest.fixture(scope="module")
def oracle_result(dataset):
    return compare.evaluate_embedder(OracleEmbedder(dataset), dataset)


def test_oracle_scores_perfectly_on_every_slice(oracle_result):
    for slice_name in compare.SLICES:
        row = oracle_result.slices.loc[slice_name]
        for k in compare.DEFAULT_KS:
            assert row[f"ndcg@{k}"] == pytest.approx(1.0)
        assert row["mrr"] == pytest.approx(1.0)
    assert oracle_result.metrics == oracle_result.slices.loc["all", list(oracle_result.metrics)].to_dict()
    assert oracle_result.separation["auc"] == pytest.approx(1.0)
    assert oracle_result.topic_separation["margin"] == pytest.approx(1.0)


def test_result_shapes_follow_the_dataset(dataset, oracle_result):
    nq, nd, ns = len(dataset.queries), len(dataset.documents), len(dataset.sentences)
    assert oracle_result.query_doc_sim.shape == (nq, nd)
    assert oracle_result.sentence_sim.shape == (ns, ns)
    assert len(oracle_result.distributions) == nq * nd
    assert oracle_result.distributions["relevant"].sum() == sum(
        1 for judged in dataset.qrels.values() for g in judged.values() if g > 0)
    assert list(oracle_result.per_query.index) == sorted(dataset.query_ids)
    assert {"lang", "topic", "kind"} <= set(oracle_result.per_query.columns)
    assert oracle_result.dim == nd
    assert oracle_result.slices.loc["cross-lingual", "queries"] == sum(
        1 for judged in dataset.restrict_qrels(cross_lingual=True).values() if any(g > 0 for g in judged.values()))


def test_queries_are_timed_one_call_each(dataset, oracle_result):
    timings = oracle_result.timings
    assert list(timings["call"]).count("query") == len(dataset.queries)
    assert (timings.loc[timings["call"] == "query", "texts"] == 1).all()
    assert timings.loc[timings["call"] == "documents", "texts"].item() == len(dataset.documents)
    assert (timings["seconds"] >= 0).all()
    assert list(timings["call"]).count("warmup") == 1 and timings["call"].iloc[0] == "warmup"


def test_metrics_match_an_independent_run(dataset):
    lexical = LexicalEmbedder()
    result = compare.evaluate_embedder(lexical, dataset)
    docs = lexical.embed_documents([d.text for d in dataset.documents])
    queries = lexical.embed_queries([q.text for q in dataset.queries])
    run = similarity.retrieve(queries, docs, dataset.query_ids, dataset.doc_ids, k=None)
    expected = evaluation.evaluate_run(dataset.qrels, run, compare.DEFAULT_KS)
    assert result.metrics == pytest.approx(expected)
    assert result.dim == LexicalEmbedder().fit([d.text for d in dataset.documents]).dim  # fitted on every document
    assert result.memory_source == "embedder" and result.memory_bytes == lexical.memory_bytes


def test_comparison_table_lines_up_two_embedders(dataset):
    comparison = compare.compare_embedders(OracleEmbedder(dataset), LexicalEmbedder(), dataset)
    table = comparison.table
    assert list(table.columns) == ["oracle", "lexical-tfidf", "difference"]
    assert table.loc["ndcg@10", "oracle"] == pytest.approx(1.0)
    np.testing.assert_allclose(table["difference"], table["lexical-tfidf"] - table["oracle"], equal_nan=True)
    assert table.loc["dimension", "lexical-tfidf"] == comparison.b.dim
    zh = comparison.b.per_query[comparison.b.per_query["lang"] == "zh"]
    assert table.loc["ndcg@10 zh queries", "lexical-tfidf"] == pytest.approx(zh["ndcg@10"].mean())
    assert comparison.names == ("oracle", "lexical-tfidf")
    assert len(comparison.sentence_labels) == len(comparison.sentence_topics) == len(dataset.sentences)


def test_same_names_are_told_apart(dataset):
    comparison = compare.compare_embedders(LexicalEmbedder(), LexicalEmbedder(char_ngrams=0), dataset)
    assert comparison.names == ("lexical-tfidf", "lexical-tfidf (2)")


def test_catalog_model_supplies_memory(dataset):
    embedder = OracleEmbedder(dataset, name="BAAI/bge-m3")
    result = compare.evaluate_embedder(embedder, dataset)
    assert result.model is get_model("BAAI/bge-m3")
    assert result.memory_bytes == get_model("BAAI/bge-m3").serving_bytes
    assert result.memory_source.startswith("catalog")


def test_unknown_model_has_unknown_memory(oracle_result):
    assert oracle_result.model is None and oracle_result.memory_bytes is None
    assert oracle_result.memory_source == "unknown"


class _Failing(OracleEmbedder):
    def embed_queries(self, texts, task=None):
        raise EmbeddingAPIError("HTTP 503 from the endpoint", status=503)


class _Short(OracleEmbedder):
    def embed_documents(self, texts):
        return super().embed_documents(texts)[:-1]


class _Narrow(OracleEmbedder):
    def embed_queries(self, texts, task=None):
        return super().embed_queries(texts)[:, :5]


@pytest.mark.parametrize("cls, error, message", [
    pytest.param(_Failing, EmbeddingAPIError, "HTTP 503", id="endpoint-error-propagates"),
    pytest.param(_Short, PlaybookError, "one row per text", id="too-few-rows"),
    pytest.param(_Narrow, PlaybookError, "5-dim queries", id="query-dimension-mismatch"),
])
def test_misbehaving_embedders_fail_clearly(dataset, cls, error, message):
    with pytest.raises(error, match=message):
        compare.evaluate_embedder(cls(dataset), dataset)


def test_objects_that_are_not_embedders_are_refused(dataset):
    with pytest.raises(InvalidSpecError, match="lacks embed_queries"):
        compare.evaluate_embedder(object(), dataset)


# --- through the HTTP client ---------------------------------------------------------------------------------


def test_evaluates_an_http_endpoint_and_survives_a_retried_fault(dataset):
    with FakeEmbeddingServer(dim=16, model="BAAI/bge-m3", script=["ok", "503"]) as server:
        with EmbeddingClient(server.url, backoff=0.01) as client:
            result = compare.evaluate_embedder(client, dataset)
        faults = list(server.faults)
    assert result.name == "BAAI/bge-m3" and result.dim == 16
    assert result.model is get_model("BAAI/bge-m3") and result.memory_source.startswith("catalog")
    assert "503" in faults  # the first query call was answered 503 and retried by the client
    assert result.query_doc_sim.shape == (len(dataset.queries), len(dataset.documents))
    assert 0.0 <= result.metrics["ndcg@10"] <= 1.0
    assert list(result.timings["call"]).count("query") == len(dataset.queries)


def test_endpoint_that_keeps_failing_stops_the_evaluation(dataset):
    with FakeEmbeddingServer(dim=8, error_rate=1.0, error_kinds=("500",)) as server:
        with EmbeddingClient(server.url, retries=1, backoff=0.01) as client:
            with pytest.raises(EmbeddingAPIError, match="500"), pytest.warns(UserWarning, match="not in the catalog"):
                compare.evaluate_embedder(client, dataset)
