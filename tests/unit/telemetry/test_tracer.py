"""The sidecar's tracer makes the spans the SDK's would: same tree, ids, flags, attributes, statuses, events and
links, the same limits and sampling; only lighter."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    NoOpTracer,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
    set_span_in_context,
)

from intercom_sidecar.telemetry.otlp import encode_request, encode_span, encode_spans
from intercom_sidecar.telemetry.tracer import LeanSpan, LeanTracerProvider

RESOURCE = Resource({"service.name": "intercom-sidecar"})


class CountingIds(IdGenerator):
    """The same ids in the same order for both providers."""

    def __init__(self) -> None:
        self._next = 0

    def _bump(self) -> int:
        self._next += 1
        return self._next

    def generate_span_id(self) -> int:
        return self._bump()

    def generate_trace_id(self) -> int:
        return self._bump() << 64

    def is_trace_id_random(self) -> bool:
        return True


def _record(
    provider_class: type[TracerProvider],
    scenario: Callable[[Tracer], None],
    *,
    sampler: Sampler | None = None,
    limits: SpanLimits | None = None,
) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = provider_class(
        sampler=sampler, resource=RESOURCE, shutdown_on_exit=False, id_generator=CountingIds(), span_limits=limits
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scenario(provider.get_tracer("intercom_sidecar", "1.0"))
    return list(exporter.get_finished_spans())


def _comparable(span: ReadableSpan) -> dict[str, Any]:
    """Everything exporters see, times left out (they differ between two runs)."""
    shown = json.loads(span.to_json())
    shown.pop("start_time")
    shown.pop("end_time")
    for event in shown["events"]:
        event.pop("timestamp")
        event["attributes"].pop("exception.stacktrace", None)  # line numbers differ
    shown["dropped"] = (span.dropped_attributes, span.dropped_events, span.dropped_links)
    shown["flags"] = int(span.context.trace_flags) if span.context else None
    shown["trace_state"] = span.context.trace_state.to_header() if span.context else None
    shown["scope"] = (span.instrumentation_scope.name, span.instrumentation_scope.version)  # type: ignore[union-attr]
    return shown


def _same(scenario: Callable[[Tracer], None], **options: Any) -> list[ReadableSpan]:
    sdk = _record(TracerProvider, scenario, **options)
    lean = _record(LeanTracerProvider, scenario, **options)
    assert all(isinstance(span, LeanSpan) for span in lean)
    assert [_comparable(span) for span in lean] == [_comparable(span) for span in sdk]
    assert [list(span.attributes or {}) for span in lean] == [list(span.attributes or {}) for span in sdk]  # order
    return lean


REMOTE = SpanContext(
    0x0AF7651916CD43DD8448EB211C80319C,
    0xB7AD6B7169203331,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
    trace_state=TraceState([("vendor", "value")]),
)


def intake_journey(tracer: Tracer) -> None:
    """An event as the sidecar traces it: the event span, validation, queued, an attempt and its HTTP call."""
    event = tracer.start_span(
        "intercom_sidecar.event",
        context=set_span_in_context(NonRecordingSpan(REMOTE)),
        attributes={"segment.message_id": "m-1"},
    )
    event_context = set_span_in_context(event)
    with tracer.start_as_current_span("intercom_sidecar.validate", context=event_context):
        event.set_attribute("segment.type", "identify")
    tracer.start_span("intercom_sidecar.queued", context=event_context, start_time=1_000).end()
    attempt = {"retry.attempt": 1}
    with tracer.start_as_current_span("intercom_sidecar.attempt", context=event_context, attributes=attempt):
        with tracer.start_as_current_span(
            "POST /contacts",
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "url.template": "/contacts"},
            record_exception=False,
            set_status_on_exception=False,
        ) as call:
            call.set_attribute("http.response.status_code", 503)
            call.set_status(Status(StatusCode.ERROR, "intercom 503"))
    event.set_attribute("intercom_sidecar.ack.status", "accepted")
    event.end()


def test_the_sidecars_spans_are_the_sdks() -> None:
    spans = _same(intake_journey)
    assert [span.name for span in spans] == [
        "intercom_sidecar.validate",
        "intercom_sidecar.queued",
        "POST /contacts",
        "intercom_sidecar.attempt",
        "intercom_sidecar.event",
    ]
    event = spans[-1]
    assert event.parent == REMOTE
    assert all(span.parent and span.parent.span_id == event.context.span_id for span in spans[:2])  # type: ignore[union-attr]
    assert spans[1].start_time == 1_000


def test_encoded_as_the_sdk_encodes_the_sdks_spans() -> None:
    sdk = _record(TracerProvider, intake_journey)
    lean = _record(LeanTracerProvider, intake_journey)
    for span in [*sdk, *lean]:
        span._start_time, span._end_time = 1, 2  # the only difference between the two runs
    expected = sdk_encode_spans(sdk)
    assert ExportTraceServiceRequest.FromString(encode_spans(lean)) == expected
    assert ExportTraceServiceRequest.FromString(sdk_encode_spans(lean).SerializeToString()) == expected


def exceptions(tracer: Tracer) -> None:
    with pytest.raises(ValueError), tracer.start_as_current_span("recorded"):
        raise ValueError("bad input")
    with pytest.raises(ValueError), tracer.start_as_current_span("quiet", record_exception=False):
        raise ValueError("not recorded, status set")
    with pytest.raises(KeyError), tracer.start_span("as a context manager"):
        raise KeyError("k")
    span = tracer.start_span("recorded by hand")
    span.record_exception(RuntimeError("boom"), attributes={"extra": 1})
    span.end()


def test_exceptions_are_recorded_as_the_sdk_records_them() -> None:
    spans = _same(exceptions)
    assert [span.status.status_code for span in spans] == [StatusCode.ERROR] * 3 + [StatusCode.UNSET]
    assert [len(span.events) for span in spans] == [1, 0, 1, 1]


def nesting_and_links(tracer: Tracer) -> None:
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        tracer.start_span("implicit child").end()
    linked = tracer.start_span(
        "recovered", links=[Link(REMOTE, {"link.kind": "original"}), Link(SpanContext(0, 0, False))]
    )
    linked.add_link(REMOTE)
    linked.add_event("plain")
    linked.add_event("with attributes", {"n": 1}, timestamp=5)
    linked.update_name("renamed")
    linked.end()


def test_nesting_links_and_events() -> None:
    spans = _same(nesting_and_links)
    assert [span.name for span in spans] == ["implicit child", "inner", "outer", "renamed"]
    assert len(spans[-1].links) == 2  # the invalid link is not kept, as in the SDK


def statuses_and_misuse(tracer: Tracer) -> None:
    span = tracer.start_span("ok wins")
    span.set_status(StatusCode.OK)
    span.set_status(Status(StatusCode.ERROR, "too late"))
    span.end()
    span = tracer.start_span("unset never replaces")
    span.set_status(StatusCode.ERROR, "first")
    span.set_status(Status(StatusCode.UNSET))
    span.end()
    span.end()  # twice: ignored
    span.set_attribute("after", "end")  # ignored
    span.set_status(StatusCode.OK)  # ignored


def test_statuses_and_calls_after_end(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        spans = _same(statuses_and_misuse)
    assert [span.status.status_code for span in spans] == [StatusCode.OK, StatusCode.ERROR]
    assert "after" not in (spans[1].attributes or {})


def attribute_values(tracer: Tracer) -> None:
    span = tracer.start_span("values", attributes={"a": "x", "list": ["1", "2"]})
    span.set_attributes({"int": 1, "float": 0.5, "bool": True, "tuple": (1, 2)})
    span.set_attribute("a", "moved to the end")
    span.set_attribute("", "empty key")
    span.set_attribute(7, "not a str key")  # type: ignore[arg-type]
    span.set_attribute("object", object())  # type: ignore[arg-type]
    span.end()


def test_attribute_values_are_cleaned_as_the_sdk_cleans_them(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.CRITICAL):
        spans = _same(attribute_values)
    assert list(spans[0].attributes or {}) == ["list", "int", "float", "bool", "tuple", "a", "object"]
    assert spans[0].dropped_attributes == 2  # the two bad keys


def many_attributes(tracer: Tracer) -> None:
    span = tracer.start_span("limited", attributes={"first": "abcdef"})
    for number in range(5):
        span.set_attribute(f"key{number}", "long value")
    for number in range(4):
        span.add_event(f"event {number}", {"one": "abcdef", "two": 2, "three": 3})
    span.end()


def test_limits_are_the_sdks(caplog: pytest.LogCaptureFixture) -> None:
    limits = SpanLimits(
        max_span_attributes=3,
        max_span_attribute_length=4,
        max_events=2,
        max_event_attributes=2,
        max_attribute_length=3,
    )
    with caplog.at_level(logging.CRITICAL):
        spans = _same(many_attributes, limits=limits)
    assert dict(spans[0].attributes or {}) == {"key2": "long", "key3": "long", "key4": "long"}
    assert (spans[0].dropped_attributes, spans[0].dropped_events) == (3, 2)


def unsampled_parent(tracer: Tracer) -> None:
    remote = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True, trace_flags=TraceFlags(0))
    span = tracer.start_span("under an unsampled parent", context=set_span_in_context(NonRecordingSpan(remote)))
    assert not span.is_recording()
    assert span.get_span_context().trace_id == REMOTE.trace_id
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    tracer.start_span("root").end()


@pytest.mark.parametrize(
    "sampler",
    [None, ALWAYS_OFF, TraceIdRatioBased(0.0), ParentBased(TraceIdRatioBased(1.0)), ParentBased(ALWAYS_OFF)],
    ids=["default", "always_off", "ratio 0", "parentbased ratio 1", "parentbased always_off"],
)
def test_sampling_is_the_samplers(sampler: Sampler | None) -> None:
    _same(unsampled_parent, sampler=sampler)


def test_unrecorded_spans_still_carry_a_real_trace_id_and_the_sdks_flags() -> None:
    def ids(provider_class: type[TracerProvider]) -> Iterator[tuple[int, int, int]]:
        provider = provider_class(sampler=ALWAYS_OFF, id_generator=CountingIds(), shutdown_on_exit=False)
        tracer = provider.get_tracer("intercom_sidecar")
        for context in (None, set_span_in_context(NonRecordingSpan(REMOTE))):
            span = tracer.start_span("event", context=context)
            assert not span.is_recording()
            span_context = span.get_span_context()
            yield span_context.trace_id, span_context.span_id, int(span_context.trace_flags)

    lean = list(ids(LeanTracerProvider))
    assert lean == list(ids(TracerProvider))
    assert lean[0][0] != 0 and lean[1][0] == REMOTE.trace_id


def test_a_disabled_sdk_gives_the_no_op_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(LeanTracerProvider(shutdown_on_exit=False).get_tracer("intercom_sidecar"), NoOpTracer)


def test_an_ended_span_is_handed_to_processors_once_and_is_immutable() -> None:
    spans = _record(LeanTracerProvider, statuses_and_misuse)
    assert len(spans) == 2
    with pytest.raises(TypeError):
        spans[0].attributes["x"] = 1  # type: ignore[index]


def attributes_at_start(tracer: Tracer) -> None:
    """Attributes given to start_span: plain ones, ones to clean or drop, more than the limit, too long."""
    tracer.start_span("plain", attributes={"segment.message_id": "m-1", "n": 3, "ok": True, "r": 0.5}).end()
    tracer.start_span("cleaned", attributes={"list": ["a", "b"], "": "no key", "object": object()}).end()  # type: ignore[dict-item]
    tracer.start_span("too many", attributes={f"key{number}": "v" for number in range(5)}).end()
    tracer.start_span("too long", attributes={"long": "abcdefgh"}).end()
    with contextlib.suppress(ValueError), tracer.start_span("no exception recorded", record_exception=False):
        raise ValueError("a status, no event")
    with contextlib.suppress(ValueError), tracer.start_span("no status", set_status_on_exception=False):
        raise ValueError("an event, no status")


@pytest.mark.parametrize("limits", [None, SpanLimits(max_span_attributes=3, max_span_attribute_length=4)])
def test_attributes_given_at_start_are_kept_as_the_sdk_keeps_them(
    limits: SpanLimits | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.CRITICAL):
        spans = _same(attributes_at_start, limits=limits)
    plain = {"segment.message_id": "m-1", "n": 3, "ok": True, "r": 0.5}
    assert dict(spans[0].attributes or {}) == (plain if limits is None else {"n": 3, "ok": True, "r": 0.5})


def test_span_contexts_are_the_ones_span_context_makes() -> None:
    provider = LeanTracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("intercom_sidecar")
    for parent in (None, set_span_in_context(NonRecordingSpan(REMOTE))):
        for span in (
            tracer.start_span("recorded", context=parent),
            LeanTracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
            .get_tracer("t")
            .start_span("unrecorded", context=parent),
        ):
            context = span.get_span_context()
            made = SpanContext(context.trace_id, context.span_id, False, context.trace_flags, context.trace_state)
            assert tuple(context) == tuple(made) and context.is_valid and not context.is_remote
            assert context.trace_state is (REMOTE.trace_state if parent else made.trace_state)


def local_journey(tracer: Tracer) -> None:
    """Spans with no caller's context: the encoder's common shapes (a root, local children) and the others."""
    event = tracer.start_span("intercom_sidecar.event", attributes={"segment.message_id": "m-1"})
    tracer.start_span("intercom_sidecar.validate", context=set_span_in_context(event)).end()
    event.set_attributes({"segment.type": "track", "intercom_sidecar.ack.status": "accepted"})
    event.set_attribute("intercom_sidecar.outcome.reason", "waits in the spool behind a backlog " * 4)
    event.end()
    errored = tracer.start_span("errored", context=set_span_in_context(event))
    errored.set_status(Status(StatusCode.ERROR, "intercom 503"))
    errored.end()
    tracer.start_span("POST /events", kind=SpanKind.CLIENT, context=set_span_in_context(event)).end()
    plain_remote = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True, trace_flags=REMOTE.trace_flags)
    tracer.start_span("under a remote parent", context=set_span_in_context(NonRecordingSpan(plain_remote))).end()
    with_event = tracer.start_span("with an event")
    with_event.add_event("retry")
    with_event.end()


def test_the_common_shapes_encode_as_the_sdk_encodes_them() -> None:
    sdk = _record(TracerProvider, local_journey)
    lean = _record(LeanTracerProvider, local_journey)
    for span in [*sdk, *lean]:
        span._start_time, span._end_time = 1, 2  # the only difference between the two runs
    for event in [*sdk[-1].events, *lean[-1].events]:
        event._timestamp = 3  # type: ignore[attr-defined]
    expected = sdk_encode_spans(sdk)
    assert ExportTraceServiceRequest.FromString(encode_spans(lean)) == expected
    one_by_one = [encode_span(span) for span in lean]
    assert ExportTraceServiceRequest.FromString(encode_request(e for e in one_by_one if e is not None)) == expected
