"""The retrieval stack as vLLM serves it, on the local server: how many of vLLM 0.34.0's pooling routes for an
embedding model it answers as vLLM does, and whether an over-long input is embedded in chunks as vLLM combines
them. (The server half of issue 24's benchmark; the scorecard half - frontier, rerank gain, binary and fp8 against
float - lives with the scorecard.)

    python benchmarks/bench_retrieval_stack.py

Each route gets one valid request built from vLLM 0.34.0's request models; it counts when the status and the
answer's top-level keys are those of vLLM's response model (``/classify``: vLLM's 501 for an embedding model).
The long input: 700 words (about 1,500 tokens, over MiniLM's 256) with ``--pooler-config
'{"enable_chunked_processing": true, "max_embed_len": 2048}'``, compared with sentence-transformers' own vectors
of the same 256-token chunks averaged by token count (vLLM's aggregation), and the same request without the
option must be vLLM's 400. The last line is ``RESULT routes=N/9 chunked_long_input_ok=0|1 ...``.
"""

from __future__ import annotations

import os
import sys
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


def main() -> int:
    from tke_playbook.localserver import start_server

    text = " ".join(f"word{i % 97} node{i % 13}" for i in range(350))
    start = time.perf_counter()
    with start_server(vllm_version="0.34.0",
                      pooler_config={"enable_chunked_processing": True, "max_embed_len": 2048}) as server:
        good, notes = routes_like_vllm(server.url)
        long = httpx.post(server.url + "/v1/embeddings", json={"input": text}, timeout=120).json()
    with start_server(vllm_version="0.34.0") as plain:
        refused = httpx.post(plain.url + "/v1/embeddings", json={"input": text}, timeout=120)
    error = np.abs(np.array(long["data"][0]["embedding"]) - chunked_reference(text)).max()
    chunked_ok = int(error < 1e-5 and refused.status_code == 400)
    print("  " + "; ".join(notes))
    print(f"  long input: {long['usage']['prompt_tokens']} tokens, max |server - reference| = {error:.2e}; without "
          f"chunked processing: {refused.status_code}")
    print(f"RESULT routes={good}/{len(ROUTES)} chunked_long_input_ok={chunked_ok} chunked_max_abs_error={error:.2e} "
          f"seconds={time.perf_counter() - start:.1f} load_avg_1m={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
