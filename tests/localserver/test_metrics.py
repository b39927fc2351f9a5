"""The Prometheus exporter (prometheus_client): vLLM's names, labels and types, and values that follow the requests."""

from __future__ import annotations

import re

import pytest

from tke_playbook.localserver.metrics import LATENCY_BUCKETS, ServerMetrics

LABELS = 'engine="0",model_name="m"'  # prometheus_client writes labels sorted
STOP = 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"}'


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_every_vllm_metric_is_exported_with_type_and_labels():
    text = ServerMetrics("m").render()
    types = {name: kind for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M)
             if not name.endswith("_created")}  # prometheus_client's creation-time gauges, as in vLLM's scrape
    assert types.pop("tke_playbook:abandoned_rows_total") == "counter"  # this server's own, not a vLLM name
    assert types == {"vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge",
                     "vllm:prompt_tokens_total": "counter", "vllm:request_success_total": "counter",
                     "vllm:e2e_request_latency_seconds": "histogram",
                     "vllm:request_queue_time_seconds": "histogram",
                     "vllm:request_prefill_time_seconds": "histogram",
                     "vllm:request_inference_time_seconds": "histogram"}
    values = samples(text)
    assert values[f"vllm:prompt_tokens_total{{{LABELS}}}"] == 0
    assert values['vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"}'] == 0
    assert values['vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"}'] == 0
    assert 'vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"}' in values


def test_a_request_moves_through_waiting_running_and_the_histograms():
    metrics = ServerMetrics("m")
    metrics.request_queued()
    assert samples(metrics.render())[f"vllm:num_requests_waiting{{{LABELS}}}"] == 1
    metrics.request_started(queue_s=0.4)
    values = samples(metrics.render())
    assert values[f"vllm:num_requests_waiting{{{LABELS}}}"] == 0
    assert values[f"vllm:num_requests_running{{{LABELS}}}"] == 1
    metrics.request_finished(started=True, ok=True, e2e_s=3.0, inference_s=2.6, prompt_tokens=12)
    values = samples(metrics.render())
    assert values[f"vllm:num_requests_running{{{LABELS}}}"] == 0
    assert values[f"vllm:prompt_tokens_total{{{LABELS}}}"] == 12
    assert values[STOP] == 1
    queue = "vllm:request_queue_time_seconds"
    assert values[f'{queue}_bucket{{engine="0",le="0.3",model_name="m"}}'] == 0
    assert values[f'{queue}_bucket{{engine="0",le="0.5",model_name="m"}}'] == 1  # cumulative buckets
    assert values[f'{queue}_bucket{{engine="0",le="+Inf",model_name="m"}}'] == 1
    assert values[f"{queue}_count{{{LABELS}}}"] == 1 and values[f"{queue}_sum{{{LABELS}}}"] == 0.4
    assert values['vllm:e2e_request_latency_seconds_bucket{engine="0",le="2.5",model_name="m"}'] == 0
    assert values['vllm:e2e_request_latency_seconds_bucket{engine="0",le="5.0",model_name="m"}'] == 1


def test_failed_requests_leave_the_gauges_but_are_not_counted_as_success():
    metrics = ServerMetrics("m")
    metrics.request_queued()
    metrics.request_finished(started=False, ok=False, e2e_s=0.1)
    values = samples(metrics.render())
    assert values[f"vllm:num_requests_waiting{{{LABELS}}}"] == 0
    assert values[STOP] == 0
    assert values[f"vllm:e2e_request_latency_seconds_count{{{LABELS}}}"] == 0


def test_every_sample_belongs_to_the_family_its_type_line_names():
    """As prometheus_client writes vLLM's counters: ``# TYPE vllm:prompt_tokens_total counter``, not a family
    ``vllm:prompt_tokens`` whose ``_total`` sample a 0.0.4 parser would file as an untyped metric."""
    suffixes = {"gauge": ("",), "counter": ("",), "histogram": ("_bucket", "_count", "_sum")}
    family, kind = None, None
    for line in ServerMetrics("m").render().splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ")
        elif not line.startswith("#"):
            name = line.split("{", 1)[0]
            assert name in {family + suffix for suffix in suffixes[kind]}, f"{name} under # TYPE {family} {kind}"


def test_a_standard_parser_reads_the_counters_as_counters():
    parser = pytest.importorskip("prometheus_client.parser")
    metrics = ServerMetrics("m")
    metrics.request_queued()
    metrics.request_finished(started=False, ok=True, e2e_s=0.1, prompt_tokens=7)
    families = {f.name: f for f in parser.text_string_to_metric_families(metrics.render())}
    assert families["vllm:prompt_tokens"].type == "counter"
    assert [s.value for s in families["vllm:prompt_tokens"].samples] == [7]
    assert families["vllm:request_success"].type == "counter"
    assert families["vllm:e2e_request_latency_seconds"].type == "histogram"


def test_buckets_are_vllms_request_latency_buckets():
    text = ServerMetrics("m").render()
    bounds = re.findall(r'vllm:e2e_request_latency_seconds_bucket\{[^}]*le="([^"]+)"', text)
    assert [float(b) for b in bounds[:-1]] == list(LATENCY_BUCKETS) and bounds[-1] == "+Inf"


def test_an_aborted_request_is_counted_with_finished_reason_abort():
    metrics = ServerMetrics("m")
    metrics.request_queued()
    metrics.request_started(queue_s=0.1)
    metrics.request_finished(started=True, ok=False, aborted=True, e2e_s=0.5, prompt_tokens=9)
    values = samples(metrics.render())
    assert values['vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"}'] == 1
    assert values[STOP] == 0 and values[f"vllm:prompt_tokens_total{{{LABELS}}}"] == 0
    assert values[f"vllm:num_requests_running{{{LABELS}}}"] == 0


def test_promtext_reads_the_exporters_histograms():
    from tke_playbook.loadgen import promtext

    metrics = ServerMetrics("m")
    for seconds in (0.4, 0.4, 3.0):
        metrics.request_queued()
        metrics.request_finished(started=False, ok=True, e2e_s=seconds)
    hist = promtext.histogram(promtext.parse(metrics.render()), "vllm:e2e_request_latency_seconds", model_name="m")
    assert hist.count == 3 and hist.buckets[:2] == ((0.3, 0.0), (0.5, 2.0))
    assert promtext.parse(metrics.render()).family_type("vllm:request_success_total") == "counter"


def test_label_values_are_escaped():
    text = ServerMetrics('a"b\\c').render()
    assert 'model_name="a\\"b\\\\c"' in text
