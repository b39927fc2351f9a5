"""Load results in the JSON layout of ``vllm bench serve`` for embeddings, so they compare directly with vLLM's tool.

``vllm bench serve --backend openai-embeddings --save-result`` writes one JSON file per run (one request rate or
concurrency). :func:`vllm_bench_result` builds that dict for one level of a loadgen run and
:func:`write_vllm_bench_json` writes one file per level under vLLM's own file-name pattern.

The key names come from vLLM's ``vllm/benchmarks/serve.py`` (``main_async`` puts the setup keys in ``result_json``;
``benchmark`` returns the pooling result dict built from ``EmbedBenchmarkMetrics``; ``process_one_metric("e2el")``
adds ``mean/median/std/p99_e2el_ms`` with the default ``--metric-percentiles 99``; with ``--max-concurrency`` it also
adds the ``client_queue_time`` statistics). Fields vLLM drops unless ``--save-detailed`` (``input_lens``,
``errors``) are left out, as in its default output. Definitions follow vLLM's ``calculate_metrics_for_embeddings``:
``completed`` counts successful requests, ``total_input_tokens`` their prompt tokens (here the server's
``usage.prompt_tokens``), throughputs divide by the benchmark duration (first start to last finish).
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..hostenv import state_dir

# vllm/benchmarks/serve.py (vllm-project/vllm, read at commit 009e6d4a1cd6): setup keys of result_json in main_async
VLLM_BENCH_SETUP_KEYS = ("date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
                         "request_rate", "burstiness", "max_concurrency")
# ... the pooling (embeddings) result dict returned by benchmark(), minus input_lens/errors (dropped by default)
VLLM_BENCH_EMBED_RESULT_KEYS = ("duration", "completed", "total_input_tokens", "total_input_sequences",
                                "request_throughput", "input_sequence_throughput", "total_token_throughput",
                                "latencies", "queue_times")
# ... process_one_metric("e2el", ...) with the default percentiles "99"
VLLM_BENCH_E2EL_KEYS = ("mean_e2el_ms", "median_e2el_ms", "std_e2el_ms", "p99_e2el_ms")
# ... and process_one_metric("client_queue_time", ...) when --max-concurrency is set (our closed loop)
VLLM_BENCH_CLIENT_QUEUE_KEYS = ("mean_client_queue_time_ms", "median_client_queue_time_ms",
                                "std_client_queue_time_ms", "p99_client_queue_time_ms")
VLLM_BENCH_KEYS = VLLM_BENCH_SETUP_KEYS + VLLM_BENCH_EMBED_RESULT_KEYS + VLLM_BENCH_E2EL_KEYS
VLLM_EMBEDDINGS_BACKEND = "openai-embeddings"
BENCH_FOLDER = "vllm-bench"  # under the state directory: the latest run's files


def _stats(prefix: str, values_s: list[float]) -> dict:
    values = np.asarray(values_s or [0.0], dtype=float)  # vLLM: np.mean(values or 0)
    return {f"mean_{prefix}_ms": float(values.mean() * 1000), f"median_{prefix}_ms": float(np.median(values) * 1000),
            f"std_{prefix}_ms": float(values.std() * 1000), f"p99_{prefix}_ms": float(np.percentile(values, 99) * 1000)}


def vllm_bench_result(level: pd.DataFrame, model: str | None, *, label: str | None = None,
                      date: str | None = None) -> dict:
    """The ``vllm bench serve`` result dict for the records of ONE level (one concurrency or one rate)."""
    closed = level["concurrency"].notna().any()
    ok = level[level["ok"].astype(bool)]
    began = float(level["start_s"].min()) if len(level) else 0.0
    duration = float((level["start_s"] + level["latency_s"]).max() - began) if len(level) else 0.0
    inputs = ok["inputs"] if "inputs" in ok else pd.Series(1, index=ok.index)
    tokens = int(ok["prompt_tokens"].fillna(0).sum())
    latencies = ok["latency_s"].astype(float).tolist()
    # vLLM's client queue time is the wait for a --max-concurrency slot: every request "arrives" at the start,
    # so in a closed loop it is the time from the level's start to the request's send; open loop: none.
    queue = (ok["start_s"].astype(float) - began).tolist() if closed else [0.0] * len(ok)
    rate = float(level["rate"].dropna().iloc[0]) if not closed and level["rate"].notna().any() else math.inf
    result = {
        "date": date or datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": VLLM_EMBEDDINGS_BACKEND, "backend": VLLM_EMBEDDINGS_BACKEND, "label": label,
        "model_id": model, "tokenizer_id": model, "num_prompts": int(len(level)),
        "request_rate": rate if math.isfinite(rate) else "inf", "burstiness": 1.0,
        "max_concurrency": int(level["concurrency"].dropna().iloc[0]) if closed else None,
        "duration": duration, "completed": int(len(ok)), "total_input_tokens": tokens,
        "total_input_sequences": int(inputs.sum()),
        "request_throughput": len(ok) / duration if duration > 0 else 0.0,
        "input_sequence_throughput": float(inputs.sum()) / duration if duration > 0 else 0.0,
        "total_token_throughput": tokens / duration if duration > 0 else 0.0,
        "latencies": latencies, "queue_times": queue,
        **_stats("e2el", latencies),
    }
    if closed:
        result.update(_stats("client_queue_time", queue))
    # extra keys in the style of `vllm bench serve --metadata KEY=VALUE` (string values)
    result["tke_playbook_failed"] = str(int(len(level) - len(ok)))
    result["tke_playbook_input_tokens"] = str(int(level["input_tokens"].iloc[0])) if len(level) else ""
    return result


def _levels(records: pd.DataFrame):
    closed = records["concurrency"].notna().any()
    keys = ["concurrency" if closed else "rate", "input_tokens"] + [c for c in ("stream", "inputs") if c in records]
    yield from records.groupby(keys, sort=True, dropna=False)


def vllm_bench_results(records: pd.DataFrame, model: str | None, *, label: str | None = None) -> list[dict]:
    """One ``vllm bench serve`` result dict per level of a run's records."""
    date = datetime.now().strftime("%Y%m%d-%H%M%S")
    return [vllm_bench_result(group, model, label=label, date=date) for _, group in _levels(records)]


