"""The Prometheus exporter, written by ``prometheus_client`` as vLLM's is, with vLLM's metric names and buckets.

Names, types and labels follow vLLM's V1 engine (labels ``model_name`` and ``engine``; request-latency
histogram buckets as vLLM's). Only what an embedding server produces is exported. Each :class:`ServerMetrics`
has its own registry, so several servers (or tests) in one process do not share counts. Finished requests are
counted in ``vllm:request_success_total`` by ``finished_reason``: ``stop`` when answered, ``abort`` when the
client left before its answer was ready (as vLLM counts an aborted request).
One counter is this server's own (vLLM has none like it): ``tke_playbook:abandoned_rows_total``, the rows (inputs,
or chunks of long inputs) of aborted requests that were never encoded - dropped from the queue, or in a step
stopped at its next checkpoint - so a client that leaves can be seen to stop costing work.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

# vLLM's buckets for request-level latency histograms (e2e, queue, prefill, inference).
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
FINISHED_REASONS = ("stop", "length", "abort", "error")  # vLLM's FinishReason values, each exported from 0
_LABELS = ("model_name", "engine")
_HISTOGRAMS = {
    "e2e": ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds."),
    "queue": ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request."),
    "inference": ("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request."),
    # An embedding request is all prefill: vLLM's prefill time equals its inference time.
    "prefill": ("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request."),
}


class ServerMetrics:
    """Counters, gauges and histograms of one served model; thread-safe; :meth:`render` gives /metrics text.

    ``waiting``, ``running``, ``success`` and ``aborted`` mirror the exported values for code that reads them.
    """

    def __init__(self, model_name: str, engine: str = "0"):
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        self.labels = {"model_name": model_name, "engine": engine}
        values = (model_name, engine)
        self._running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                              _LABELS, registry=self.registry).labels(*values)
        self._waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                              _LABELS, registry=self.registry).labels(*values)
        self._prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", _LABELS,
                                      registry=self.registry).labels(*values)
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          _LABELS + ("finished_reason",), registry=self.registry)
        self._finished = {reason: success.labels(*values, reason) for reason in FINISHED_REASONS}
        self._histograms = {key: Histogram(name, help_text, _LABELS, buckets=LATENCY_BUCKETS,
                                           registry=self.registry).labels(*values)
                            for key, (name, help_text) in _HISTOGRAMS.items()}
        self._abandoned_rows = Counter("tke_playbook:abandoned_rows", "Rows of aborted requests that were not "
                                       "encoded (dropped from the queue or stopped at a checkpoint).", _LABELS,
                                       registry=self.registry).labels(*values)
        self.waiting = self.running = self.success = self.aborted = self.prompt_tokens = self.abandoned_rows = 0

    # --- updates (called from the event loop) -----------------------------------------------------------

    def request_queued(self) -> None:
        with self._lock:
            self.waiting += 1
            self._waiting.set(self.waiting)

    def request_started(self, queue_s: float) -> None:
        with self._lock:
            self.waiting -= 1
            self.running += 1
            self._waiting.set(self.waiting)
            self._running.set(self.running)
            self._histograms["queue"].observe(queue_s)

    def request_finished(self, *, started: bool, ok: bool, e2e_s: float, inference_s: float = 0.0,
                         prompt_tokens: int = 0, aborted: bool = False) -> None:
        """A request left the batcher: answered (``ok``), failed, or ``aborted`` because its client left."""
        with self._lock:
            if started:
                self.running -= 1
            else:
                self.waiting -= 1
            self._waiting.set(self.waiting)
            self._running.set(self.running)
            if aborted:
                self.aborted += 1
                self._finished["abort"].inc()
            elif ok:
                self.success += 1
                self.prompt_tokens += prompt_tokens
                self._finished["stop"].inc()
                self._prompt_tokens.inc(prompt_tokens)
                self._histograms["e2e"].observe(e2e_s)
                self._histograms["inference"].observe(inference_s)
                self._histograms["prefill"].observe(inference_s)

    def rows_abandoned(self, rows: int) -> None:
        """``rows`` of aborted requests will not be encoded (their client left)."""
        with self._lock:
            self.abandoned_rows += rows
            self._abandoned_rows.inc(rows)

    # --- exposition --------------------------------------------------------------------------------------

    def render(self) -> str:
        """The text exposition (format 0.0.4), as ``prometheus_client`` writes it for vLLM."""
        with self._lock:
            return generate_latest(self.registry).decode("utf-8")
