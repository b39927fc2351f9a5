"""A corpus: the documents read from a folder or a file (:mod:`~tke_playbook.corpus.sources`), cut into token
chunks (:mod:`~tke_playbook.corpus.chunking`), with what was skipped and why.

    corpus = load_corpus("~/contracts")              # the packaged MiniLM tokenizer, 256-token chunks
    corpus.chunks        # chunk_id, doc_id, source, start, end, tokens, text (text == document[start:end])
    corpus.skipped       # source, reason: one line each, saying what to do
    corpus.card()        # the data-set card: documents, chunks, tokens, kinds, skipped, settings

Chunk ids are ``<doc_id>#<n>``. Documents are tokenized in batches (the Rust tokenizer uses every core) and never
kept whole after their chunks are cut.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import InvalidSpecError
from ..reporting import progress_bar
from .chunking import Chunker, ChunkSettings
from .sources import Document, ReadOptions, Reading, check_path

CHUNK_COLUMNS = ["chunk_id", "doc_id", "source", "start", "end", "tokens", "text"]
DOC_COLUMNS = ["doc_id", "source", "kind", "title", "chars", "chunks"]
BATCH_DOCS, BATCH_CHARS = 256, 4_000_000


@dataclass
class Corpus:
    """Chunks with their documents and the skipped table; ``settings`` says how the chunks were cut."""

    name: str
    chunks: pd.DataFrame
    documents: pd.DataFrame
    skipped: pd.DataFrame
    settings: ChunkSettings

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def ids(self) -> list[str]:
        return self.chunks["chunk_id"].tolist()

    @property
    def texts(self) -> list[str]:
        return self.chunks["text"].tolist()

    def fingerprint(self) -> str:
        """The chunks' ids and texts and the settings, hashed: two corpora with the same fingerprint embed alike."""
        digest = hashlib.sha256(self.settings.key().encode())
        for chunk_id, text in zip(self.chunks["chunk_id"], self.chunks["text"]):
            digest.update(f"{chunk_id}\x1f{text}\x1e".encode("utf-8"))
        return digest.hexdigest()[:16]

    def doc_of(self) -> dict[str, str]:
        """chunk id -> document id."""
        return dict(zip(self.chunks["chunk_id"], self.chunks["doc_id"]))

    def card(self) -> dict:
        """The data-set card: counts, token statistics, kinds, what was skipped, how chunks were cut."""
        tokens = self.chunks["tokens"]
        return {"name": self.name, "documents": len(self.documents), "chunks": len(self.chunks),
                "tokens": int(tokens.sum()), "tokens_per_chunk_mean": round(float(tokens.mean()), 1) if len(tokens)
                else 0.0, "tokens_per_chunk_max": int(tokens.max()) if len(tokens) else 0,
                "kinds": dict(Counter(self.documents["kind"])), "skipped": len(self.skipped),
                "chunk_tokens": self.settings.chunk_tokens, "overlap_tokens": self.settings.overlap_tokens,
                "tokenizer": self.settings.tokenizer, "max_model_len": self.settings.max_model_len}

    def __repr__(self) -> str:
        card = self.card()
        return (f"Corpus({card['name']!r}: {card['documents']} documents, {card['chunks']} chunks of up to "
                f"{card['chunk_tokens']} tokens, {card['skipped']} skipped)")

    def _repr_html_(self) -> str:
        card = self.card()
        return (f"<b>{card['name']}</b>: {card['documents']} documents, {card['chunks']} chunks of up to "
                f"{card['chunk_tokens']} tokens (overlap {card['overlap_tokens']}, {card['tokenizer']}), "
                f"{card['skipped']} skipped")


def _batches(docs: Iterable[Document]) -> Iterator[list[Document]]:
    batch, chars = [], 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc.text)
        if len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def chunk_documents(docs: Iterable[Document], chunker: Chunker, *, progress: bool = True) -> tuple[list, list]:
    """(chunk rows, document rows) for ``docs``."""
    chunk_rows, doc_rows = [], []
    bar = progress_bar(progress, None, "chunking", "doc")
    try:
        for batch in _batches(docs):
            for doc, spans in zip(batch, chunker.spans([d.text for d in batch])):
                for n, (start, end, count) in enumerate(spans):
                    chunk_rows.append((f"{doc.doc_id}#{n}", doc.doc_id, doc.source, start, end, count,
                                       doc.text[start:end]))
                doc_rows.append((doc.doc_id, doc.source, doc.kind, doc.title, len(doc.text), len(spans)))
            bar.update(len(batch))
    finally:
        bar.close()
    return chunk_rows, doc_rows


def _name(path: Path) -> str:
    return path.stem if path.is_file() else (path.resolve().name or "corpus")


def load_corpus(path, chunker: Chunker | None = None, *, options: ReadOptions | None = None, name: str | None = None,
                progress: bool = True) -> Corpus:
    """Read, check and chunk the documents at ``path`` (a folder or a JSONL/CSV/TSV/Parquet file). Anything unusable
    is skipped with its reason (``corpus.skipped``); InvalidSpecError only when nothing at all can be used."""
    where = check_path(path)
    chunker = chunker or Chunker.for_model()
    reading = Reading(where, options or ReadOptions())
    chunk_rows, doc_rows = chunk_documents(reading.documents(), chunker, progress=progress)
    skipped = pd.DataFrame([(s.source, s.reason) for s in reading.skipped], columns=["source", "reason"])
    if not chunk_rows:
        first = f" (first: {skipped.iloc[0]['source']}: {skipped.iloc[0]['reason']})" if len(skipped) else ""
        what = "is an empty folder" if where.is_dir() and not any(os.scandir(where)) else \
            f"has no usable document: {len(skipped)} skipped{first}"
        raise InvalidSpecError(f"{path} {what}: give .txt, .md, .html or .pdf files, or a JSONL/CSV/Parquet file "
                               "with id and text columns", field="docs", value=str(path))
    return Corpus(name or _name(where), pd.DataFrame(chunk_rows, columns=CHUNK_COLUMNS),
                  pd.DataFrame(doc_rows, columns=DOC_COLUMNS), skipped, chunker.settings)


def corpus_from_documents(documents: Iterable[Document], chunker: Chunker | None = None, *, name: str = "corpus",
                          progress: bool = True) -> Corpus:
    """A corpus from documents made in code (ids must be unique)."""
    chunker = chunker or Chunker.for_model()
    chunk_rows, doc_rows = chunk_documents(documents, chunker, progress=progress)
    ids = [row[0] for row in doc_rows]
    if len(set(ids)) != len(ids):
        raise InvalidSpecError("document ids repeat: give each document its own id", field="documents",
                               value=len(ids) - len(set(ids)))
    return Corpus(name, pd.DataFrame(chunk_rows, columns=CHUNK_COLUMNS), pd.DataFrame(doc_rows, columns=DOC_COLUMNS),
                  pd.DataFrame(columns=["source", "reason"]), chunker.settings)
