"""The Prometheus text format 0.0.4, rendered from OpenTelemetry data: golden text for counters, gauges,
histogram buckets, names, units and label escaping."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from intercom_sidecar.telemetry.metrics import Metrics, make_meter_provider
from intercom_sidecar.telemetry.prometheus import PrometheusReader, render_text


@pytest.fixture
def reader() -> PrometheusReader:
    return PrometheusReader()


def meter(reader: PrometheusReader):  # type: ignore[no-untyped-def]
    return make_meter_provider({}, readers=(reader,)).get_meter("test")


def test_nothing_collected_renders_nothing(reader: PrometheusReader) -> None:
    assert render_text(None) == ""
    make_meter_provider({}, readers=(reader,))
    assert render_text(reader.get_metrics_data()) == ""


def test_counter_with_escaped_labels_and_help(reader: PrometheusReader) -> None:
    counter = meter(reader).create_counter(
        "demo.requests", unit="{request}", description='Requests "served".\nSecond line \\ backslash.'
    )
    counter.add(2, {"http.method": "GET", "path": 'a"b\\c\nd'})
    counter.add(1, {"http.method": "POST", "path": "/"})

    assert render_text(reader.get_metrics_data()) == (
        '# HELP demo_requests_total Requests "served".\\nSecond line \\\\ backslash.\n'
        "# TYPE demo_requests_total counter\n"
        'demo_requests_total{http_method="GET",path="a\\"b\\\\c\\nd"} 2\n'
        'demo_requests_total{http_method="POST",path="/"} 1\n'
    )


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count(reader: PrometheusReader) -> None:
    histogram = meter(reader).create_histogram(
        "demo.duration", unit="s", description="How long.", explicit_bucket_boundaries_advisory=(0.1, 1.0, 2.5)
    )
    for seconds in (0.0625, 0.25, 0.5, 4.0):
        histogram.record(seconds, {"endpoint": "POST /events"})

    assert render_text(reader.get_metrics_data()) == (
        "# HELP demo_duration_seconds How long.\n"
        "# TYPE demo_duration_seconds histogram\n"
        'demo_duration_seconds_bucket{endpoint="POST /events",le="0.1"} 1\n'
        'demo_duration_seconds_bucket{endpoint="POST /events",le="1.0"} 3\n'
        'demo_duration_seconds_bucket{endpoint="POST /events",le="2.5"} 3\n'
        'demo_duration_seconds_bucket{endpoint="POST /events",le="+Inf"} 4\n'
        'demo_duration_seconds_sum{endpoint="POST /events"} 4.8125\n'
        'demo_duration_seconds_count{endpoint="POST /events"} 4\n'
    )


def test_gauges_up_down_counters_and_float_counters(reader: PrometheusReader) -> None:
    m = meter(reader)

    def depth(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(7)]

    m.create_observable_gauge("demo.queue.depth", [depth], unit="{event}")
    m.create_up_down_counter("demo.in_flight").add(-2)
    m.create_counter("demo.wait", unit="s").add(1.5)
    m.create_counter("demo.errors_total").add(1)

    assert render_text(reader.get_metrics_data()) == (
        "# TYPE demo_in_flight gauge\n"
        "demo_in_flight -2\n"
        "# TYPE demo_wait_seconds_total counter\n"
        "demo_wait_seconds_total 1.5\n"
        "# TYPE demo_errors_total counter\n"
        "demo_errors_total 1\n"
        "# TYPE demo_queue_depth gauge\n"
        "demo_queue_depth 7\n"
    )


def test_names_and_label_keys_are_made_valid(reader: PrometheusReader) -> None:
    counter = meter(reader).create_counter("demo.weird-name/x", unit="By")
    counter.add(3, {"1st": "x", "a.b": "one", "a_b": "two", "ok": True})

    assert render_text(reader.get_metrics_data()) == (
        "# TYPE demo_weird_name_x_bytes_total counter\n"
        'demo_weird_name_x_bytes_total{a_b="one;two",key_1st="x",ok="True"} 3\n'
    )


def test_special_values() -> None:
    """The SDK drops non-finite measurements; other sources (a hand-built batch here) may still carry them."""
    points = [
        NumberDataPoint({"v": name}, 0, 0, value)
        for name, value in (("inf", math.inf), ("-inf", -math.inf), ("nan", math.nan), ("tenth", 0.1))
    ]
    metric = Metric("demo.values", None, None, Gauge(points))
    data = MetricsData(
        [ResourceMetrics(Resource.get_empty(), [ScopeMetrics(InstrumentationScope("t"), [metric], "")], "")]
    )

    assert render_text(data).splitlines() == [
        "# TYPE demo_values gauge",
        'demo_values{v="inf"} +Inf',
        'demo_values{v="-inf"} -Inf',
        'demo_values{v="nan"} NaN',
        'demo_values{v="tenth"} 0.1',
    ]


def test_the_sidecars_metrics_render_with_their_prometheus_names(reader: PrometheusReader) -> None:
    metrics = Metrics(make_meter_provider({}, readers=(reader,)), clock=lambda: 100.0)
    metrics.event_received("track", "accepted")
    metrics.events_accepted()
    metrics.intercom_call("PUT /contacts/{id}", 200, 0.03)
    metrics.event_delivered(accepted_at=99.0)
    metrics.rate_limit_waited(2.0)
    metrics.observe_queue(lambda: 4, lambda: 1.5)

    text = render_text(reader.get_metrics_data())
    lines = set(text.splitlines())
    assert {
        "# TYPE intercom_sidecar_events_received_total counter",
        'intercom_sidecar_events_received_total{intercom_sidecar_ack_status="accepted",segment_type="track"} 1',
        'intercom_sidecar_events_accepted_total{intercom_sidecar_event_source="intake"} 1',
        "intercom_sidecar_events_delivered_total 1",
        "intercom_sidecar_events_filtered_total 0",
        "intercom_sidecar_events_dead_lettered_total 0",
        'intercom_sidecar_intercom_requests_total{http_response_status_code="200",'
        'intercom_endpoint="PUT /contacts/{id}"} 1',
        "# TYPE intercom_sidecar_intercom_request_duration_seconds histogram",
        'intercom_sidecar_intercom_request_duration_seconds_bucket{http_response_status_code="200",'
        'intercom_endpoint="PUT /contacts/{id}",le="0.05"} 1',
        'intercom_sidecar_intercom_request_duration_seconds_bucket{http_response_status_code="200",'
        'intercom_endpoint="PUT /contacts/{id}",le="0.025"} 0',
        'intercom_sidecar_delivery_latency_seconds_bucket{le="1.0"} 1',
        'intercom_sidecar_delivery_latency_seconds_bucket{le="0.5"} 0',
        "intercom_sidecar_delivery_latency_seconds_count 1",
        "intercom_sidecar_delivery_latency_seconds_sum 1.0",
        "intercom_sidecar_intercom_rate_limit_wait_seconds_total 2.0",
        "# TYPE intercom_sidecar_queue_depth gauge",
        "intercom_sidecar_queue_depth 4",
        "intercom_sidecar_queue_oldest_age_seconds 1.5",
    } <= lines
    type_lines = [line for line in lines if line.startswith("# TYPE ")]
    assert len(type_lines) == len({line.split()[2] for line in type_lines}), "a family is declared twice"
    assert "service" not in text  # no resource attributes
