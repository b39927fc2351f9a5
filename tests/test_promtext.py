"""Prometheus text parsing, diffing and histogram quantiles on hand-written scrapes."""

from __future__ import annotations

import math

import pytest

from tke_playbook.loadgen import promtext

BEFORE = """\
# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.1",model_name="e5"} 10.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.2",model_name="e5"} 10.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.4",model_name="e5"} 10.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="e5"} 10.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="e5"} 0.5
vllm:e2e_request_latency_seconds_count{engine="0",model_name="e5"} 10.0
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="0.01",model_name="e5"} 10.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="e5"} 10.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="e5"} 0.01
vllm:request_queue_time_seconds_count{engine="0",model_name="e5"} 10.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="e5"} 1000.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="e5"} 3.0
"""

AFTER = """\
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.1",model_name="e5"} 10.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.2",model_name="e5"} 60.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="0.4",model_name="e5"} 110.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="e5"} 110.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="e5"} 25.5
vllm:e2e_request_latency_seconds_count{engine="0",model_name="e5"} 110.0
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="0.01",model_name="e5"} 60.0
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="e5"} 110.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="e5"} 5.01
vllm:request_queue_time_seconds_count{engine="0",model_name="e5"} 110.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="e5"} 6000.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="e5"} 0.0
"""


def test_parse_reads_types_labels_and_values():
    metrics = promtext.parse(BEFORE)
    assert metrics.types["vllm:e2e_request_latency_seconds"] == "histogram"
    assert metrics.value("vllm:prompt_tokens_total", model_name="e5") == 1000.0
    assert metrics.value("vllm:prompt_tokens_total", model_name="other") == 0.0
    assert metrics.family_type("vllm:e2e_request_latency_seconds_bucket") == "histogram"


def test_parse_handles_escapes_inf_timestamps_and_junk():
    metrics = promtext.parse('m{path="a\\"b\\\\c",x="1"} +Inf 1700000000\nnot a sample line\nn 2\nbad{ x\n')
    assert metrics.samples[("m", frozenset({("path", 'a"b\\c'), ("x", "1")}))] == math.inf
    assert metrics.value("n") == 2.0 and metrics.names() == ["m", "n"]


def test_diff_subtracts_counters_and_histograms_keeps_gauges():
    delta = promtext.diff(BEFORE, AFTER)
    assert delta.value("vllm:prompt_tokens_total") == 5000.0
    assert delta.value("vllm:num_requests_waiting") == 0.0
    assert delta.value("vllm:e2e_request_latency_seconds_count") == 100.0
    assert delta.value("vllm:e2e_request_latency_seconds_bucket", le="0.1") == 0.0


def test_diff_after_a_restart_keeps_the_new_count():
    before = "# TYPE c_total counter\nc_total 500\n"
    assert promtext.diff(before, "# TYPE c_total counter\nc_total 7\n").value("c_total") == 7.0


def test_histogram_mean_and_interpolated_quantiles():
    hist = promtext.histogram(promtext.diff(BEFORE, AFTER), "vllm:e2e_request_latency_seconds")
    assert hist.count == 100 and hist.mean == pytest.approx(0.25)
    # 50 requests in (0.1, 0.2], 50 in (0.2, 0.4]: the median sits at the 0.2 boundary, p90 at 80% of the next
    assert hist.quantile(0.5) == pytest.approx(0.2)
    assert hist.quantile(0.9) == pytest.approx(0.2 + 0.2 * 0.8)


def test_quantile_in_the_overflow_bucket_is_the_last_finite_bound():
    hist = promtext.Histogram(((1.0, 5.0), (math.inf, 10.0)), sum=30.0, count=10.0)
    assert hist.quantile(0.99) == 1.0 and math.isnan(hist.quantile(0.99, strict=True))
    assert hist.quantile(0.3) == pytest.approx(0.6) and math.isnan(hist.quantile(0.3, strict=True))
    assert math.isnan(promtext.Histogram((), 0.0, 0.0).quantile(0.5))


def test_histogram_sums_over_label_sets():
    text = ('# TYPE h histogram\nh_bucket{engine="0",le="1"} 2\nh_bucket{engine="0",le="+Inf"} 2\n'
            'h_bucket{engine="1",le="1"} 1\nh_bucket{engine="1",le="+Inf"} 3\nh_sum{engine="0"} 1\n'
            'h_sum{engine="1"} 4\nh_count{engine="0"} 2\nh_count{engine="1"} 3\n')
    hist = promtext.histogram(promtext.parse(text), "h")
    assert hist.buckets == ((1.0, 3.0), (math.inf, 5.0)) and hist.count == 5 and hist.mean == 1.0
    assert promtext.histogram(promtext.parse(text), "h", engine="1").count == 3


def test_server_summary_reports_latency_and_queue_in_ms():
    summary = promtext.server_summary(BEFORE, AFTER, model_name="e5")
    assert summary["server_requests"] == 100
    assert summary["server_latency_mean_ms"] == pytest.approx(250.0)
    assert summary["server_queue_mean_ms"] == pytest.approx(50.0)
    assert summary["server_p50_ms"] == pytest.approx(200.0) and summary["server_p90_ms"] == pytest.approx(360.0)
    assert math.isnan(summary["server_queue_p50_ms"])  # in the first bucket: below 10 ms, nothing finer
    assert summary["server_first_bucket_ms"] == pytest.approx(100.0)
    assert summary["server_prompt_tokens"] == 5000.0


def test_server_summary_without_vllm_metrics_is_nan():
    summary = promtext.server_summary("x 1\n", "x 2\n")
    assert summary["server_requests"] == 0 and math.isnan(summary["server_p50_ms"])
