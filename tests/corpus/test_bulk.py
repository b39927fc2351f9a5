"""Bulk embedding with the pod worker as local processes: balanced shards, verified output, a rerun that redoes
only what is missing, a killed worker resumed, server faults retried - the download's fault tests, for vectors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fake_embedding_server import FakeEmbeddingServer, fake_vector
from tke_playbook.corpus import Document, corpus_from_documents
from tke_playbook.corpus.bulk import embed_local, run_local_embedding
from tke_playbook.corpus.shards import (balanced_bounds, embed_plan, embedding_progress, output_dir, read_embeddings,
                                        stage_corpus)
from tke_playbook.errors import PlaybookError, VerificationError
from tke_playbook.podworker.embedworker import npy_header

MODEL = "fake-model"
KEY = "sk-bulk-secret"


@pytest.fixture(scope="module")
def corpus():
    docs = [Document(f"d{i}", f"d{i}", "txt", " ".join(f"w{i}x{j}" for j in range(3 + i % 7))) for i in range(240)]
    return corpus_from_documents(docs, name="bulk test", progress=False)


def _check_vectors(corpus, ids, vectors):
    assert ids == corpus.ids
    matrix = np.concatenate([np.asarray(v) for v in vectors])
    want = np.stack([fake_vector(t) for t in corpus.texts])
    np.testing.assert_allclose(matrix, want, rtol=1e-6)


def test_npy_header_is_what_numpy_writes(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1234, 384), dtype="<f4"))
    assert (tmp_path / "x.npy").read_bytes()[:128] == npy_header(1234, 384)


def test_shards_are_balanced_by_tokens():
    weights = [1] * 50 + [10] * 5 + [1] * 45
    bounds = balanced_bounds(weights, 4)
    shares = [sum(weights[a:b]) for a, b in bounds]
    assert bounds[0][0] == 0 and bounds[-1][1] == 100 and len(bounds) == 4
    assert max(shares) - sum(weights) / 4 <= max(weights)


def test_embed_verify_and_a_rerun_embeds_nothing(corpus, tmp_path):
    with FakeEmbeddingServer(api_key=KEY, model=MODEL) as server:
        plan, manifest, ids, vectors = embed_local(corpus, tmp_path, endpoint=server.url, model=MODEL, shards=3,
                                                   workers=3, api_key=KEY, batch=16, progress=False)
        asked = sum(len(r["inputs"]) for r in server.requests)
        assert asked == len(corpus) and manifest["rows"] == len(corpus) and len(manifest["shards"]) == 3
        _check_vectors(corpus, ids, vectors)
        embed_local(corpus, tmp_path, endpoint=server.url, model=MODEL, shards=3, workers=3, api_key=KEY,
                    batch=16, progress=False)
        assert sum(len(r["inputs"]) for r in server.requests) == asked  # rerun re-embedded nothing
        damaged = output_dir(tmp_path, plan) / "shard-00001.npy"
        data = bytearray(damaged.read_bytes())
        data[-1] ^= 0xFF
        damaged.write_bytes(bytes(data))
        with pytest.raises(VerificationError, match="shard-00001.npy does not match"):
            read_embeddings(tmp_path, plan)
        run_local_embedding(plan, tmp_path, workers=3, api_key=KEY, progress=False)
        again = sum(len(r["inputs"]) for r in server.requests) - asked
        assert again == plan["shards"][1]["rows"]  # that shard alone, embedded anew
        _check_vectors(corpus, *read_embeddings(tmp_path, plan))


@pytest.mark.parametrize("faults", [["500", "503", "500"], ["close", "close"], ["429", "slow"]],
                         ids=["server-500s", "dropped-connections", "429-and-slow"])
def test_transient_faults_are_retried(corpus, tmp_path, faults):
    with FakeEmbeddingServer(model=MODEL, script=faults, slow_s=1.5) as server:
        _, _, ids, vectors = embed_local(corpus, tmp_path, endpoint=server.url, model=MODEL, shards=2, workers=2,
                                         batch=32, progress=False, worker_args=("--backoff", "0.05", "--timeout", "1"))
    _check_vectors(corpus, ids, vectors)


def test_errors_every_time_give_up_with_the_reason_and_keep_finished_shards(corpus, tmp_path):
    with FakeEmbeddingServer(model=MODEL, api_key="another key") as server:
        with pytest.raises(PlaybookError, match="refused the API key"):
            embed_local(corpus, tmp_path, endpoint=server.url, model=MODEL, shards=2, api_key=KEY, progress=False)
    with FakeEmbeddingServer(model=MODEL, error_rate=1.0, error_kinds=("500",)) as server:
        with pytest.raises(PlaybookError, match="giving up on the batch .* after 2 retries"):
            embed_local(corpus, tmp_path, endpoint=server.url, model=MODEL, shards=2, progress=False,
                        worker_args=("--backoff", "0.01", "--retries", "2"))


def test_a_killed_worker_resumes_where_its_rows_were_synced(corpus, tmp_path):
    with FakeEmbeddingServer(model=MODEL, delay_s=0.05) as server:
        staged = stage_corpus(corpus, tmp_path, shards=1)
        plan = embed_plan(staged, endpoint=server.url, model=MODEL, batch=8, concurrency=1)
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        proc = subprocess.Popen([sys.executable, "-m", "tke_playbook.podworker.embedworker", "--plan",
                                 str(tmp_path / "plan.json"), "--root", str(tmp_path), "--index", "0"],
                                stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=os.getcwd()))
        deadline = time.monotonic() + 30
        while embedding_progress(tmp_path, plan)[0]["rows_done"] < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        synced = embedding_progress(tmp_path, plan)[0]["rows_done"]
        assert 0 < synced < len(corpus)
        with pytest.raises(PlaybookError, match="no manifest"):
            read_embeddings(tmp_path, plan)
        before = len(server.requests)
        server.delay_s = 0
        run_local_embedding(plan, tmp_path, workers=1, progress=False)
        resumed = [text for r in server.requests[before:] for text in r["inputs"]]
        assert len(resumed) == len(corpus) - synced and resumed[0] == corpus.texts[synced]
    _check_vectors(corpus, *read_embeddings(tmp_path, plan))
