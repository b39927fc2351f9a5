"""A lexical retrieval baseline behind the embedder interface: TF-IDF over words, character n-grams and Chinese
character bigrams, returned as L2-normalised dense float32 vectors.

It is a real system, not a stub: it ranks by shared vocabulary, so it is strong when a query and a document use
the same words and blind to meaning (synonyms, paraphrases, other languages). Comparing it with a neural model
shows what the embeddings buy. Tokens:

- Latin words (lowercased, NFKC-normalised) as whole words (``w:pods``) and as character 3-grams with word
  boundaries (``c:#po``, ``c:pod`` …), so "pod" and "pods" still match;
- runs of Chinese characters as unigrams and bigrams (``z:排``, ``z:排序``), since Chinese has no spaces.

Weights are ``(1 + log tf) * idf`` with the smooth idf ``log((1 + N) / (1 + df)) + 1``; rows are L2-normalised,
so the dot product of two vectors is their cosine. Texts sharing no vocabulary get a zero vector (cosine 0).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import InvalidSpecError, PlaybookError
from .api import check_texts as _texts

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_IS_CJK = re.compile(rf"[{_CJK}]")


def tokenize(text: str, *, char_ngrams: int = 3) -> list[str]:
    """The features of ``text``: words and their character n-grams, Chinese unigrams and bigrams."""
    features: list[str] = []
    for run in _TOKEN.findall(unicodedata.normalize("NFKC", str(text)).lower()):
        if _IS_CJK.match(run):
            features.extend(f"z:{ch}" for ch in run)
            features.extend(f"z:{run[i:i + 2]}" for i in range(len(run) - 1))
        else:
            features.append(f"w:{run}")
            padded = f"#{run}#"
            if char_ngrams and len(padded) > char_ngrams:
                features.extend(f"c:{padded[i:i + char_ngrams]}" for i in range(len(padded) - char_ngrams + 1))
    return features


class LexicalEmbedder:
    """TF-IDF "embeddings" with a vocabulary fitted on a corpus (see the module doc for the exact weighting).

    ``fit(corpus)`` learns the vocabulary and idf; :meth:`embed_documents` fits on its documents when nothing was
    fitted yet. Later calls reuse that vocabulary (call :meth:`fit` again to refit); unseen terms are ignored.
    """

    model = None  # no catalog entry: compare.py reads dim and memory from this object

    def __init__(self, *, name: str = "lexical-tfidf", char_ngrams: int = 3, max_features: int | None = 50_000):
        if char_ngrams not in (0, 2, 3, 4, 5):
            raise InvalidSpecError(f"char_ngrams={char_ngrams!r}: use 0 (words only) or 2-5", field="char_ngrams",
                                   value=char_ngrams)
        if max_features is not None and (not isinstance(max_features, int) or max_features < 1):
            raise InvalidSpecError(f"max_features={max_features!r}: use a positive integer or None",
                                   field="max_features", value=max_features)
        self.name = name
        self.char_ngrams = char_ngrams
        self.max_features = max_features
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float32)

    def __repr__(self) -> str:
        return f"LexicalEmbedder(name={self.name!r}, fitted={self.fitted}, dim={self.dim})"

    @property
    def fitted(self) -> bool:
        return bool(self.vocabulary)

    @property
    def dim(self) -> int:
        return len(self.vocabulary)

    @property
    def memory_bytes(self) -> int:
        """Approximate size of the fitted model: the idf table plus the vocabulary strings."""
        return int(self.idf.nbytes + sum(len(t.encode("utf-8")) + 8 for t in self.vocabulary))

    def fit(self, corpus: Sequence[str]) -> LexicalEmbedder:
        docs = _texts(corpus, "corpus")
        counts = Counter(f for text in docs for f in set(tokenize(text, char_ngrams=self.char_ngrams)))
        if not counts:
            raise InvalidSpecError("cannot fit the lexical baseline: the corpus has no words; pass the documents "
                                   "you will search", field="corpus", value=len(docs))
        terms = sorted(counts, key=lambda t: (-counts[t], t))[: self.max_features]
        terms.sort()
        self.vocabulary = {t: i for i, t in enumerate(terms)}
        n = len(docs)
        self.idf = np.array([math.log((1 + n) / (1 + counts[t])) + 1.0 for t in terms], dtype=np.float32)
        return self

    def transform(self, texts: Iterable[str] | str) -> np.ndarray:
        """TF-IDF vectors for ``texts`` with the fitted vocabulary, L2-normalised, float32."""
        if not self.fitted:
            raise PlaybookError(f"{self.name} has no vocabulary yet: call fit(documents) or embed_documents(...) "
                                "before embedding queries", obj=self)
        items = _texts(texts, "texts")
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for row, text in enumerate(items):
            tf = Counter(f for f in tokenize(text, char_ngrams=self.char_ngrams) if f in self.vocabulary)
            for term, count in tf.items():
                col = self.vocabulary[term]
                out[row, col] = (1.0 + math.log(count)) * self.idf[col]
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out

    def embed_documents(self, texts: Iterable[str] | str) -> np.ndarray:
        items = _texts(texts, "texts")
        if not self.fitted:
            self.fit(items)
        return self.transform(items)

    def embed_queries(self, texts: Iterable[str] | str, task: str | None = None) -> np.ndarray:
        """Queries use the same weighting as documents; ``task`` is accepted for the interface and ignored."""
        return self.transform(texts)
