"""Exact top-k search over a corpus of any size, in blocks: no full queries × documents matrix is ever made.

Queries go ``query_block`` at a time against documents ``block_rows`` at a time (from one array, a memory-mapped
``.npy``, or a list of shards); each block's best ``k`` are kept with ``argpartition`` and merged with the best so
far. Cosine similarity: rows are L2-normalised as they are read (a copy of one block). The working memory is
bounded whatever the corpus size, and :func:`search_memory_bytes` states it:

    4·qb·B (scores) + 8·qb·B (argpartition's indices) + 4·B·d (the normalised block)
    + 56·qb·k (merging the best so far) + 4·q·d (the normalised queries)

for ``qb`` = query_block, ``B`` = block_rows, ``d`` = dimensions, ``q`` queries - about 40 MiB with the defaults
(blocks of 256 queries × 8,192 rows, d = 384, k = 100, 1,000 queries), against 4·q·documents bytes for a full
matrix (400 MB for 1,000 queries over 100,000 chunks). Exact: the same top k as a full sort, ties broken by the
lower document index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from ..errors import InvalidSpecError

DEFAULT_BLOCK_ROWS = 8192
DEFAULT_QUERY_BLOCK = 256


def search_memory_bytes(dim: int, k: int, *, queries: int = DEFAULT_QUERY_BLOCK, block_rows: int = DEFAULT_BLOCK_ROWS,
                        query_block: int = DEFAULT_QUERY_BLOCK) -> int:
    """The working memory of :func:`topk_search` beyond its inputs and outputs (bytes), whatever the corpus size."""
    block = min(query_block, queries)
    return 12 * block * block_rows + 4 * block_rows * dim + 56 * block * k + 4 * queries * dim


def _normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]  # no rows-sized temporary
    return rows / np.maximum(norms, 1e-12)


def _blocks(documents, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(offset of the block's first row, the block) over an array or a sequence of shard arrays."""
    parts = [documents] if isinstance(documents, np.ndarray) else list(documents)
    offset = 0
    for part in parts:
        for start in range(0, len(part), block_rows):
            yield offset + start, part[start:start + block_rows]
        offset += len(part)


def merge_top(best_scores: np.ndarray, best_index: np.ndarray, scores: np.ndarray, offset: int,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge a block's scores (queries × block rows, rows numbered from ``offset``) into the running best ``k``."""
    if scores.shape[1] > k:
        part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]  # the k largest, no negated copy
        block_scores = np.take_along_axis(scores, part, axis=1)
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        block_scores = scores
    all_scores = np.concatenate([best_scores, block_scores], axis=1)
    all_index = np.concatenate([best_index, part + offset], axis=1)
    order = np.lexsort((all_index, -all_scores), axis=1)[:, :k]  # score descending, then lower index
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_index, order, axis=1)


def _check(queries: np.ndarray, k: int, block_rows: int, query_block: int) -> None:
    if queries.ndim != 2 or not len(queries):
        raise InvalidSpecError(f"queries must be a 2-D array with at least one row, got shape {queries.shape}",
                               field="queries", value=queries.shape)
    for name, value in (("k", k), ("block_rows", block_rows), ("query_block", query_block)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InvalidSpecError(f"{name}={value!r}: use a positive whole number", field=name, value=value)


def topk_search(queries, documents, k: int = 100, *, block_rows: int = DEFAULT_BLOCK_ROWS,
                query_block: int = DEFAULT_QUERY_BLOCK, normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, indexes)``, each queries × min(k, documents): the ``k`` most similar documents of every query, best
    first (cosine when ``normalise``, else dot product). ``documents`` is an array (or memory map) or a list of
    shard arrays, read ``block_rows`` rows at a time."""
    q = np.asarray(queries, dtype=np.float32)
    _check(q, k, block_rows, query_block)
    q = _normalise(q) if normalise else q
    total = len(documents) if isinstance(documents, np.ndarray) else sum(len(p) for p in documents)
    k = min(int(k), total)
    out_scores = np.empty((len(q), k), dtype=np.float32)
    out_index = np.empty((len(q), k), dtype=np.int64)
    for qs in range(0, len(q), query_block):
        rows = q[qs:qs + query_block]
        best_s = np.empty((len(rows), 0), dtype=np.float32)
        best_i = np.empty((len(rows), 0), dtype=np.int64)
        for offset, raw in _blocks(documents, block_rows):
            block = _normalise(raw) if normalise else np.asarray(raw, dtype=np.float32)
            if block.shape[1] != q.shape[1]:
                raise InvalidSpecError(f"queries have {q.shape[1]} dimensions but documents {block.shape[1]}: embed "
                                       "both with the same model", field="documents", value=block.shape[1])
            best_s, best_i = merge_top(best_s, best_i, rows @ block.T, offset, k)
            del block  # one normalised block at a time
        out_scores[qs:qs + len(rows)], out_index[qs:qs + len(rows)] = best_s, best_i
    return out_scores, out_index


def run_from_topk(scores: np.ndarray, indexes: np.ndarray, query_ids: Sequence[str],
                  doc_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """A TREC-style run ``{query_id: {doc_id: score}}`` from :func:`topk_search`'s result."""
    return {str(q): {str(doc_ids[i]): float(s) for s, i in zip(srow, irow)}
            for q, srow, irow in zip(query_ids, scores, indexes)}
