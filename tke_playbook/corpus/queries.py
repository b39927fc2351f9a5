"""Queries and relevance labels for a corpus.

Queries come from a file (``.jsonl`` with an id and a text field as BEIR writes them; ``.tsv``/``.csv`` with an id
and a text column, or two columns without a header; ``.txt`` with one query per line, numbered ``q1``, ``q2``, ...)
or from a list typed in a notebook. Labels are TREC qrels (``query_id 0 doc_id grade``, whitespace separated; the
BEIR ``query-id corpus-id score`` TSV with its header is read too), where ``doc_id`` is a chunk id or a document
id of the corpus: :func:`label_unit` says which, and a document label counts for the document's best chunk.
:func:`write_qrels` writes TREC qrels atomically, so the labelling widget can save after every click.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import InvalidSpecError

QUERY_ID_FIELDS = ("id", "_id", "query_id", "qid", "query-id")
QUERY_TEXT_FIELDS = ("text", "query", "title", "question")
CHUNK, DOCUMENT = "chunk", "document"


def _bad(path, message: str) -> InvalidSpecError:
    return InvalidSpecError(f"{Path(path).name}: {message}", field="queries", value=str(Path(path).name))


def _field(row: Mapping, names: tuple[str, ...]):
    return next((row[n] for n in names if n in row and row[n] not in (None, "")), None)


def _jsonl_queries(path: Path) -> dict[str, str]:
    out = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise _bad(path, f"line {number} is not valid JSON: write one object per line") from None
            qid, text = (_field(row, QUERY_ID_FIELDS), _field(row, QUERY_TEXT_FIELDS)) if isinstance(row, dict) \
                else (None, None)
            if qid is None or not isinstance(text, str):
                raise _bad(path, f"line {number} needs an id ({'/'.join(QUERY_ID_FIELDS[:3])}) and a text")
            out[str(qid)] = text
    return out


def _columns(head: list[str]) -> tuple[int, int, bool]:
    """(id column, text column, whether the first row is a header) of a query table."""
    names = [c.strip().lower() for c in head]
    id_col = next((names.index(n) for n in QUERY_ID_FIELDS if n in names), None)
    text_col = next((names.index(n) for n in QUERY_TEXT_FIELDS if n in names), None)
    if id_col is None or text_col is None:
        return 0, 1, False
    return id_col, text_col, True


def _table_queries(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.reader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",") if r]
    if not rows:
        return {}
    id_col, text_col, header = _columns(rows[0])
    out = {}
    for number, row in enumerate(rows[1:] if header else rows, start=2 if header else 1):
        if len(row) <= max(id_col, text_col):
            raise _bad(path, f"line {number} has {len(row)} column(s): write id and text")
        out[row[id_col].strip()] = row[text_col].strip()
    return out


def _text_queries(path: Path) -> dict[str, str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return queries_from_texts(line for line in lines if line)


def queries_from_texts(texts: Iterable[str] | str) -> dict[str, str]:
    """Queries typed in a notebook (a list, or one per line): ids ``q1``, ``q2``, ..., empty lines dropped."""
    items = texts.splitlines() if isinstance(texts, str) else list(texts)
    items = [t.strip() for t in items if isinstance(t, str) and t.strip()]
    return {f"q{i}": text for i, text in enumerate(items, start=1)}


def read_queries(path) -> dict[str, str]:
    """``{query_id: text}`` from a ``.jsonl``, ``.tsv``, ``.csv`` or ``.txt`` file; one clear error otherwise."""
    where = Path(os.fspath(path)).expanduser()
    if not where.is_file():
        raise InvalidSpecError(f"query file {path} does not exist: give a .jsonl, .tsv, .csv or .txt file",
                               field="queries", value=str(path))
    readers = {".jsonl": _jsonl_queries, ".ndjson": _jsonl_queries, ".tsv": _table_queries, ".csv": _table_queries,
               ".txt": _text_queries}
    reader = readers.get(where.suffix.lower())
    if reader is None:
        raise _bad(where, "is not a query file: use .jsonl, .tsv, .csv or .txt (one query per line)")
    try:
        queries = reader(where)
    except UnicodeDecodeError:
        raise _bad(where, "is not UTF-8 text: re-save it as UTF-8") from None
    if not queries:
        raise _bad(where, "holds no query: write one per line")
    empty = [q for q, t in queries.items() if not t.strip()]
    if empty:
        raise _bad(where, f"query {empty[0]!r} is empty: give it a text or remove it")
    return queries


def _qrels_row(parts: list[str], number: int, path: Path) -> tuple[str, str, float] | None:
    if len(parts) == 4:
        qid, _, doc, grade = parts
    elif len(parts) == 3:
        qid, doc, grade = parts
    else:
        raise _bad(path, f"line {number} has {len(parts)} fields: TREC qrels are 'query_id 0 doc_id grade'")
    try:
        value = float(grade)
    except ValueError:
        if number == 1:
            return None  # a header such as BEIR's 'query-id corpus-id score'
        raise _bad(path, f"line {number}: grade {grade!r} is not a number") from None
    if value < 0:
        value = 0.0  # TREC's -1 (judged not relevant) counts as 0
    return qid, doc, value


def read_qrels(path) -> dict[str, dict[str, float]]:
    """``{query_id: {doc_id: grade}}`` from TREC qrels (or BEIR's 3-column TSV); the last grade of a pair wins."""
    where = Path(os.fspath(path)).expanduser()
    if not where.is_file():
        raise InvalidSpecError(f"qrels file {path} does not exist: give TREC qrels ('query_id 0 doc_id grade' "
                               "per line)", field="qrels", value=str(path))
    qrels: dict[str, dict[str, float]] = {}
    with open(where, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            row = _qrels_row(parts, number, where)
            if row is not None:
                qrels.setdefault(row[0], {})[row[1]] = row[2]
    return qrels


def write_qrels(path, qrels: Mapping[str, Mapping[str, float]]) -> Path:
    """Write TREC qrels (``query_id 0 doc_id grade``, sorted), atomically."""
    where = Path(os.fspath(path)).expanduser()
    where.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for qid in sorted(qrels):
        for doc in sorted(qrels[qid]):
            if any(c.isspace() for c in f"{qid}{doc}"):
                raise InvalidSpecError(f"id {qid!r}/{doc!r} holds whitespace, which TREC qrels cannot carry",
                                       field="qrels", value=f"{qid}/{doc}")
            grade = qrels[qid][doc]
            lines.append(f"{qid} 0 {doc} {int(grade) if float(grade).is_integer() else grade}")
    tmp = where.with_name(f".{where.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, where)
    return where


def label_unit(qrels: Mapping[str, Mapping[str, float]], chunk_ids: Iterable[str], doc_ids: Iterable[str]) -> str:
    """Whether the labels name chunks or documents of the corpus; InvalidSpecError when they name neither."""
    named = {doc for judged in qrels.values() for doc in judged}
    if not named:
        return CHUNK
    chunks, docs = named & set(chunk_ids), named & set(doc_ids)
    if not chunks and not docs:
        example = sorted(named)[0]
        raise InvalidSpecError(f"none of the {len(named)} ids the labels name is a chunk or document of the corpus "
                               f"(e.g. {example!r}): label documents by their path in the folder or their id column, "
                               "or chunks by '<doc_id>#<n>'", field="qrels", value=example)
    return CHUNK if len(chunks) >= len(docs) else DOCUMENT
