"""Notebook 07's glue: where the documents, queries, labels and the report live (the systems that compare on them
come from the target's evaluation step: ``pb.evaluation.document_systems()``).

Without a folder of your own, the demo corpus is the Python documentation's topic texts that ship with the
interpreter (written once under the toolkit's state folder), with queries and labels derived from their headings
- so the notebook runs anywhere, offline.
"""

from __future__ import annotations

from pathlib import Path

from ..corpus.pydocs import pydoc_queries, write_pydoc_corpus
from ..corpus.queries import read_qrels, read_queries

DEMO_NAME = "python-docs"


def corpus_folder(docs: str, limit: int | None, home: Path) -> Path:
    """``docs`` when given; else the demo corpus (the first ``limit`` pydoc topics) in the state folder ``home``
    (``pb.settings.home``)."""
    return Path(docs).expanduser() if docs else write_pydoc_corpus(Path(home) / "corpora-src" / DEMO_NAME, limit)


def queries_and_labels(queries: str = "", qrels: str = "", limit: int | None = None) -> tuple[dict, dict]:
    """Queries and labels from files (labels optional), or the demo corpus's heading queries and their labels."""
    if queries:
        return read_queries(queries), (read_qrels(qrels) if qrels else {})
    return pydoc_queries(limit)


def labels_path(name: str, home: Path) -> Path:
    """Where the labelling widget keeps the judgements for corpus ``name`` (TREC qrels), under ``home``."""
    return Path(home) / "labels" / f"{name}.qrels"


def report_path(name: str, home: Path) -> Path:
    """Where 07 writes corpus ``name``'s HTML report, under ``home``."""
    return Path(home) / "reports" / f"{name}.html"
