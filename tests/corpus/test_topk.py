"""Exact top-k in blocks: the same answer as a full sort, in bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from tke_playbook.corpus import run_from_topk, search_memory_bytes, topk_search


def _full(q, d, k):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    scores = qn @ dn.T
    order = np.lexsort((np.broadcast_to(np.arange(len(d)), scores.shape), -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("block_rows, query_block", [(7, 3), (1000, 1000), (64, 5)])
def test_blocks_give_the_full_sort(block_rows, query_block):
    rng = np.random.default_rng(1)
    q, d = rng.standard_normal((11, 16)), rng.standard_normal((500, 16))
    d[100] = d[7]  # a tie: the lower index first
    scores, index = topk_search(q, d, 20, block_rows=block_rows, query_block=query_block)
    want_s, want_i = _full(q, d, 20)
    np.testing.assert_allclose(scores, want_s, rtol=1e-5, atol=1e-6)
    assert (index == want_i).all()


def test_shards_are_searched_as_one_corpus():
    rng = np.random.default_rng(2)
    q, d = rng.standard_normal((4, 8)), rng.standard_normal((90, 8)).astype(np.float32)
    whole = topk_search(q, d, 5, block_rows=16)
    parts = topk_search(q, [d[:33], d[33:34], d[34:]], 5, block_rows=16)
    assert (whole[1] == parts[1]).all()
    run = run_from_topk(*parts, ["a", "b", "c", "d"], [f"c{i}" for i in range(90)])
    assert list(run["a"]) == [f"c{i}" for i in parts[1][0]]


def test_memory_stays_bounded_and_as_stated():
    rng = np.random.default_rng(3)
    docs = rng.standard_normal((30_000, 32)).astype(np.float32)
    q = rng.standard_normal((300, 32)).astype(np.float32)
    tracemalloc.start()
    topk_search(q, docs, 10, block_rows=2048, query_block=100)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stated = search_memory_bytes(32, 10, queries=300, block_rows=2048, query_block=100)
    outputs = 300 * 10 * (4 + 8)
    full = 4 * len(q) * len(docs)
    assert peak <= 1.1 * (stated + outputs) < full / 5  # the stated bound, give or take small arrays
