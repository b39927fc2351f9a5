"""Issue 20 item 10: notebook 05 says what the data set is (a card counted from the shipped file itself) and shows
its results in one narrow table, each metric once."""

import json
from collections import Counter
from importlib import resources
from types import SimpleNamespace

import pandas as pd
import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.scorecard import bilingual_task, dataset_card, results_table

PX_PER_CHAR, PX_PER_COLUMN = 7.5, 18  # JupyterLab's 13 px table font, cell padding and borders


@pytest.fixture(scope="module")
def raw():
    return json.loads((resources.files("tke_playbook") / "data" / "bilingual_retrieval.json").read_text("utf-8"))


def test_the_card_gives_counts_language_split_judging_kinds_source_and_licence(raw):
    card = dataset_card(bilingual_task())
    docs, queries = Counter(d["lang"] for d in raw["documents"]), Counter(q["lang"] for q in raw["queries"])
    grades = Counter(g for judged in raw["qrels"].values() for g in judged.values())
    assert card.get("documents").startswith(f"{len(raw['documents'])}: {docs['en']} English, {docs['zh']} Chinese")
    assert card.get("queries").startswith(f"{len(raw['queries'])}: {queries['en']} English, {queries['zh']} Chinese")
    assert f"{len(raw['topics'])} topics" in card.get("documents")
    assert raw["relevance"] in card.get("relevance") and f"{grades[2]} of grade 2" in card.get("relevance")
    for kind in ("same-language", "cross-lingual", "mixed"):
        assert kind in card.get("query kind")
    assert card.get("licence").startswith("Apache-2.0") and card.get("source")
    html = card._repr_html_()
    assert "…" not in html and "..." not in html and raw["relevance"][:60].replace("'", "&#x27;") in html


def test_query_kinds_in_the_card_add_up_to_the_queries(raw):
    card = dataset_card(bilingual_task())
    counts = [int(part.split(" (")[0].split()[-1]) for part in card.get("query kind").split(" - ")[1].split("; ")]
    assert sum(counts) == len(raw["queries"])


def test_the_card_refuses_what_is_not_a_task():
    with pytest.raises(InvalidSpecError, match="needs a retrieval task"):
        dataset_card("TkeBilingualRetrieval")


def _scorecard_table() -> pd.DataFrame:
    """The shape of ScorecardResult.table for the four local systems (values as in a local run)."""
    rows = []
    for name, kind, mean in (("sentence-transformers/all-MiniLM-L6-v2", "dense", 0.458), ("bm25", "lexical", 0.502),
                             ("hybrid-all-MiniLM-L6-v2+bm25", "hybrid", 0.448), ("lexical-tfidf", "lexical", 0.529)):
        row = {"system": name, "kind": kind, "mteb ndcg_at_10": mean}
        for metric in ("ndcg@10", "recall@10", "mrr@10"):
            row.update({metric: mean, f"{metric} low": mean - 0.16, f"{metric} high": mean + 0.16})
        rows.append({**row, "queries": 22})
    return pd.DataFrame(rows).set_index("system")


def _width_px(frame: pd.DataFrame) -> float:
    """How wide a notebook draws the table: per column, its longest header or cell."""
    columns = [[str(frame.index.name or "")] + [str(i) for i in frame.index]]
    columns += [[str(c)] + [str(v) for v in frame[c]] for c in frame.columns]
    return sum(max(map(len, col)) * PX_PER_CHAR + PX_PER_COLUMN for col in columns)


def test_the_results_table_fits_a_notebook_and_shows_ndcg_once():
    result = SimpleNamespace(table=_scorecard_table())
    table = results_table(result)
    assert _width_px(result.table.round(3)) > 1000  # what 05 showed: it scrolled sideways
    assert _width_px(table) <= 1000
    assert sum("ndcg" in c.lower() for c in table.columns) == 1
    assert list(table.index) == ["lexical-tfidf", "bm25", "sentence-transformers/all-MiniLM-L6-v2",
                                 "hybrid-all-MiniLM-L6-v2+bm25"]  # best nDCG@10 first
    assert table.loc["bm25", "nDCG@10 [95% CI]"] == "0.502 [0.342, 0.662]"
    with pytest.raises(InvalidSpecError, match="has no"):
        results_table(result, metrics=("map@10",))


def test_a_named_mteb_task_gets_a_card_from_its_metadata_and_data():
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    class Named(AbsTaskRetrieval):  # the shape of T2Retrieval & co, without the hub
        metadata = TaskMetadata(
            name="FakeRetrieval", type="Retrieval", main_score="ndcg_at_10", category="t2t",
            description="A stand-in for a hub task.", reference="https://example.org/paper",
            dataset={"path": "org/fake", "revision": "0123456789abcdef"}, eval_splits=["dev"],
            eval_langs=["cmn-Hans"], date=None, dialect=[], domains=[], task_subtypes=[], license="cc-by-4.0",
            annotations_creators="human-annotated", modalities=["text"], sample_creation="found", bibtex_citation="")

        def load_data(self, **kwargs):
            self.dataset = {"default": {"dev": RetrievalSplitData(
                queries=Dataset.from_list([{"id": f"q{i}", "text": f"query {i}"} for i in range(3)]),
                corpus=Dataset.from_list([{"id": f"d{i}", "text": f"doc {i}", "title": ""} for i in range(5)]),
                relevant_docs={"q0": {"d0": 1}, "q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}}, top_ranked=None)}}
            self.data_loaded = True

    task = Named()
    task.load_data()
    card = dataset_card(task)
    assert card.title == "Data set: FakeRetrieval"
    assert card.get("documents").startswith("5 ") and card.get("queries") == "3"
    assert card.get("languages") == "cmn-Hans" and card.get("licence") == "cc-by-4.0"
    assert card.get("relevance").startswith("human-annotated judgements (4 in the evaluated split)")
    assert "https://example.org/paper" in card.get("source") and "org/fake" in card.get("data set")
