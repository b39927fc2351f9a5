"""Load benchmarks for OpenAI-compatible embeddings endpoints.

``run_closed_loop`` sweeps concurrency, ``run_open_loop`` sweeps Poisson request rates; both return a
:class:`LoadResult` with per-request ``records``, a ``summary`` per level and, when the server exports Prometheus
metrics, its own latency and queue time (``server``). ``measure_ceiling`` measures what the generator itself can
send, and ``headroom_warning`` says when a server's numbers come within half of that.

Embedding-shaped workloads: ``run_closed_loop`` sweeps input length x inputs per request (``batch_size`` list) x
concurrency; ``run_mixed`` sends a bulk stream and a query stream at once and reports each against its own p99
target; ``write_vllm_bench_json`` saves any run in the JSON layout of ``vllm bench serve``. The sync functions work in
Jupyter and stop cleanly on an interrupt (:func:`~tke_playbook.loadgen.sync.run_interruptibly`: the requests stop,
one line says what was kept); the ``*_async`` ones are for code that already runs an event loop.
"""

from __future__ import annotations

from .benchjson import VLLM_BENCH_KEYS, vllm_bench_result, vllm_bench_results, write_vllm_bench_json
from .ceiling import generator_ceiling, measure_ceiling, measure_ceiling_async
from .inputs import encoded_bodies, make_text
from .nullserver import NullServer, start_null_server
from .progress import LevelBar, Progress, make_bar
from .runner import (HttpEngine, LoadResult, closed_budget_s, open_budget_s, run_closed_loop_async,
                     run_open_loop_async)
from .summary import COMPACT_COLUMNS, RECORD_COLUMNS, SUMMARY_COLUMNS, compact_table, headroom_warning, summarize
from .sync import interruptible, last_interrupted, remember_interrupted, run_interruptibly, run_sync
from .workloads import MixedResult, Stream, default_streams, run_mixed, run_mixed_async


def _count(values) -> int:
    return 1 if isinstance(values, (int, float)) else len(list(values))


def run_closed_loop(url: str, model: str | None = None, concurrency_levels=(1, 4, 16, 64),
                    requests_per_level: int = 200, input_tokens=(128,), *, progress=False, home=None,
                    **options) -> LoadResult:
    """Closed-loop sweep over input length x inputs per request (``batch_size``, a number or a list) x concurrency
    (see :func:`run_closed_loop_async` for the options); Jupyter-safe and interruptible. ``progress``: False,
    True (a bar with an upper bound on the time left) or a bar of your own. ``home``: the state folder where an
    interrupted run keeps its finished requests (``pb.settings.home``; None: ``$TKE_PLAYBOOK_HOME``)."""
    levels = _count(concurrency_levels) * _count(input_tokens) * _count(options.get("batch_size", 1))
    per_level = closed_budget_s(options.get("max_duration_s", 60.0), options.get("drain_s"))
    tracker = Progress("closed loop", per_level * levels if per_level else None, levels=levels, home=home)
    return run_interruptibly(lambda p: run_closed_loop_async(url, model, concurrency_levels, requests_per_level,
                                                             input_tokens, progress=p, **options),
                             tracker, progress)


def run_open_loop(url: str, model: str | None = None, rates=(1.0, 10.0, 50.0), *, progress=False, home=None,
                  **options) -> LoadResult:
    """Open-loop Poisson rate sweep (see :func:`run_open_loop_async` for the options); Jupyter-safe and
    interruptible. ``home``: as for :func:`run_closed_loop`."""
    levels = _count(rates) * _count(options.get("input_tokens", (128,))) * _count(options.get("batch_size", 1))
    tracker = Progress("open loop", levels=levels, home=home)
    return run_interruptibly(lambda p: run_open_loop_async(url, model, rates, progress=p, **options), tracker,
                             progress)


__all__ = ["COMPACT_COLUMNS", "LevelBar", "Progress", "make_bar", "closed_budget_s", "interruptible", "open_budget_s", "last_interrupted",
           "remember_interrupted", "run_interruptibly",
           "HttpEngine", "LoadResult", "MixedResult", "NullServer", "RECORD_COLUMNS", "SUMMARY_COLUMNS", "Stream",
           "VLLM_BENCH_KEYS", "compact_table", "default_streams", "encoded_bodies", "run_mixed", "run_mixed_async",
           "vllm_bench_result", "vllm_bench_results", "write_vllm_bench_json",
           "generator_ceiling", "headroom_warning", "make_text", "measure_ceiling", "measure_ceiling_async",
           "run_closed_loop", "run_closed_loop_async", "run_open_loop", "run_open_loop_async", "run_sync",
           "start_null_server", "summarize"]
