"""The shipped bilingual retrieval set: its shape, cross-lingual pairs, and validation of broken files."""

import copy
import dataclasses
import json

import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.evaluate import datasets


@pytest.fixture(scope="module")
def dataset():
    return datasets.load_bilingual()


@pytest.fixture
def raw():
    path = datasets.resources.files("tke_playbook") / "data" / datasets.DATA_FILE
    return json.loads(path.read_text("utf-8"))


def test_shipped_dataset_has_topics_in_both_languages(dataset):
    assert 30 <= len(dataset.documents) <= 40 and 12 <= len(dataset.queries) <= 24
    assert len(dataset.topics) == 6
    for topic in dataset.topics:
        assert {d.lang for d in dataset.documents if d.topic == topic} == {"en", "zh"}
        assert {q.lang for q in dataset.queries if q.topic == topic} == {"en", "zh"}


def test_every_query_has_a_relevant_document_and_grades_are_graded(dataset):
    for qid in dataset.query_ids:
        assert any(g > 0 for g in dataset.qrels[qid].values())
    grades = {g for judged in dataset.qrels.values() for g in judged.values()}
    assert grades == {0, 1, 2}


def test_cross_lingual_pairs_go_both_ways(dataset):
    pairs = dataset.cross_lingual_pairs()
    directions = {(dataset.query(q).lang, dataset.doc(d).lang) for q, d, _ in pairs}
    assert directions == {("en", "zh"), ("zh", "en")}
    kinds = [dataset.query_kind(q) for q in dataset.query_ids]
    assert {"same-language", "cross-lingual", "mixed"} <= set(kinds)
    assert dataset.summary()["cross_lingual_pairs"] == len(pairs)


def test_query_kind_follows_the_languages_of_relevant_documents(dataset):
    assert dataset.query_kind("q-cloud-en-2") == "cross-lingual"      # English query, Chinese answer
    assert dataset.query_kind("q-travel-zh-2") == "cross-lingual"     # Chinese query, English answer
    assert dataset.query_kind("q-programming-en-1") == "mixed"
    assert dataset.query_kind("q-cooking-zh-1") == "same-language"


def test_restrict_qrels_splits_by_language(dataset):
    cross = dataset.restrict_qrels(cross_lingual=True)
    same = dataset.restrict_qrels(cross_lingual=False)
    for qid in dataset.query_ids:
        assert set(cross[qid]) | set(same[qid]) == set(dataset.qrels[qid])
        assert not set(cross[qid]) & set(same[qid])
        assert all(dataset.doc(d).lang != dataset.query(qid).lang for d in cross[qid])


def test_sentence_set_is_ordered_by_topic_with_translations(dataset):
    sentences = dataset.sentence_set()
    assert "用Python实现快速排序算法" in sentences.texts
    order = list(dataset.topics)
    positions = [order.index(t) for t in sentences.topics]
    assert positions == sorted(positions)  # contiguous topic blocks
    assert len(sentences) == len(sentences.texts) == len(sentences.langs) == len(sentences.ids)
    assert all(len(label) <= 28 for label in sentences.labels())
    assert any(s.translation_of for s in dataset.sentences)
    assert datasets.sentence_set().ids == sentences.ids


def test_dataset_is_frozen(dataset):
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.name = "other"


def test_unknown_document_lookup_suggests(dataset):
    with pytest.raises(UnknownNameError, match="cloud-en-1"):
        dataset.doc("cloud-en-l")


def _break(raw, how):
    broken = copy.deepcopy(raw)
    how(broken)
    return broken


@pytest.mark.parametrize("how, message", [
    pytest.param(lambda r: r["qrels"]["q-cloud-en-1"].update({"no-such-doc": 2}), "document 'no-such-doc'",
                 id="qrel-unknown-document"),
    pytest.param(lambda r: r["qrels"].update({"q-ghost": {"cloud-en-1": 1}}), "query 'q-ghost'",
                 id="qrel-unknown-query"),
    pytest.param(lambda r: r["qrels"]["q-cloud-en-1"].update({"cloud-en-2": 3}), "grades are 0, 1 or 2",
                 id="grade-out-of-range"),
    pytest.param(lambda r: r["documents"][0].update({"lang": "fr"}), "language 'fr'", id="unknown-language"),
    pytest.param(lambda r: r["documents"][0].update({"topic": "space"}), "topic 'space'", id="undeclared-topic"),
    pytest.param(lambda r: r["documents"].append(dict(r["documents"][0])), "repeated", id="duplicate-id"),
    pytest.param(lambda r: r["qrels"].update({"q-cloud-en-1": {"cloud-en-1": 0}}), "no relevant document",
                 id="query-without-relevant-doc"),
    pytest.param(lambda r: r.pop("qrels"), "missing section", id="missing-qrels"),
    pytest.param(lambda r: r["documents"][0].pop("text"), "lacks 'text'", id="document-without-text"),
    pytest.param(lambda r: r["sentences"][1].update({"translation_of": "s-nope"}), "s-nope",
                 id="translation-of-unknown"),
    pytest.param(lambda r: r["queries"][0].update({"text": "  "}), "has no text", id="blank-text"),
])
def test_broken_dataset_is_refused_with_a_clear_message(raw, how, message):
    with pytest.raises(InvalidSpecError, match=message):
        datasets.dataset_from_dict(_break(raw, how))


def test_load_from_a_path(tmp_path, raw):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert datasets.load_bilingual(path).doc_ids == datasets.load_bilingual().doc_ids


def test_invalid_json_names_the_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"topics": ', encoding="utf-8")
    with pytest.raises(InvalidSpecError, match="not valid JSON .line 1"):
        datasets.load_bilingual(path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(InvalidSpecError, match="Cannot read dataset file"):
        datasets.load_bilingual(tmp_path / "absent.json")
