"""Capacity: efficiency against the hardware that served (MFU), the sustainable rate at a p99 target, a capacity
plan in replicas of the measured server (with GPUs and cost on a cluster), its open-loop replay, a labelled GPU
projection, and tuning recommendations (vLLM flags on a cluster, batching settings locally).

    search = find_sustainable_rate(url, model, p99_target_ms=200, input_tokens=32)
    hardware = served_on(target, spec, node_type)            # what served: the local CPU or the GPUs
    plan = plan_capacity(QueryLoad(300, 200), search.sustainable, served_on=hardware)
    report, _ = replay(url, model, search.sustainable)        # one replica: does the plan hold?
    project_gpu(QueryLoad(300, 200), model, "PNV5b.8XLARGE96", tokens_per_query=34)   # an estimate, labelled
"""

from __future__ import annotations

from .advice import QUICK_SEARCH, TuningOutcome, tune_for_target
from .efficiency import flops_per_token, mfu_note, model_flops_utilisation, with_mfu
from .hardware import (PROJECTION_TITLE, GpuProjection, ServedOn, cited_mfu, cpu_model, local_server, project_gpu,
                       served_on)
from .local import LocalSettings, LocalTuning, local_candidates, measure_local, tune_local
from .planning import (CapacityPlan, DocumentLoad, QueryLoad, SustainableRate, level_holds, plan_capacity,
                       sustainable_rate)
from .search import RateSearch, ReplayReport, find_sustainable_rate, replay
from .tuning import Recommendation, TuningAdvice, recommend_vllm

__all__ = ["PROJECTION_TITLE", "QUICK_SEARCH", "CapacityPlan", "DocumentLoad", "GpuProjection", "LocalSettings",
           "LocalTuning", "QueryLoad", "RateSearch", "Recommendation", "ReplayReport", "ServedOn", "SustainableRate",
           "TuningAdvice", "TuningOutcome", "cited_mfu", "cpu_model", "find_sustainable_rate",
           "flops_per_token", "level_holds", "local_candidates", "local_server", "measure_local", "mfu_note",
           "model_flops_utilisation", "plan_capacity", "project_gpu", "recommend_vllm", "replay", "served_on",
           "sustainable_rate", "tune_for_target", "tune_local", "with_mfu"]