def result_filename(result: dict) -> str:
    """vLLM's file name: ``{label}-{request_rate}qps[-concurrency{n}]-{model}-{date}.json`` (plus our level)."""
    label = result.get("label") or result["backend"]
    concurrency = f"-concurrency{result['max_concurrency']}" if result.get("max_concurrency") is not None else ""
    model = str(result.get("model_id") or "model").split("/")[-1]
    extra = f"-in{result.get('tke_playbook_input_tokens', '')}x{result['total_input_sequences']}"
    return f"{label}-{result['request_rate']}qps{concurrency}-{model}-{result['date']}{extra}.json"


def write_vllm_bench_json(records: pd.DataFrame, model: str | None, folder: str | os.PathLike | None = None, *,
                          label: str | None = None, home: str | os.PathLike | None = None) -> list[Path]:
    """Write one JSON file per level, in ``vllm bench serve``'s layout; returns the paths. ``folder`` None: the
    ``vllm-bench`` folder of the state folder ``home`` (``pb.settings.home``; None: ``$TKE_PLAYBOOK_HOME``),
    emptied of the previous run's files first (nothing left in /tmp)."""
    out = Path(folder) if folder else state_dir(home=home) / BENCH_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    if folder is None:
        for old in out.glob("*.json"):
            old.unlink(missing_ok=True)
    paths = []
    for n, result in enumerate(vllm_bench_results(records, model, label=label)):
        path = out / f"{n:02d}-{result_filename(result)}"
        path.write_text(json.dumps(result, indent=2), encoding="utf-8")
        paths.append(path)
    return paths
