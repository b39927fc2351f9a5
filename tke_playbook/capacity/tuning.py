"""Tuning recommendations from a sweep: concrete vLLM flags (applied on a cluster by re-rendering the plan from the
changed ServingSpec) and, on the local target, the local server's batch size, wait and worker count.

vLLM rules (facts.md sections 3 and 11):
- ``--max-num-batched-tokens``: for encoder models (BERT/XLM-R: every BGE) chunked prefill is off and the budget
  defaults to ``max_model_len`` - about one sequence per step. It must hold the tokens in flight at the best level
  (concurrency x inputs per request x input length): 16384-32768 is the usual range.
- ``--max-num-seqs`` (the chart's maxBatchSize): sequences per step; requests beyond it wait in vLLM's queue.
- A small model leaves the GPU idle while one API server process tokenises and serialises: several API server
  processes (``--api-server-count``; vllm#31678 went from 600 to 2,800 embeddings/s with four) or several
  replicas. The sign in a sweep: throughput flat across concurrency, server queue time above inference time and a
  low MFU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from ..specs.catalog import get_model
from ..specs.fit import ENCODER_STEP_TOKENS
from ..specs.serving import ServingSpec

MAX_STEP_TOKENS = 32768
API_SERVERS = 4


@dataclass(frozen=True)
class Recommendation:
    """One change: the ``flag`` with its ``value``, why, and the ServingSpec fields that apply it."""

    flag: str
    value: str
    reason: str
    changes: tuple[tuple[str, object], ...] = ()

    @property
    def command_line(self) -> str:
        return f"{self.flag} {self.value}".strip()


@dataclass(frozen=True)
class TuningAdvice:
    recommendations: tuple[Recommendation, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> dict:
        out: dict = {}
        for rec in self.recommendations:
            out.update(dict(rec.changes))
        return out

    @property
    def flags(self) -> str:
        return " ".join(r.command_line for r in self.recommendations)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"flag": r.flag, "value": r.value, "why": r.reason} for r in self.recommendations],
                            columns=["flag", "value", "why"])

    def apply(self, spec: ServingSpec) -> ServingSpec:
        """The spec with the recommendations applied; re-render the plan from it (``build_plan``)."""
        return spec.replace(**self.changes) if self.changes else spec


def _pow2_at_least(value: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1.0, value))))


def _best_row(summary: pd.DataFrame):
    return summary.loc[summary["tokens_per_s"].astype(float).idxmax()]


def _in_flight(row) -> tuple[int, int]:
    """Sequences and tokens in flight at a closed-loop level."""
    inputs = int(row["inputs"]) if "inputs" in row else 1
    sequences = int(row.get("concurrency", 1) or 1) * inputs
    return sequences, sequences * int(row["input_tokens"])


def _plateaued(summary: pd.DataFrame) -> bool:
    """Throughput at the highest concurrency within 10% of the one below it."""
    if "concurrency" not in summary or summary["concurrency"].nunique() < 2:
        return False
    by_level = summary.groupby("concurrency")["tokens_per_s"].max().sort_index()
    return bool(by_level.iloc[-1] < 1.1 * by_level.iloc[-2])


def _token_budget(spec: ServingSpec, tokens: int) -> Recommendation | None:
    info = get_model(spec.model)
    budget = spec.max_num_batched_tokens or spec.max_model_len
    if not info.is_encoder or tokens <= budget:
        return None
    value = min(MAX_STEP_TOKENS, max(ENCODER_STEP_TOKENS, _pow2_at_least(tokens)))
    if value <= budget:
        return None
    return Recommendation("--max-num-batched-tokens", str(value),
                          f"{tokens:,} tokens were in flight at the best level but a step holds {budget:,}: "
                          f"encoder models batch only what fits one step", (("max_num_batched_tokens", value),))


def _sequences(spec: ServingSpec, sequences: int) -> Recommendation | None:
    if sequences <= spec.max_batch_size:
        return None
    value = min(1024, _pow2_at_least(sequences))
    changes: list = [("max_batch_size", value)]
    if spec.max_num_batched_tokens is not None and spec.max_num_batched_tokens < value:
        changes.append(("max_num_batched_tokens", value))
    return Recommendation("--max-num-seqs", str(value), f"{sequences} sequences were in flight at the best level "
                          f"but a step takes at most {spec.max_batch_size}: the rest waited in vLLM's queue",
                          tuple(changes))


def _api_servers(spec: ServingSpec, best, mfu: float | None, summary: pd.DataFrame) -> Recommendation | None:
    queue, inference = best.get("server_queue_mean_ms", math.nan), best.get("server_inference_mean_ms", math.nan)
    queued = bool(queue > inference) if not (math.isnan(queue) or math.isnan(inference)) else False
    idle = mfu is not None and mfu < 0.25
    if not (_plateaued(summary) and (idle or queued)):
        return None
    if any(a.startswith("--api-server-count") for a in spec.extra_args):
        return None
    why = ("throughput stopped growing with concurrency" + (f" at MFU {mfu:.0%}" if mfu is not None else "") +
           (f", and requests queued longer ({queue:.1f} ms) than they ran ({inference:.1f} ms)" if queued else "") +
           ": one API server process is the bottleneck; run several (check your image's `vllm serve --help`: the "
           "flag is not in the toolkit's checked flag table), or several replicas per GPU with TKE qGPU "
           "(tke.cloud.tencent.com/qgpu-core) - a whole nvidia.com/gpu holds one pod")
    return Recommendation("--api-server-count", str(API_SERVERS), why,
                          (("extra_args", (*spec.extra_args, f"--api-server-count {API_SERVERS}")),))


def recommend_vllm(summary: pd.DataFrame, spec: ServingSpec, *, mfu: float | None = None) -> TuningAdvice:
    """Flags for ``spec`` from a closed-loop sweep summary (with server columns: ``LoadResult.table()``)."""
    if summary is None or summary.empty or "concurrency" not in summary:
        return TuningAdvice(notes=("tuning needs a closed-loop sweep (run_closed_loop) with a few concurrency "
                                   "levels",))
    best = _best_row(summary)
    sequences, tokens = _in_flight(best)
    found = [r for r in (_token_budget(spec, tokens), _sequences(spec, sequences),
                         _api_servers(spec, best, mfu, summary)) if r is not None]
    notes = []
    if not _plateaued(summary):
        notes.append("throughput still grew at the highest concurrency: sweep higher before trusting the plan")
    return TuningAdvice(tuple(found), tuple(notes))
