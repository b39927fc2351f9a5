"""A small Prometheus exporter with vLLM's metric names, so dashboards and `promtext` read the local server as vLLM.

Names, types and labels follow vLLM v0.10's V1 engine (labels ``model_name`` and ``engine``; histogram buckets
as its request-latency histograms). Only what an embedding server produces is exported. Text exposition
format 0.0.4 as ``prometheus_client`` writes it for vLLM: a counter's HELP and TYPE lines carry its ``_total``
sample name, so standard parsers type it as a counter. No dependency.
"""

from __future__ import annotations

import threading

# vLLM's buckets for request-level latency histograms (e2e, queue, inference).
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else f"{float(value):.1f}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets=LATENCY_BUCKETS):
        self.name, self.help, self.buckets = name, help_text, tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def render(self, labels: str) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, count in zip(self.buckets + (float("inf"),), self.counts):
            running += count
            lines.append(f'{self.name}_bucket{{{labels},le="{_num(bound)}"}} {_num(running)}')
        lines.append(f"{self.name}_count{{{labels}}} {_num(running)}")
        lines.append(f"{self.name}_sum{{{labels}}} {_num(self.sum)}")
        return lines


class ServerMetrics:
    """Counters, gauges and histograms of one served model; thread-safe; :meth:`render` gives /metrics text."""

    def __init__(self, model_name: str, engine: str = "0"):
        self._lock = threading.Lock()
        self.labels = {"model_name": model_name, "engine": engine}
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.")
        self.queue = Histogram("vllm:request_queue_time_seconds",
                               "Histogram of time spent in WAITING phase for request.")
        self.inference = Histogram("vllm:request_inference_time_seconds",
                                   "Histogram of time spent in RUNNING phase for request.")
        # An embedding request is all prefill: vLLM's prefill time equals its inference time.
        self.prefill = Histogram("vllm:request_prefill_time_seconds",
                                 "Histogram of time spent in PREFILL phase for request.")
        self.prompt_tokens = 0
        self.success = 0
        self.running = 0
        self.waiting = 0

    # --- updates (called from the event loop) -----------------------------------------------------------

    def request_queued(self) -> None:
        with self._lock:
            self.waiting += 1

    def request_started(self, queue_s: float) -> None:
        with self._lock:
            self.waiting -= 1
            self.running += 1
            self.queue.observe(queue_s)

    def request_finished(self, *, started: bool, ok: bool, e2e_s: float, inference_s: float = 0.0,
                         prompt_tokens: int = 0) -> None:
        with self._lock:
            if started:
                self.running -= 1
            else:
                self.waiting -= 1
            if ok:
                self.success += 1
                self.prompt_tokens += prompt_tokens
                self.e2e.observe(e2e_s)
                self.inference.observe(inference_s)
                self.prefill.observe(inference_s)

    # --- exposition --------------------------------------------------------------------------------------

    def render(self) -> str:
        labels = _labels(self.labels)
        with self._lock:
            lines = [
                "# HELP vllm:num_requests_running Number of requests in model execution batches.",
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running{{{labels}}} {_num(self.running)}",
                "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting{{{labels}}} {_num(self.waiting)}",
                "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
                "# TYPE vllm:prompt_tokens_total counter",
                f"vllm:prompt_tokens_total{{{labels}}} {_num(self.prompt_tokens)}",
                "# HELP vllm:request_success_total Count of successfully processed requests.",
                "# TYPE vllm:request_success_total counter",
                f'vllm:request_success_total{{{labels},finished_reason="stop"}} {_num(self.success)}',
            ]
            for histogram in (self.e2e, self.queue, self.prefill, self.inference):
                lines.extend(histogram.render(labels))
        return "\n".join(lines) + "\n"
