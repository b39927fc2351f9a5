"""Queries and qrels files, and the resumable vector cache with bounded concurrency."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tke_playbook.corpus import VectorCache, embed_texts, label_unit, read_qrels, read_queries, write_qrels
from tke_playbook.errors import InvalidSpecError


def test_query_files_of_every_kind(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"_id": "1", "text": "pods"}\n{"_id": "2", "text": "nodes"}\n')
    (tmp_path / "q.tsv").write_text("query-id\ttext\n1\tpods\n")
    (tmp_path / "q2.tsv").write_text("1\tpods\n2\tnodes\n")
    (tmp_path / "q.txt").write_text("pods\n\nnodes\n")
    assert read_queries(tmp_path / "q.jsonl") == {"1": "pods", "2": "nodes"}
    assert read_queries(tmp_path / "q.tsv") == {"1": "pods"}
    assert read_queries(tmp_path / "q2.tsv") == {"1": "pods", "2": "nodes"}
    assert read_queries(tmp_path / "q.txt") == {"q1": "pods", "q2": "nodes"}


def test_qrels_trec_and_beir_round_trip(tmp_path):
    (tmp_path / "trec.txt").write_text("q1 0 a.txt 1\nq1 0 b.txt -1\nq2 0 c.txt 2\n")
    (tmp_path / "beir.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta.txt\t1\n")
    qrels = read_qrels(tmp_path / "trec.txt")
    assert qrels == {"q1": {"a.txt": 1.0, "b.txt": 0.0}, "q2": {"c.txt": 2.0}}
    assert read_qrels(tmp_path / "beir.tsv") == {"q1": {"a.txt": 1.0}}
    assert read_qrels(write_qrels(tmp_path / "out.txt", qrels)) == qrels
    (tmp_path / "bad.txt").write_text("q1 0 a.txt 1\nq1 a.txt\n")
    with pytest.raises(InvalidSpecError, match="line 2 has 2 fields"):
        read_qrels(tmp_path / "bad.txt")


def test_label_unit_tells_chunks_from_documents():
    chunks, docs = ["a.txt#0", "a.txt#1"], ["a.txt"]
    assert label_unit({"q": {"a.txt#1": 1}}, chunks, docs) == "chunk"
    assert label_unit({"q": {"a.txt": 1}}, chunks, docs) == "document"
    with pytest.raises(InvalidSpecError, match="none of the 1 ids"):
        label_unit({"q": {"zzz": 1}}, chunks, docs)


class SlowCounting:
    name, revision = "slow", "1"

    def __init__(self):
        self.in_flight = self.most = self.texts = 0
        self.lock = threading.Lock()

    def embed_documents(self, texts):
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.texts += len(texts)
        time.sleep(0.02)
        with self.lock:
            self.in_flight -= 1
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    embed_queries = embed_documents


def test_concurrency_is_bounded_and_a_rerun_embeds_nothing(tmp_path):
    texts = [f"text {i}" for i in range(300)] + ["text 5"]  # a repeat is embedded once
    slow = SlowCounting()
    vectors, stats = embed_texts(slow, texts, VectorCache(tmp_path, "slow|1"), batch_size=10, concurrency=3,
                                 progress=False, flush_rows=50)
    assert 1 < slow.most <= 3 and slow.texts == 300 and stats.embedded == 300
    assert vectors[0, 0] == len("text 0") and (vectors[5] == vectors[-1]).all()
    again = SlowCounting()
    vectors2, stats2 = embed_texts(again, texts, VectorCache(tmp_path, "slow|1"), progress=False)
    assert again.texts == 0 and stats2.cached == len(texts) and (vectors2 == vectors).all()


def test_an_interrupted_run_keeps_what_finished(tmp_path):
    class Failing(SlowCounting):
        def embed_documents(self, texts):
            if "text 150" in texts:
                raise KeyboardInterrupt
            return super().embed_documents(texts)

    texts = [f"text {i}" for i in range(300)]
    with pytest.raises(KeyboardInterrupt):
        embed_texts(Failing(), texts, VectorCache(tmp_path, "slow|1"), batch_size=10, concurrency=1, progress=False,
                    flush_rows=1000)
    kept = VectorCache(tmp_path, "slow|1")
    before = len(kept)
    assert 100 <= before < 300  # the batches before the interrupt were flushed
    resumed = SlowCounting()
    embed_texts(resumed, texts, kept, batch_size=10, progress=False)
    assert resumed.texts == 300 - before  # only what was missing
