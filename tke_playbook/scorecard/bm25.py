"""BM25 and TF-IDF as retrievers: the lexical baselines a neural model has to beat.

:class:`BM25Retriever` ranks with Okapi BM25 (``bm25s``, Lucene's variant) over the same features as the TF-IDF
baseline but without character n-grams: lowercased Latin words, and Chinese characters as unigrams and bigrams
(Chinese has no spaces). It scores every document for every query, so it can be fused with a dense model.
"""

from __future__ import annotations

from collections.abc import Sequence

import bm25s
import numpy as np

from ..embed.api import check_texts
from ..embed.lexical import tokenize
from ..errors import InvalidSpecError, PlaybookError


def bm25_tokens(text: str) -> list[str]:
    """The BM25 terms of ``text``: words and Chinese unigrams/bigrams (no character n-grams)."""
    return tokenize(text, char_ngrams=0)


class BM25Retriever:
    """Okapi BM25 (``k1``, ``b``) fitted on a corpus with :meth:`index`; :meth:`scores` gives queries × documents."""

    kind = "bm25"

    def __init__(self, *, name: str = "bm25", k1: float = 1.5, b: float = 0.75):
        if not (0 < float(k1) <= 10) or not (0 <= float(b) <= 1):
            raise InvalidSpecError(f"k1={k1!r}, b={b!r}: use 0 < k1 <= 10 and 0 <= b <= 1 (defaults 1.5 and 0.75)",
                                   field="k1/b", value=(k1, b))
        self.name, self.k1, self.b = name, float(k1), float(b)
        self.doc_ids: list[str] = []
        self._index: bm25s.BM25 | None = None

    def __repr__(self) -> str:
        return f"BM25Retriever(name={self.name!r}, k1={self.k1}, b={self.b}, documents={len(self.doc_ids)})"

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> "BM25Retriever":
        texts = check_texts(list(texts), "texts")
        if len(doc_ids) != len(texts):
            raise InvalidSpecError(f"{len(doc_ids)} document ids for {len(texts)} texts", field="doc_ids",
                                   value=len(doc_ids))
        index = bm25s.BM25(k1=self.k1, b=self.b)
        index.index([bm25_tokens(t) or [""] for t in texts], show_progress=False)
        self._index, self.doc_ids = index, [str(d) for d in doc_ids]
        return self

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 score of every indexed document for each query (float32, queries × documents)."""
        if self._index is None:
            raise PlaybookError(f"{self.name} has no index yet: call index(doc_ids, texts) first", obj=self)
        items = check_texts(list(queries), "queries")
        rows = [self._index.get_scores(bm25_tokens(q)) for q in items]
        return np.asarray(rows, dtype=np.float32).reshape(len(items), len(self.doc_ids))
