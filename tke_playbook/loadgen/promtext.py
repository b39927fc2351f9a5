"""Prometheus text format: parse a ``/metrics`` scrape, diff two scrapes, read histograms.

A load run scrapes the server before and after; :func:`diff` leaves what the run itself added (counters and
histogram buckets subtract, gauges keep the later value), and :func:`server_summary` turns vLLM's histograms into
server-side latency and queue time beside the client's numbers. Quantiles are estimated from bucket bounds by
linear interpolation, as Prometheus' ``histogram_quantile`` does, so they are only as fine as the buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset  # of (name, value) pairs


@dataclass
class Metrics:
    """One scrape: ``types`` maps family name to its TYPE, ``samples`` maps (sample name, labels) to value."""

    types: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def family_type(self, sample_name: str) -> str:
        for suffix in ("_bucket", "_sum", "_count", "_total", "_created", ""):
            if sample_name.endswith(suffix):
                base = sample_name[: len(sample_name) - len(suffix)] if suffix else sample_name
                if base in self.types:
                    return self.types[base]
        return self.types.get(sample_name, "untyped")

    def value(self, name: str, **labels: str) -> float:
        """The sum of every sample called ``name`` whose labels include ``labels`` (0.0 when none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def names(self) -> list[str]:
        return sorted({n for n, _ in self.samples})


def _number(text: str) -> float:
    lowered = text.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    return float(text)


def _parses(line: str) -> bool:
    try:
        for _ in text_string_to_metric_families(line + "\n"):
            pass
    except (ValueError, TypeError, IndexError, KeyError):
        return False
    return True


def _readable(text: str) -> str:
    """``text`` without the lines the standard parser refuses (so one bad line costs only itself)."""
    return "".join(line + "\n" for line in text.splitlines() if line.strip() and _parses(line))


def _families(text: str):
    try:
        return list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError, KeyError):
        readable = _readable(text)
    try:
        return list(text_string_to_metric_families(readable))
    except (ValueError, TypeError, IndexError, KeyError):  # lines fine alone but not together: read them alone
        return [family for line in readable.splitlines() for family in text_string_to_metric_families(line + "\n")]


def parse(text: str) -> Metrics:
    """Parse Prometheus text exposition format with ``prometheus_client``'s parser; lines it cannot read are
    skipped. A counter's family is filed under its name without ``_total`` (``# TYPE c_total counter`` is ``c``)."""
    metrics = Metrics()
    for family in _families(text):
        if family.type != "unknown" or family.name not in metrics.types:
            metrics.types[family.name] = "untyped" if family.type == "unknown" else family.type
        for sample in family.samples:
            metrics.samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return metrics


def diff(before: Metrics | str, after: Metrics | str) -> Metrics:
    """What happened between two scrapes: counters and histograms subtract, gauges keep ``after``'s value.

    A counter that went down (the server restarted) keeps ``after``'s value, as Prometheus' ``increase`` does.
    """
    before = parse(before) if isinstance(before, str) else before
    after = parse(after) if isinstance(after, str) else after
    out = Metrics(types=dict(after.types))
    for key, value in after.samples.items():
        kind = after.family_type(key[0])
        if kind in ("counter", "histogram", "summary") and not (kind == "summary" and "quantile" in dict(key[1])):
            old = before.samples.get(key, 0.0)
            out.samples[key] = value - old if value >= old else value
        else:
            out.samples[key] = value
    return out


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets ``(upper bound, count)``, sorted, plus ``sum`` and ``count``."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def quantile(self, q: float, *, strict: bool = False) -> float:
        """Estimate of the q-quantile (0 < q < 1) by linear interpolation inside the bucket that holds it.

        Like Prometheus, a quantile in the first bucket is interpolated from 0 and one in the overflow bucket is
        the highest finite bound. With ``strict``, both give NaN instead: the buckets cannot tell.
        """
        if not self.count or not self.buckets:
            return math.nan
        rank = q * self.buckets[-1][1]
        lower_bound, lower_count = 0.0, 0.0
        for position, (bound, cumulative) in enumerate(self.buckets):
            if cumulative >= rank:
                if strict and (position == 0 or math.isinf(bound)):
                    return math.nan
                if math.isinf(bound):
                    return lower_bound  # in the overflow bucket: the highest finite bound is all we know
                width = cumulative - lower_count
                return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
            lower_bound, lower_count = bound, cumulative
        return lower_bound


def histogram(metrics: Metrics, name: str, **labels: str) -> Histogram:
    """The histogram ``name`` summed over every label set that includes ``labels`` (e.g. all engines)."""
    wanted = set(labels.items())
    buckets: dict[float, float] = {}
    for (sample, ls), value in metrics.samples.items():
        if sample == f"{name}_bucket" and wanted <= ls:
            bound = _number(dict(ls).get("le", "+Inf"))
            buckets[bound] = buckets.get(bound, 0.0) + value
    return Histogram(tuple(sorted(buckets.items())), metrics.value(f"{name}_sum", **labels),
                     metrics.value(f"{name}_count", **labels))


VLLM_LATENCY = "vllm:e2e_request_latency_seconds"
VLLM_QUEUE = "vllm:request_queue_time_seconds"


def server_summary(before: Metrics | str, after: Metrics | str, *, latency: str = VLLM_LATENCY,
                   queue: str = VLLM_QUEUE, **labels: str) -> dict:
    """Server-side numbers for the interval between two scrapes (milliseconds; NaN when not exported).

    Means are exact (sum / count). Quantiles come from buckets and are NaN when they fall in the first or the
    overflow bucket: vLLM's latency buckets start at 300 ms, so a fast embedding server's quantiles are all
    "below ``server_first_bucket_ms``" and only the means say more.
    """
    delta = diff(before, after)
    e2e, waiting = histogram(delta, latency, **labels), histogram(delta, queue, **labels)
    return {
        "server_requests": e2e.count,
        "server_latency_mean_ms": e2e.mean * 1000, "server_p50_ms": e2e.quantile(0.5, strict=True) * 1000,
        "server_p90_ms": e2e.quantile(0.9, strict=True) * 1000,
        "server_p99_ms": e2e.quantile(0.99, strict=True) * 1000,
        "server_queue_mean_ms": waiting.mean * 1000,
        "server_queue_p50_ms": waiting.quantile(0.5, strict=True) * 1000,
        "server_first_bucket_ms": e2e.buckets[0][0] * 1000 if e2e.buckets else math.nan,
        "server_prompt_tokens": delta.value("vllm:prompt_tokens_total", **labels),
    }
