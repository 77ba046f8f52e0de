"""The hand-written OTLP encoder writes what the SDK's encoder writes: the same ExportTraceServiceRequest."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from intercom_sidecar.telemetry.otlp import encode_request, encode_span, encode_spans


def _provider(resource: Resource) -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _decoded(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(encode_spans(spans))


def _varied_spans() -> list[ReadableSpan]:
    provider, exporter = _provider(Resource.create({"service.name": "checkout", "deployment.replicas": 3}))
    tracer = provider.get_tracer("intercom_sidecar")
    other = provider.get_tracer("other.scope", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.21.0")
    scoped = provider.get_tracer("scoped", attributes={"scope.flag": True})
    remote = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "value"), ("other", "x")]),
    )
    parent = set_span_in_context(NonRecordingSpan(remote))
    event = tracer.start_span("intercom_sidecar.event", context=parent, attributes={"segment.message_id": "m-1"})
    with tracer.start_as_current_span("intercom_sidecar.validate", context=set_span_in_context(event)):
        pass
    event.set_attributes(
        {
            "segment.type": "track",
            "empty": "",
            "zero": 0,
            "false": False,
            "negative": -42,
            "big": 2**62,
            "ratio": 0.25,
            "negative.float": -1.5e300,
            "unicode": "naïve ☃ \U0001f600",
            "strings": ("a", "", "c"),
            "ints": [1, -2, 3],
            "floats": (1.5,),
            "bools": [True, False],
            "long": "x" * 300,
        }
    )
    event.add_event("retry", {"attempt": 2, "reason": "503"})
    event.add_event("plain")
    event.set_status(Status(StatusCode.ERROR, "intercom 503 unavailable"))
    event.end()
    client = tracer.start_span("POST /contacts", kind=SpanKind.CLIENT, context=set_span_in_context(event))
    client.set_attribute("http.response.status_code", 200)
    client.set_status(Status(StatusCode.OK))
    client.end()
    linked = other.start_span(
        "intercom_sidecar.event.recovered",
        links=[Link(remote, {"link.kind": "original"}), Link(event.get_span_context())],
        kind=SpanKind.CONSUMER,
    )
    linked.end()
    for kind in (SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.INTERNAL):
        scoped.start_span(f"kind {kind.name}", kind=kind).end()
    second, second_exporter = _provider(Resource({"service.name": "second"}, schema_url="https://example.test/s"))
    second.get_tracer("intercom_sidecar").start_span("in another resource").end()
    spans = [*exporter.get_finished_spans(), *second_exporter.get_finished_spans()]
    spans.insert(1, spans.pop())  # resources interleaved: grouped as the SDK groups them
    return spans


def test_the_request_decodes_to_the_sdk_encoders() -> None:
    spans = _varied_spans()
    assert _decoded(spans) == sdk_encode_spans(spans)


def test_each_span_alone_decodes_to_the_sdk_encoders() -> None:
    for span in _varied_spans():
        assert _decoded([span]) == sdk_encode_spans([span])


def test_the_sidecar_spans_encode_the_same_across_many_batches() -> None:
    provider, exporter = _provider(Resource.create({"service.name": "intercom-sidecar"}))
    tracer = provider.get_tracer("intercom_sidecar")
    for number in range(300):
        span = tracer.start_span("intercom_sidecar.event", attributes={"segment.message_id": f"m{number}"})
        tracer.start_span("intercom_sidecar.validate", context=set_span_in_context(span)).end()
        span.set_attribute("intercom_sidecar.ack.status", "accepted")
        span.end()
    spans = list(exporter.get_finished_spans())
    assert _decoded(spans) == sdk_encode_spans(spans)
    assert _decoded(spans[:7]) == sdk_encode_spans(spans[:7])  # the cached resource and scope, again


def test_no_spans_is_an_empty_request() -> None:
    assert encode_spans([]) == b""
    assert sdk_encode_spans([]).SerializeToString() == b""


def test_an_int_beyond_64_bits_is_left_out_as_the_sdk_does(caplog: pytest.LogCaptureFixture) -> None:
    span = ReadableSpan(
        "huge",
        context=SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)),
        attributes={"huge": 2**64, "kept": "yes"},
        start_time=1,
        end_time=2,
    )
    with caplog.at_level(logging.CRITICAL, logger="opentelemetry"):
        expected = sdk_encode_spans([span])
    with caplog.at_level(logging.WARNING):
        decoded = _decoded([span])
    assert decoded == expected
    assert [attribute.key for attribute in decoded.resource_spans[0].scope_spans[0].spans[0].attributes] == ["kept"]
    assert "`huge` left out" in caplog.text


def test_a_lone_surrogate_does_not_fail_the_batch() -> None:
    span = ReadableSpan(
        "bad \udc80 name",
        context=SpanContext(1, 2, is_remote=False),
        attributes={"value": "bad \ud800"},
        start_time=1,
        end_time=2,
    )
    decoded = _decoded([span]).resource_spans[0].scope_spans[0].spans[0]
    assert decoded.name == "bad ? name"
    assert decoded.attributes[0].value.string_value == "bad ?"


def test_a_span_that_cannot_be_encoded_is_left_out_and_the_batch_still_goes(caplog: pytest.LogCaptureFixture) -> None:
    flags = TraceFlags(TraceFlags.SAMPLED)
    broken = ReadableSpan("broken", context=SpanContext(1, 3, False, flags), start_time=-5, end_time=2)
    fine = ReadableSpan("fine", context=SpanContext(1, 2, False, flags), start_time=1, end_time=2)
    with caplog.at_level(logging.WARNING):
        request = ExportTraceServiceRequest.FromString(encode_spans([broken, fine]))
    names = [span.name for resource in request.resource_spans for scope in resource.scope_spans for span in scope.spans]
    assert names == ["fine"]
    assert "Span `broken` left out of the export" in caplog.text


def test_spans_encoded_one_by_one_make_the_same_request() -> None:
    spans = _varied_spans()
    encoded = [encode_span(span) for span in spans]
    assert all(each is not None for each in encoded)
    assert encode_request(each for each in encoded if each is not None) == encode_spans(spans)


def test_attributes_whose_values_repeat_encode_as_the_sdk_does_every_time() -> None:
    """The KeyValues kept for attributes like the ack status and the outcome reason: short, long (a length of
    more than one byte), not ASCII, and not valid UTF-8."""
    provider, exporter = _provider(Resource.create({"service.name": "intercom-sidecar"}))
    tracer = provider.get_tracer("intercom_sidecar")
    reasons = ["", "deferred", "r" * 200, "naïve ☃", "lone \ud800 surrogate"]
    for _ in range(2):
        for number, reason in enumerate(reasons):
            span = tracer.start_span("intercom_sidecar.event", attributes={"segment.message_id": f"m{number}"})
            span.set_attributes({"segment.type": "track", "intercom_sidecar.outcome.reason": reason})
            span.end()
    spans = list(exporter.get_finished_spans())
    with_surrogate = spans[4], spans[9]
    others = [span for span in spans if span not in with_surrogate]
    assert _decoded(others) == sdk_encode_spans(others)
    for span in with_surrogate:  # the SDK cannot encode it; written with `?` in its place
        [attribute] = [
            kv
            for kv in _decoded([span]).resource_spans[0].scope_spans[0].spans[0].attributes
            if kv.key == "intercom_sidecar.outcome.reason"
        ]
        assert attribute.value.string_value == "lone ? surrogate"
