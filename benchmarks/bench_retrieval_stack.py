"""The retrieval stack as vLLM serves it, on the local server: how many of vLLM 0.34.0's pooling routes for an
embedding model it answers as vLLM does, whether an over-long input is embedded in chunks as vLLM combines them
(the server half), and what the scorecard measures through those routes on the shipped set (the scorecard half):
the gain of reranking BM25's top 20 with the model's ``/rerank``, and the dimension x precision frontier.

    python benchmarks/bench_retrieval_stack.py

Each route gets one valid request built from vLLM 0.34.0's request models; it counts when the status and the
answer's top-level keys are those of vLLM's response model (``/classify``: vLLM's 501 for an embedding model).
The long input: 700 words (about 1,500 tokens, over MiniLM's 256) with ``--pooler-config
'{"enable_chunked_processing": true, "max_embed_len": 2048}'``, compared with sentence-transformers' own vectors
of the same 256-token chunks averaged by token count (vLLM's aggregation), and the same request without the
option must be vLLM's 400.

The scorecard half, measured in the same run with empty caches: BM25 and ``BM25 -> all-MiniLM-L6-v2`` (BM25's top
20 reordered through the local ``/rerank``) on the shipped set, ``rerank_gain_ndcg10`` = the pipeline's nDCG@10
minus BM25's (its baseline, same queries); the frontier of all-MiniLM-L6-v2 at 384 (full), 256, 128 and 64
dimensions x every precision (``embed_dtype`` float32, float16, bfloat16, fp8_e4m3, fp8_e5m2; Cohere binary,
ubinary) as the server sends them (a second local server with the Matryoshka ``--hf-overrides``),
``frontier_points`` = the points measured, ``binary_vs_float_ndcg10`` and ``fp8_vs_float_ndcg10`` = nDCG@10 of
the full-size binary and fp8_e4m3 vectors over that of float32 (its baseline). The last line is
``RESULT routes=N/9 frontier_points=N rerank_gain_ndcg10=+x binary_vs_float_ndcg10=x fp8_vs_float_ndcg10=x
chunked_long_input_ok=0|1 ...``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXT = "What is the capital of France?"
DOCS = ["Paris is the capital of France.", "Bananas are yellow."]
# route -> (request body, expected status, top-level keys of vLLM 0.34.0's answer)
LIST_KEYS = {"id", "object", "created", "model", "data", "usage"}
ROUTES = {
    "/v1/embeddings": ({"input": [TEXT]}, 200, LIST_KEYS),
    "/v2/embed": ({"texts": DOCS, "embedding_types": ["float", "binary"]}, 200,
                  {"id", "embeddings", "texts", "meta", "response_type"}),
    "/pooling": ({"input": [TEXT]}, 200, LIST_KEYS),
    "/classify": ({"input": [TEXT]}, 501, {"error"}),
    "/score": ({"queries": TEXT, "documents": DOCS}, 200, LIST_KEYS),
    "/v1/score": ({"text_1": TEXT, "text_2": DOCS}, 200, LIST_KEYS),
    "/rerank": ({"query": TEXT, "documents": DOCS, "top_n": 1}, 200, {"id", "model", "usage", "results"}),
    "/v1/rerank": ({"query": TEXT, "documents": DOCS}, 200, {"id", "model", "usage", "results"}),
    "/v2/rerank": ({"query": TEXT, "documents": DOCS}, 200, {"id", "model", "usage", "results"}),
}


def routes_like_vllm(url: str) -> tuple[int, list[str]]:
    good, notes = 0, []
    with httpx.Client(base_url=url, timeout=120) as client:
        for path, (body, status, keys) in ROUTES.items():
            response = client.post(path, json=body)
            answer = response.json()
            ok = response.status_code == status and set(answer) == keys
            good += ok
            notes.append(f"{path} {response.status_code}{'' if ok else ' (differs)'}")
    return good, notes


def chunked_reference(text: str) -> np.ndarray:
    import torch
    from sentence_transformers import SentenceTransformer

    from tke_playbook.hostenv import offline_model_dir

    model = SentenceTransformer(str(offline_model_dir()), device="cpu")
    ids = model.tokenizer(text)["input_ids"]
    chunks = [ids[i:i + 256] for i in range(0, len(ids), 256)]
    with torch.inference_mode():
        vectors = [model({"input_ids": torch.tensor([c]), "attention_mask": torch.ones(1, len(c), dtype=torch.long),
                          "token_type_ids": torch.zeros(1, len(c), dtype=torch.long)})["sentence_embedding"][0].numpy()
                   for c in chunks]
    mean = sum(v * len(c) for v, c in zip(vectors, chunks)) / len(ids)
    return mean / np.linalg.norm(mean)


def rerank_gain(url: str, cache_dir: str) -> tuple[float, float, float]:
    """nDCG@10 of BM25 and of BM25's top 20 reranked through ``url``'s /rerank, on the shipped set."""
    from tke_playbook.embed.http import EmbeddingClient
    from tke_playbook.scorecard import TwoStage, run_scorecard

    pipeline = TwoStage("bm25", EmbeddingClient(url), depth=20)
    result = run_scorecard(["bm25", pipeline], cache_dir=cache_dir, progress=False, visuals=False)
    first, reranked = (float(result.table.loc[n, "ndcg@10"]) for n in ("bm25", pipeline.label))
    return first, reranked, result.paired("bm25", pipeline.label).p_value


def frontier(cache_dir: str):
    from tke_playbook.scorecard.frontier import local_frontier

    return local_frontier(cache_dir=cache_dir, progress=False)


def main() -> int:
    from tke_playbook.localserver import start_server

    text = " ".join(f"word{i % 97} node{i % 13}" for i in range(350))
    start = time.perf_counter()
    cache = tempfile.mkdtemp(prefix="bench-retrieval-stack-")  # empty: everything below is measured in this run
    with start_server(vllm_version="0.34.0",
                      pooler_config={"enable_chunked_processing": True, "max_embed_len": 2048}) as server:
        good, notes = routes_like_vllm(server.url)
        long = httpx.post(server.url + "/v1/embeddings", json={"input": text}, timeout=120).json()
        bm25, reranked, p_value = rerank_gain(server.url, cache)
    with start_server(vllm_version="0.34.0") as plain:
        refused = httpx.post(plain.url + "/v1/embeddings", json={"input": text}, timeout=120)
    error = np.abs(np.array(long["data"][0]["embedding"]) - chunked_reference(text)).max()
    chunked_ok = int(error < 1e-5 and refused.status_code == 400)
    points = frontier(cache)
    print("  " + "; ".join(notes))
    print(f"  long input: {long['usage']['prompt_tokens']} tokens, max |server - reference| = {error:.2e}; without "
          f"chunked processing: {refused.status_code}")
    print(f"  rerank: BM25 nDCG@10 {bm25:.3f}, BM25 -> all-MiniLM-L6-v2 /rerank (top 20) {reranked:.3f} "
          f"(paired p = {p_value:.2g})")
    pareto = points.points[points.points["pareto"]]
    print(f"  frontier: {len(points.points)} points, {len(points.refused)} refused; Pareto: "
          + ", ".join(f"{d}d {p} ({q:.3f})" for d, p, q in zip(pareto["dimensions"], pareto["precision"],
                                                              pareto["ndcg@10"])))
    print("  " + points.assumptions().replace("\n", "\n  "))
    print(f"RESULT routes={good}/{len(ROUTES)} frontier_points={len(points.points)} "
          f"rerank_gain_ndcg10={reranked - bm25:+.4f} binary_vs_float_ndcg10={points.ratio('binary'):.4f} "
          f"fp8_vs_float_ndcg10={points.ratio('fp8_e4m3'):.4f} chunked_long_input_ok={chunked_ok} "
          f"chunked_max_abs_error={error:.2e} seconds={time.perf_counter() - start:.1f} "
          f"load_avg_1m={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
