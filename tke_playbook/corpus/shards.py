"""A corpus on the volume, for bulk embedding: balanced chunk shards, the plan the workers run, and the verified
vectors read back.

:func:`stage_corpus` writes ``<root>/corpora/<name>/chunks/shard-NNNNN.jsonl`` (one ``{"id", "text"}`` per chunk,
corpus order) and ``corpus.json`` (each shard's rows, tokens and sha256). Shards are contiguous and balanced by
tokens - the work an embedding server does - so no shard holds more than its share plus one chunk. A rerun with
the same chunks rewrites nothing (same bytes, same hashes), so a rerun of the embedding keeps every finished shard.

:func:`embed_plan` makes what :mod:`tke_playbook.podworker.embedworker` runs: the endpoint, served model, document
prompt, batch size, requests in flight and the output folder ``embeddings/<model>-<key>`` (the key hashes model,
prompt and vector format). :func:`read_embeddings` checks the manifest the last worker wrote - every shard's rows
and sha256 - and returns the vectors (memory-mapped) with their chunk ids.

On a cluster, ``<root>`` is the PVC: stage the corpus where the PVC is mounted (a CFS file system can be mounted
on a machine in the VPC) or copy the staged folder in with ``kubectl cp``; locally it is the folder that plays
the PVC.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InvalidSpecError, PlaybookError, VerificationError
from ..podworker import embedworker
from ..podworker.progress import read_json, write_json
from ..specs.names import slug
from .loading import Corpus

CORPORA = "corpora"
CORPUS_FILE = "corpus.json"
MAX_SHARDS = 256


def balanced_bounds(weights, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` ranges, at most ``shards`` of them, each near an equal share of the weights: a
    range ends where the running total first reaches its share (so each is within one item of it)."""
    weights = np.asarray(weights, dtype=np.float64)
    shards = max(1, min(int(shards), len(weights)))
    cumulative = np.cumsum(weights)
    targets = cumulative[-1] * np.arange(1, shards) / shards
    cuts = np.searchsorted(cumulative, targets, side="left") + 1
    edges = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(weights))), len(weights)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def corpus_dir(root, name: str) -> Path:
    return Path(root) / CORPORA / slug(name, max_length=60)


def _write_if_changed(path: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    if path.is_file() and path.stat().st_size == len(data) and embedworker.sha256_file(path) == digest:
        return digest
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return digest


def stage_corpus(corpus: Corpus, root, *, shards: int = 4, name: str | None = None) -> dict:
    """Write ``corpus`` into ``root`` as balanced JSONL shards; the staged corpus description (``corpus.json``)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise InvalidSpecError(f"shards={shards!r}: use 1 to {MAX_SHARDS} (one Job index or local worker each)",
                               field="shards", value=shards)
    where = corpus_dir(root, name or corpus.name)
    ids, texts, tokens = corpus.ids, corpus.texts, corpus.chunks["tokens"].to_numpy()
    described = []
    for index, (start, end) in enumerate(balanced_bounds(tokens, shards)):
        data = "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n"
                       for i, t in zip(ids[start:end], texts[start:end])).encode("utf-8")
        file = f"chunks/shard-{index:05d}.jsonl"
        described.append({"file": file, "rows": end - start, "tokens": int(tokens[start:end].sum()),
                          "sha256": _write_if_changed(where / file, data)})
    for stale in sorted((where / "chunks").glob("shard-*.jsonl"))[len(described):]:
        stale.unlink()
    staged = {"name": where.name, "corpus": f"{CORPORA}/{where.name}", "chunks": len(ids),
              "fingerprint": corpus.fingerprint(), "settings": corpus.settings.key(), "shards": described}
    write_json(where / CORPUS_FILE, staged)
    return staged


def plan_key(model: str, document_prompt: str) -> str:
    return hashlib.sha256(f"{model}|{document_prompt}|float32|npy".encode()).hexdigest()[:12]


def embed_plan(staged: dict, *, endpoint: str, model: str, document_prompt: str = "{text}", batch: int = 64,
               concurrency: int = 4) -> dict:
    """The plan every worker runs (JSON-ready): shard ``i`` of the staged corpus through ``endpoint``."""
    for field, value in (("batch", batch), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidSpecError(f"{field}={value!r}: use a positive whole number", field=field, value=value)
    if not endpoint.startswith(("http://", "https://")) or "{text}" not in document_prompt:
        raise InvalidSpecError(f"endpoint {endpoint!r} must be an http(s) URL and the prompt must hold {{text}}",
                               field="endpoint", value=endpoint)
    key = plan_key(model, document_prompt)
    return {"format": embedworker.PLAN_FORMAT, "corpus": staged["corpus"], "shards": staged["shards"],
            "output": f"embeddings/{slug(model, max_length=40)}-{key}", "endpoint": endpoint.rstrip("/"),
            "model": model, "document_prompt": document_prompt, "batch": batch, "concurrency": concurrency,
            "key": key}


def output_dir(root, plan: dict) -> Path:
    return Path(root) / plan["corpus"] / plan["output"]


def embedding_progress(root, plan: dict) -> list[dict]:
    """Per shard: status (pending, running, done, failed), rows done of rows, error."""
    rows = []
    for index, shard in enumerate(plan["shards"]):
        layout = embedworker.Layout(plan, root, index)
        state = read_json(layout.state) or {}
        current = state.get("key") == plan["key"] and state.get("input_sha256") == shard["sha256"]
        done = embedworker.record_matches(layout, read_json(layout.record))
        rows.append({"shard": index, "status": "done" if done else state.get("status", "pending") if current
                     else "pending", "rows_done": shard["rows"] if done else state.get("rows_done", 0) if current
                     else 0, "rows": shard["rows"], "error": state.get("error") if current else None})
    return rows


def read_embedding_manifest(root, plan: dict) -> dict:
    manifest = read_json(output_dir(root, plan) / embedworker.MANIFEST)
    if not manifest or manifest.get("key") != plan["key"]:
        raise PlaybookError(f"{plan['output']} has no manifest for this plan: the embedding has not finished - run "
                            "it again (it resumes)", obj=plan["output"])
    return manifest


def read_embeddings(root, plan: dict, *, verify: bool = True) -> tuple[list[str], list[np.ndarray]]:
    """``(chunk ids, vectors per shard)``: the manifest checked against the plan (every shard, its rows) and,
    with ``verify``, every file against its sha256; vectors are memory-mapped, in corpus order."""
    manifest = read_embedding_manifest(root, plan)
    out = output_dir(root, plan)
    if [s["input"] for s in manifest["shards"]] != [s["file"] for s in plan["shards"]]:
        raise VerificationError("the manifest lists other shards than the plan: run the embedding again",
                                obj=str(plan["output"]))
    ids, parts = [], []
    for entry, shard in zip(manifest["shards"], plan["shards"]):
        path = out / entry["file"]
        if verify and embedworker.sha256_file(path) != entry["sha256"]:
            raise VerificationError(f"{entry['file']} does not match the manifest's sha256: run the embedding again "
                                    "(it redoes that shard)", obj=entry["file"])
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        if vectors.shape != (shard["rows"], manifest["dim"]):
            raise VerificationError(f"{entry['file']} holds {vectors.shape}, the plan {shard['rows']} rows of "
                                    f"{manifest['dim']}", obj=entry["file"])
        with open(Path(root) / plan["corpus"] / shard["file"], encoding="utf-8") as fh:
            ids += [json.loads(line)["id"] for line in fh]
        parts.append(vectors)
    return ids, parts
