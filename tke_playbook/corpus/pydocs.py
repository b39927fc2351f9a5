"""A corpus every machine has, for the offline demo: the topic texts of the Python documentation that ship with the
interpreter (``pydoc_data.topics``, what ``help("assert")`` prints), written as a folder of ``.txt`` files.

Queries and labels are derived from the texts' own headings, not written by hand: every heading (a line underlined
with ``*``, ``=`` or ``-``) is a query, and the topics whose text carries that heading are its relevant documents
(grade 1). A heading found in several topics (``Coroutines`` is in ``async`` and ``compound``) has several.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InvalidSpecError

_UNDERLINE = re.compile(r"([=*\-~^])\1+")


def pydoc_topics(limit: int | None = None) -> dict[str, str]:
    """``{topic: text}`` from the interpreter's ``pydoc_data``, sorted by topic; the first ``limit`` when given."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # a trimmed Python without its documentation data
        raise InvalidSpecError("This Python has no pydoc_data (its documentation topics): use another corpus, or a "
                               "full CPython install", field="corpus", value="pydoc_data", cause=exc) from exc
    names = sorted(topics)[:limit] if limit else sorted(topics)
    return {name: topics[name] for name in names}


def headings(text: str) -> list[str]:
    """The headings of a topic text: lines underlined by a rule of ``*``, ``=``, ``-``, ``~`` or ``^`` of their length."""
    lines = text.splitlines()
    found = []
    for line, rule in zip(lines, lines[1:]):
        title, rule = line.strip(), rule.strip()
        if title and _UNDERLINE.fullmatch(rule) and len(rule) == len(title):
            found.append(title)
    return found


def write_pydoc_corpus(folder, limit: int | None = None) -> Path:
    """Write each topic as ``<topic>.txt`` into ``folder`` (created; files rewritten only when they changed)."""
    where = Path(folder)
    where.mkdir(parents=True, exist_ok=True)
    for name, text in pydoc_topics(limit).items():
        path = where / f"{name}.txt"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return where


def pydoc_queries(limit: int | None = None) -> tuple[dict[str, str], dict[str, dict[str, float]]]:
    """``(queries, qrels)``: one query per distinct heading (ids ``h1``, ``h2``, ... in topic order), relevant
    documents ``<topic>.txt`` - the document ids of :func:`write_pydoc_corpus`'s folder."""
    found: dict[str, set[str]] = {}
    for name, text in pydoc_topics(limit).items():
        for title in headings(text):
            found.setdefault(title, set()).add(f"{name}.txt")
    queries, qrels = {}, {}
    for i, (title, docs) in enumerate(found.items(), start=1):
        queries[f"h{i}"] = title
        qrels[f"h{i}"] = {doc: 1.0 for doc in sorted(docs)}
    return queries, qrels
