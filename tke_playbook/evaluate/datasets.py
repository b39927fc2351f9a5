"""The bilingual (Chinese/English) retrieval set shipped with tke-playbook, validated on load.

:func:`load_bilingual` returns a :class:`RetrievalDataset`: documents and queries (id, text, lang, topic),
graded qrels (0 not relevant, 1 partly, 2 answers the query) and cross-lingual pairs - queries whose relevant
documents are all in the other language. :func:`sentence_set` returns short sentences ordered by topic, with
English/Chinese translation pairs, for similarity heatmaps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InvalidSpecError
from ..specs.names import unknown

LANGUAGES = ("en", "zh")
GRADES = (0, 1, 2)
# What :meth:`RetrievalDataset.query_kind` calls a query, by the languages of its relevant documents
QUERY_KINDS = {
    "same-language": "every relevant document is in the query's language",
    "cross-lingual": "every relevant document is in the other language",
    "mixed": "relevant documents in both languages",
}
DATA_FILE = "bilingual_retrieval.json"


@dataclass(frozen=True)
class Text:
    """A document, query or sentence. ``translation_of`` names the sentence this one translates, if any."""

    id: str
    text: str
    lang: str
    topic: str
    translation_of: str | None = None


@dataclass(frozen=True)
class SentenceSet:
    """Sentences ordered by topic, for heatmaps: ``texts[i]`` has id ``ids[i]``, language and topic."""

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    langs: tuple[str, ...]
    topics: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self, max_chars: int = 28) -> list[str]:
        """Short labels: the text cut to ``max_chars`` characters."""
        return [t if len(t) <= max_chars else t[: max_chars - 1] + "…" for t in self.texts]


@dataclass(frozen=True)
class RetrievalDataset:
    name: str
    topics: dict[str, dict[str, str]]
    documents: tuple[Text, ...]
    queries: tuple[Text, ...]
    qrels: dict[str, dict[str, int]]
    sentences: tuple[Text, ...] = ()
    description: str = ""
    relevance: str = ""  # how the grades were given (who judged, what each grade means)
    source: str = ""
    license: str = ""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def doc_ids(self) -> list[str]:
        return [d.id for d in self.documents]

    @property
    def query_ids(self) -> list[str]:
        return [q.id for q in self.queries]

    def doc(self, doc_id: str) -> Text:
        return _by_id(self.documents, doc_id, "document")

    def query(self, query_id: str) -> Text:
        return _by_id(self.queries, query_id, "query")

    def query_kind(self, query_id: str) -> str:
        """``same-language``, ``cross-lingual`` (every relevant document is in the other language) or ``mixed``."""
        query = self.query(query_id)
        langs = {self.doc(d).lang for d, g in self.qrels[query_id].items() if g > 0}
        if langs == {query.lang}:
            return "same-language"
        return "cross-lingual" if query.lang not in langs else "mixed"

    def cross_lingual_pairs(self) -> list[tuple[str, str, int]]:
        """Every (query id, document id, grade > 0) whose two texts are in different languages."""
        return [(q.id, d, g) for q in self.queries for d, g in self.qrels[q.id].items()
                if g > 0 and self.doc(d).lang != q.lang]

    def restrict_qrels(self, *, cross_lingual: bool) -> dict[str, dict[str, int]]:
        """Qrels keeping only documents in the other language (``True``) or in the query's own language."""
        out: dict[str, dict[str, int]] = {}
        for q in self.queries:
            keep = {d: g for d, g in self.qrels[q.id].items() if (self.doc(d).lang != q.lang) == cross_lingual}
            out[q.id] = keep
        return out

    def summary(self) -> dict[str, Any]:
        """Counts: documents, queries, topics, judgements, cross-lingual pairs, queries of each kind (see
        :meth:`query_kind`), documents and queries per language, and judgements per grade."""
        kinds = [self.query_kind(q) for q in self.query_ids]
        grades = [g for judged in self.qrels.values() for g in judged.values()]
        return {"documents": len(self.documents), "queries": len(self.queries), "topics": len(self.topics),
                "judgements": len(grades),
                "cross_lingual_pairs": len(self.cross_lingual_pairs()),
                **{f"{k}_queries": kinds.count(k) for k in QUERY_KINDS},
                **{f"{lang}_documents": sum(d.lang == lang for d in self.documents) for lang in LANGUAGES},
                **{f"{lang}_queries": sum(q.lang == lang for q in self.queries) for lang in LANGUAGES},
                **{f"grade_{g}": grades.count(g) for g in GRADES}}

    def sentence_set(self) -> SentenceSet:
        """The dataset's sentences ordered by topic (the order of :attr:`topics`), keeping file order within one."""
        order = {t: i for i, t in enumerate(self.topics)}
        items = sorted(self.sentences, key=lambda s: order[s.topic])
        return SentenceSet(tuple(s.id for s in items), tuple(s.text for s in items), tuple(s.lang for s in items),
                           tuple(s.topic for s in items))


def _by_id(items: tuple[Text, ...], wanted: str, kind: str) -> Text:
    for item in items:
        if item.id == wanted:
            return item
    raise unknown(kind, wanted, [i.id for i in items])


