"""The labelling widget: blind pooled chunks, judgements saved as TREC qrels at once and reused, the scorecard
rescored as labels arrive; and the query box."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parent / "corpus")]
from conftest import HashingEmbedder  # noqa: E402  (tests/corpus/conftest.py)

from tke_playbook.corpus import Chunker, load_corpus, pydoc_queries, read_qrels, write_pydoc_corpus  # noqa: E402
from tke_playbook.errors import InvalidSpecError  # noqa: E402
from tke_playbook.playbook.labeling import Labeler, QueryBox  # noqa: E402
from tke_playbook.scorecard.corpusrun import RunOptions, run_corpus  # noqa: E402


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("label")
    corpus = load_corpus(write_pydoc_corpus(root / "docs", limit=6), Chunker.for_model(chunk_tokens=96),
                         progress=False)
    queries, oracle = pydoc_queries(limit=6)
    result = run_corpus(corpus, queries, [HashingEmbedder(), "bm25"], n_boot=200,
                        options=RunOptions(cache_dir=root / "cache", progress=False))
    return result, oracle


def test_judgements_are_saved_reused_and_rescore_the_table(unlabelled, tmp_path):
    result, oracle = unlabelled
    path = tmp_path / "labels" / "qrels.txt"
    labeler = Labeler(result, path, k=3)
    first = labeler.current
    assert set(first) >= {"query_id", "query", "chunk_id", "text"} and "system" not in first
    labeler.label("relevant")
    labeler.skip()
    labeler.label("not relevant")
    saved = read_qrels(path)
    assert saved[first["query_id"]][first["chunk_id"]] == 1.0 and sum(len(j) for j in saved.values()) == 2
    assert labeler.table()["judged queries"].iloc[0] == 1
    labeler.answer_from(oracle, 40)
    judged = labeler.table()["judged queries"].iloc[0]
    assert judged >= 3 and "would halve the intervals" in labeler.summary_html()
    again = Labeler(result, path, k=3)  # a new session reads the file back
    assert again.labels == read_qrels(path)
    done = {(q, c) for q, j in again.labels.items() for c in j}
    assert not any((i["query_id"], i["chunk_id"]) in done for i in again.todo)
    assert again.table()["judged queries"].iloc[0] == judged
    with pytest.raises(InvalidSpecError, match="use 'relevant'"):
        again.label("maybe")


def test_the_query_box_numbers_queries_and_refuses_an_empty_box():
    box = QueryBox("what is a coroutine\n\n  the assert statement  \n")
    assert box.queries() == {"q1": "what is a coroutine", "q2": "the assert statement"}
    assert "coroutine" in box._repr_mimebundle_()["text/html"]
    with pytest.raises(InvalidSpecError, match="empty"):
        QueryBox().queries()
