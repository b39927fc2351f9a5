"""Load benchmarks for OpenAI-compatible embeddings endpoints.

``run_closed_loop`` sweeps concurrency, ``run_open_loop`` sweeps Poisson request rates; both return a
:class:`LoadResult` with per-request ``records``, a ``summary`` per level and, when the server exports Prometheus
metrics, its own latency and queue time (``server``). ``measure_ceiling`` measures what the generator itself can
send, and ``headroom_warning`` says when a server's numbers come within half of that. The sync functions work in
Jupyter; the ``*_async`` ones are for code that already runs an event loop.
"""

from __future__ import annotations

from .ceiling import generator_ceiling, measure_ceiling, measure_ceiling_async
from .inputs import encoded_bodies, make_text
from .nullserver import NullServer, start_null_server
from .runner import HttpEngine, LoadResult, run_closed_loop_async, run_open_loop_async
from .summary import RECORD_COLUMNS, SUMMARY_COLUMNS, headroom_warning, summarize
from .sync import run_sync


def run_closed_loop(url: str, model: str | None = None, concurrency_levels=(1, 4, 16, 64),
                    requests_per_level: int = 200, input_tokens=(128,), **options) -> LoadResult:
    """Closed-loop concurrency sweep (see :func:`run_closed_loop_async` for the options); Jupyter-safe."""
    return run_sync(run_closed_loop_async(url, model, concurrency_levels, requests_per_level, input_tokens,
                                          **options))


def run_open_loop(url: str, model: str | None = None, rates=(1.0, 10.0, 50.0), **options) -> LoadResult:
    """Open-loop Poisson rate sweep (see :func:`run_open_loop_async` for the options); Jupyter-safe."""
    return run_sync(run_open_loop_async(url, model, rates, **options))


__all__ = ["HttpEngine", "LoadResult", "NullServer", "RECORD_COLUMNS", "SUMMARY_COLUMNS", "encoded_bodies",
           "generator_ceiling", "headroom_warning", "make_text", "measure_ceiling", "measure_ceiling_async",
           "run_closed_loop", "run_closed_loop_async", "run_open_loop", "run_open_loop_async", "run_sync",
           "start_null_server", "summarize"]
