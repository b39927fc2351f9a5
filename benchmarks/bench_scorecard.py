"""The research scorecard on the local target, offline (issue 15): all-MiniLM-L6-v2 served by the local server,
BM25, their hybrid (reciprocal rank fusion) and the TF-IDF baseline on the shipped bilingual set through mteb,
with bootstrap intervals and paired tests; served-vector parity of the local server against sentence-transformers
in-process, and of a deliberately wrong pooling (CLS instead of mean); and the embedding cache's effect.

Timing, in one process: mteb is warmed up first (imports and first-call set-up, untimed), then the scorecard runs
cold (empty cache: every text goes to the server) and again warm (new clients, same cache folder).
``warm_speedup`` is cold seconds / warm seconds. Ends with

    RESULT embedders=N parity_min_cos=… wrong_pooling_caught=1 warm_speedup=… ndcg10_<name>=… ci95_<name>=LO..HI …

    python benchmarks/bench_scorecard.py
"""

from __future__ import annotations

import os
import re
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd  # noqa: E402

from tke_playbook.embed.http import EmbeddingClient  # noqa: E402
from tke_playbook.embed.local import LocalEmbedder  # noqa: E402
from tke_playbook.hostenv import offline_model_dir  # noqa: E402
from tke_playbook.localserver import start_server  # noqa: E402
from tke_playbook.scorecard import run_scorecard  # noqa: E402
from tke_playbook.scorecard import BM25Retriever, Cause, Hybrid, ReferenceEncoder, check_parity


class CountingClient(EmbeddingClient):
    """The local server's client, counting the texts it really sends."""

    sent = 0

    def embed(self, texts, **kwargs):
        items = [texts] if isinstance(texts, str) else list(texts)
        CountingClient.sent += len(items)
        return super().embed(items, **kwargs)


def systems(url: str) -> list:
    client = CountingClient(url)
    return [client, BM25Retriever(), Hybrid(client, name="hybrid-minilm+bm25"), "tfidf"]


def short(name: str) -> str:
    return {"sentence-transformers/all-MiniLM-L6-v2": "minilm", "lexical-tfidf": "tfidf"}.get(
        name, re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower())


def main() -> None:
    cache = tempfile.mkdtemp(prefix="tke-scorecard-cache-")
    with start_server() as server:
        run_scorecard(["bm25"], cache_dir=tempfile.mkdtemp(), progress=False, visuals=False)  # warm up mteb, untimed
        first, second = systems(server.url), systems(server.url)  # clients made outside the timed runs
        began = time.perf_counter()
        cold = run_scorecard(first, cache_dir=cache, progress=False)
        cold_s = time.perf_counter() - began
        sent_cold = CountingClient.sent
        began = time.perf_counter()
        warm = run_scorecard(second, cache_dir=cache, progress=False)
        warm_s = time.perf_counter() - began
        sent_warm = CountingClient.sent - sent_cold
        reference = ReferenceEncoder(offline_model_dir())
        served = check_parity(EmbeddingClient(server.url), reference)
    wrong = check_parity(LocalEmbedder(pooling="cls"), reference)

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(cold.table)
        print(cold.paired_table())
        print(cold.disagreements(cold.systems[0], cold.systems[1]))
        print(served.table())
        print(wrong.table())
    print(served.sentence())
    print(wrong.sentence())
    print(f"cold {cold_s:.3f} s ({sent_cold} texts sent to the server, {sum(not r for r in cold.reused.values())} "
          f"mteb evaluations), warm {warm_s:.3f} s ({sent_warm} texts sent, "
          f"{sum(not r for r in warm.reused.values())} mteb evaluations); tables equal: {cold.table.equals(warm.table)}")
    parts = [f"embedders={len(cold.systems)}", f"parity_min_cos={served.min_cos:.6f}",
             f"wrong_pooling_caught={int(not wrong.passed and wrong.cause is Cause.POOLING)}",
             f"warm_speedup={cold_s / warm_s:.1f}"]
    for name, row in cold.table.iterrows():
        parts.append(f"ndcg10_{short(name)}={row['ndcg@10']:.3f}")
        parts.append(f"ci95_{short(name)}={row['ndcg@10 low']:.3f}..{row['ndcg@10 high']:.3f}")
    print("RESULT " + " ".join(parts))


if __name__ == "__main__":
    main()
