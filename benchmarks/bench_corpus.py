"""Your own documents at scale (issue 23): a generated corpus of at least 100,000 chunks, read from a JSONL file and
chunked by the packaged all-MiniLM-L6-v2 tokenizer, embedded through the local server's ``/v1/embeddings`` by the
scorecard's bulk path (bounded concurrency, progress, resumable on-disk cache), searched exactly in blocks, and
scored against generated labels.

Measured in one run, against the same server:

* ``embed_chunks_per_s``: the scorecard's embedding rate over the whole corpus (cold cache).
* ``embed_vs_client_ceiling``: that rate divided by the ceiling - a bare client sending the same batches at the same
  concurrency straight to ``/v1/embeddings`` (no cache, no bookkeeping) on a sample of the chunks, measured just
  before. 1.0 means the pipeline costs nothing over the server.
* ``rerun_reembedded``: texts sent to the server by an identical second run (the cache must answer everything).
* ``topk_peak_mb``: peak memory of the exact top-100 search for 1,000 queries (tracemalloc), beside the full
  queries x chunks matrix it avoids (``full_matrix_mb``) and the stated bound (``topk_stated_mb``).
* ``labels_for_ci_halved``: how many more judgements would halve the nDCG@10 interval (3·n·J, see
  ``scorecard/corpusrun.py``), for the generated labels (one relevant document per query).

    python benchmarks/bench_corpus.py [--chunks 100000] [--queries 300]

Ends with ``RESULT docs=… chunks=… embed_chunks_per_s=… embed_vs_client_ceiling=… rerun_reembedded=0
topk_peak_mb=… labels_for_ci_halved=…``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from tke_playbook.corpus import Chunker, load_corpus, search_memory_bytes, topk_search  # noqa: E402
from tke_playbook.corpus.pydocs import pydoc_topics  # noqa: E402
from tke_playbook.corpus.vectors import vector_key  # noqa: E402
from tke_playbook.embed.http import EmbeddingClient  # noqa: E402
from tke_playbook.localserver import start_server  # noqa: E402
from tke_playbook.scorecard.corpusrun import RunOptions, run_corpus, vector_cache  # noqa: E402

CHUNK_TOKENS, OVERLAP = 16, 2
BATCH, CONCURRENCY = 64, 4


class CountingClient(EmbeddingClient):
    """The local server's client, counting the texts it really sends."""

    sent = 0

    def embed(self, texts, **kwargs):
        items = [texts] if isinstance(texts, str) else list(texts)
        CountingClient.sent += len(items)
        return super().embed(items, **kwargs)


def vocabulary() -> list[str]:
    words = {w.strip('.,:;()"*`\'').lower() for text in pydoc_topics().values() for w in text.split()}
    return sorted(w for w in words if w.isalpha() and 3 <= len(w) <= 12)


def write_corpus(path: Path, docs: int, seed: int = 0) -> dict[str, str]:
    """``docs`` documents of 40-70 words in 300 topics (each with its own 25 words); returns a query per document:
    six of its own words, the first ones it was written with."""
    rng = random.Random(seed)
    words = vocabulary()
    topics = [rng.sample(words, 25) for _ in range(300)]
    first_words = {}
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(docs):
            topic = topics[i % len(topics)]
            text = [rng.choice(topic) if rng.random() < 0.6 else rng.choice(words) for _ in range(rng.randint(40, 70))]
            fh.write(json.dumps({"id": f"doc{i}", "text": " ".join(text)}) + "\n")
            first_words[f"doc{i}"] = " ".join(text[:6])
    return first_words


def client_ceiling(url: str, model: str, texts: list[str]) -> float:
    """Chunks per second of a bare client: the same batches, the same requests in flight, straight to the server."""
    client = EmbeddingClient(url, model, max_batch_size=BATCH)
    batches = [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]
    began = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(client.embed, batches))
    return len(texts) / (time.perf_counter() - began)