def _fail(source: str, message: str, value: Any = None) -> InvalidSpecError:
    return InvalidSpecError(f"{source}: {message}", field="dataset", value=value)


def _validate(ds: RetrievalDataset) -> None:
    src = f"dataset {ds.name!r}"
    if not ds.documents or not ds.queries:
        raise _fail(src, "needs at least one document and one query")
    for kind, items in (("document", ds.documents), ("query", ds.queries), ("sentence", ds.sentences)):
        _validate_texts(ds, src, kind, items)
    sentence_ids = {s.id for s in ds.sentences}
    for s in ds.sentences:
        if s.translation_of is not None and s.translation_of not in sentence_ids:
            raise _fail(src, f"sentence {s.id!r} translates unknown sentence {s.translation_of!r}", s.translation_of)
    _validate_qrels(ds, src)


def _validate_texts(ds: RetrievalDataset, src: str, kind: str, items) -> None:
    seen: set[str] = set()
    for item in items:
        if not item.id or item.id in seen:
            raise _fail(src, f"{kind} id {item.id!r} is empty or repeated: give every {kind} a unique id", item.id)
        seen.add(item.id)
        if not item.text.strip():
            raise _fail(src, f"{kind} {item.id!r} has no text", item.id)
        if item.lang not in LANGUAGES:
            raise _fail(src, f"{kind} {item.id!r} has language {item.lang!r}: use one of {LANGUAGES}", item.lang)
        if item.topic not in ds.topics:
            raise _fail(src, f"{kind} {item.id!r} has topic {item.topic!r}, which is not declared in 'topics' "
                        f"({', '.join(ds.topics)})", item.topic)


def _validate_qrels(ds: RetrievalDataset, src: str) -> None:
    docs, queries = set(ds.doc_ids), set(ds.query_ids)
    for qid, judged in ds.qrels.items():
        if qid not in queries:
            raise _fail(src, f"qrels mention query {qid!r}, which is not in 'queries'", qid)
        for doc, grade in judged.items():
            if doc not in docs:
                raise _fail(src, f"qrels[{qid!r}] mention document {doc!r}, which is not in 'documents'", doc)
            if grade not in GRADES or isinstance(grade, bool):
                raise _fail(src, f"qrels[{qid!r}][{doc!r}] = {grade!r}: grades are 0, 1 or 2", grade)
    for qid in ds.query_ids:
        if not any(g > 0 for g in ds.qrels.get(qid, {}).values()):
            raise _fail(src, f"query {qid!r} has no relevant document (grade 1 or 2) in 'qrels'", qid)


def _texts(raw: Any, kind: str, source: str) -> tuple[Text, ...]:
    if not isinstance(raw, list):
        raise _fail(source, f"'{kind}' must be a list of objects with id, text, lang and topic")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(Text(id=str(item["id"]), text=str(item["text"]), lang=str(item["lang"]),
                            topic=str(item["topic"]), translation_of=item.get("translation_of")))
        except (KeyError, TypeError, AttributeError) as exc:
            raise _fail(source, f"{kind}[{i}] lacks {exc}: each entry needs id, text, lang and topic", i) from exc
    return tuple(out)


def dataset_from_dict(raw: dict, source: str = "dataset") -> RetrievalDataset:
    """Build and validate a dataset from the JSON layout of ``data/bilingual_retrieval.json``."""
    if not isinstance(raw, dict):
        raise _fail(source, "the top level must be a JSON object")
    missing = [k for k in ("topics", "documents", "queries", "qrels") if k not in raw]
    if missing:
        raise _fail(source, f"missing section(s) {', '.join(missing)}", missing)
    qrels = raw["qrels"]
    if not isinstance(qrels, dict) or not all(isinstance(v, dict) for v in qrels.values()):
        raise _fail(source, "'qrels' must map query id -> {document id: grade}")
    return RetrievalDataset(name=str(raw.get("name", source)), topics=dict(raw["topics"]),
                            documents=_texts(raw["documents"], "documents", source),
                            queries=_texts(raw["queries"], "queries", source),
                            qrels={str(q): {str(d): g for d, g in v.items()} for q, v in qrels.items()},
                            sentences=_texts(raw.get("sentences", []), "sentences", source),
                            **{key: str(raw.get(key, "")) for key in ("description", "relevance", "source", "license")})


def load_bilingual(path: str | Path | None = None) -> RetrievalDataset:
    """The shipped bilingual retrieval set (or a file of the same layout at ``path``), validated."""
    if path is None:
        source, text = DATA_FILE, (resources.files("tke_playbook") / "data" / DATA_FILE).read_text("utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidSpecError(f"Cannot read dataset file {source}: {exc.strerror}; check the path",
                                   field="path", value=source, cause=exc) from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(source, f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    return dataset_from_dict(raw, source)


def sentence_set(dataset: RetrievalDataset | None = None) -> SentenceSet:
    """Sentences for heatmaps, ordered by topic (English sentences with Chinese translations and extras)."""
    return (dataset or load_bilingual()).sentence_set()
