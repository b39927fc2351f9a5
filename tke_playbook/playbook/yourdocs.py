"""Notebook 07's glue: where the documents, queries and labels come from, and which systems compare on them.

Without a folder of your own, the demo corpus is the Python documentation's topic texts that ship with the
interpreter (written once under the toolkit's state folder), with queries and labels derived from their headings
- so the notebook runs anywhere, offline.
"""

from __future__ import annotations

from pathlib import Path

from ..corpus.chunking import Chunker, served_chunker
from ..corpus.pydocs import pydoc_queries, write_pydoc_corpus
from ..corpus.queries import read_qrels, read_queries
from ..embed.local import LocalEmbedder
from ..errors import NotDeployedError
from ..hostenv import state_dir

DEMO_NAME = "python-docs"


def corpus_folder(docs: str = "", limit: int | None = None) -> Path:
    """``docs`` when given; else the demo corpus (the first ``limit`` pydoc topics) in the state folder."""
    return Path(docs).expanduser() if docs else write_pydoc_corpus(state_dir() / "corpora-src" / DEMO_NAME, limit)


def queries_and_labels(queries: str = "", qrels: str = "", limit: int | None = None) -> tuple[dict, dict]:
    """Queries and labels from files (labels optional), or the demo corpus's heading queries and their labels."""
    if queries:
        return read_queries(queries), (read_qrels(qrels) if qrels else {})
    return pydoc_queries(limit)


def labels_path(name: str) -> Path:
    """Where the labelling widget keeps the judgements for corpus ``name`` (TREC qrels)."""
    return state_dir() / "labels" / f"{name}.qrels"


def report_path(name: str) -> Path:
    return state_dir() / "reports" / f"{name}.html"


def document_systems(pb, extra: str = "bm25,hybrid") -> tuple[list, Chunker, str]:
    """``(systems, chunker, note)``: the target's served model first, then ``extra`` (names such as ``bm25``,
    ``tfidf``, ``hybrid``, URLs), and the chunker for the served model (its tokenizer, its ``max_model_len``). On
    the local target with nothing deployed, the packaged model in-process stands in."""
    try:
        endpoint = pb.endpoint()
        first, note = endpoint.client(), f"{endpoint.model} served at {endpoint.url}"
        chunker = served_chunker(endpoint.url, endpoint.api_key)
    except NotDeployedError:
        if getattr(pb, "kube", None) is not None:
            raise
        first, note = LocalEmbedder(), "nothing deployed (03 not run): the packaged model in-process stands in"
        chunker = served_chunker(None)
    return [first, *[name.strip() for name in extra.split(",") if name.strip()]], chunker, note