def topk_memory(vectors: np.ndarray, queries: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(1)
    q = vectors[rng.choice(len(vectors), queries, replace=False)] + rng.normal(0, 0.05, (queries, vectors.shape[1]))
    tracemalloc.start()
    topk_search(q.astype(np.float32), vectors, 100)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stated = search_memory_bytes(vectors.shape[1], 100, queries=queries) + 12 * queries * 100  # + the outputs
    return peak / 2 ** 20, 4 * queries * len(vectors) / 2 ** 20, stated / 2 ** 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="at least this many chunks (default 100,000)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--sample", type=int, default=6_400, help="chunks for the client ceiling")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    chunker = Chunker.for_model(chunk_tokens=CHUNK_TOKENS, overlap_tokens=OVERLAP)
    docs = max(10, args.chunks // 8)
    while True:  # about eight chunks a document; grow until the corpus has enough
        first_words = write_corpus(work / "corpus.jsonl", docs)
        began = time.perf_counter()
        corpus = load_corpus(work / "corpus.jsonl", chunker)
        if len(corpus) >= args.chunks:
            break
        docs = int(docs * args.chunks / len(corpus) * 1.05) + 1
    print(f"corpus: {len(corpus.documents)} documents, {len(corpus)} chunks, {int(corpus.chunks['tokens'].sum())} "
          f"tokens, loaded and chunked in {time.perf_counter() - began:.1f} s")
    rng = random.Random(2)
    picked = rng.sample(sorted(first_words), args.queries)
    queries = {f"q{i}": first_words[doc] for i, doc in enumerate(picked)}
    qrels = {f"q{i}": {doc: 1.0} for i, doc in enumerate(picked)}
    with start_server(timeout=600) as server:
        model = server.served_model_name
        sample = random.Random(3).sample(corpus.texts, min(args.sample, len(corpus)))
        client_ceiling(server.url, model, sample[:BATCH * CONCURRENCY])  # warm-up
        ceiling = client_ceiling(server.url, model, sample)
        print(f"client ceiling: {ceiling:.1f} chunks/s ({len(sample)} chunks, batch {BATCH}, {CONCURRENCY} in flight)")
        options = RunOptions(cache_dir=work / "cache", batch_size=BATCH, concurrency=CONCURRENCY)
        result = run_corpus(corpus, queries, [CountingClient(server.url, model, max_batch_size=BATCH)], qrels=qrels,
                            options=options)
        figures = result.figures[result.systems[0]]
        rate = figures["chunks_per_s"]
        print(f"scorecard embedding: {figures['embedded']} chunks at {rate:.1f} chunks/s, p99 {figures['p99_ms']:.0f} ms")
        before = CountingClient.sent
        rerun = run_corpus(corpus, queries, [CountingClient(server.url, model, max_batch_size=BATCH)], qrels=qrels,
                           options=options)
        reembedded = CountingClient.sent - before
        print(f"rerun: {reembedded} texts sent, {rerun.figures[rerun.systems[0]]['seconds']:.1f} s")
    cache = vector_cache(result.systems[0], CountingClient(server.url, model), work / "cache")
    vectors = cache.matrix([vector_key(t) for t in corpus.texts])
    peak_mb, full_mb, stated_mb = topk_memory(vectors, 1000)
    print(f"top-100 of 1,000 queries over {len(vectors)} chunks: peak {peak_mb:.1f} MB (stated {stated_mb:.1f} MB "
          f"with the outputs; the full matrix would be {full_mb:.0f} MB)")
    table = result.table()
    halve = result.labels_to_halve()
    print(table[["ndcg@10", "ndcg@10 low", "ndcg@10 high", "judged queries"]].round(3).to_string())
    print(f"RESULT docs={len(corpus.documents)} chunks={len(corpus)} embed_chunks_per_s={rate:.1f} "
          f"embed_vs_client_ceiling={rate / ceiling:.3f} rerun_reembedded={reembedded} topk_peak_mb={peak_mb:.1f} "
          f"labels_for_ci_halved={halve['more_judgements']}")


if __name__ == "__main__":
    main()
