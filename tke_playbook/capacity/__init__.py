"""Capacity: efficiency against the hardware (MFU), the sustainable rate at a p99 target, a capacity plan with cost,
its open-loop replay, and tuning recommendations (vLLM flags on a cluster, batching settings locally).

    search = find_sustainable_rate(url, model, p99_target_ms=200, input_tokens=32)
    plan = plan_capacity(QueryLoad(300, 200), search.sustainable, "PNV5b.8XLARGE96")
    report, _ = replay(url, model, search.sustainable.rate, 200)     # one replica: does the plan hold?
"""

from __future__ import annotations

from ..loadgen import compact_table  # the narrow view of a sweep or search table, for notebooks
from .advice import QUICK_SEARCH, TuningOutcome, tune_for_target
from .efficiency import flops_per_token, mfu_note, model_flops_utilisation, with_mfu
from .local import LocalSettings, LocalTuning, local_candidates, measure_local, tune_local
from .planning import CapacityPlan, DocumentLoad, QueryLoad, SustainableRate, plan_capacity, sustainable_rate
from .search import RateSearch, ReplayReport, find_sustainable_rate, replay
from .tuning import Recommendation, TuningAdvice, recommend_vllm

__all__ = ["QUICK_SEARCH", "CapacityPlan", "DocumentLoad", "LocalSettings", "LocalTuning", "QueryLoad", "RateSearch",
           "Recommendation", "ReplayReport", "SustainableRate", "TuningAdvice", "TuningOutcome", "tune_for_target", "find_sustainable_rate",
           "compact_table",
           "flops_per_token", "local_candidates", "measure_local", "mfu_note", "model_flops_utilisation",
           "plan_capacity", "recommend_vllm", "replay", "sustainable_rate", "tune_local", "with_mfu"]
