"""The one interface every embedder has: queries and documents in, one L2-normalised row per text out.

Queries and documents are separate calls because models prompt them differently (E5's ``Instruct: ... Query:``,
BGE's query prefix; documents go in plain). Evaluation, the scorecard and the notebooks take any object with these
two methods - an HTTP client, the in-process model, the lexical baseline or a cache in front of one of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    def embed_queries(self, texts: Iterable[str] | str, task: str | None = None) -> np.ndarray:
        """One row per query, the model's query prompt applied (``task`` where the model takes one)."""

    def embed_documents(self, texts: Iterable[str] | str) -> np.ndarray:
        """One row per document, no prompt."""
