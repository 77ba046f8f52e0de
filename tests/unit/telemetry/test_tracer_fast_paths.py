"""The lean tracer's shortcuts, taken only with its default id generator and sampler: a child of one of its own
spans, `record_child`, and the encoder's plain shape. Each gives what the long way gives."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
    set_span_in_context,
)

from intercom_sidecar.telemetry import spans
from intercom_sidecar.telemetry.otlp import EncodedSpan, Home, encode_request, encode_spans
from intercom_sidecar.telemetry.processor import QueueSpanProcessor
from intercom_sidecar.telemetry.tracer import LeanSpan, LeanTracerProvider

TRACE_STATE = TraceState([("vendor", "value")])
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _recording(provider_class: type[TracerProvider] = LeanTracerProvider) -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = provider_class(resource=Resource.create({"service.name": "test"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("intercom_sidecar", "1.0"), exporter


def _remote(flags: TraceFlags = SAMPLED, trace_state: TraceState | None = TRACE_STATE) -> SpanContext:
    return SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, flags, trace_state)


def _shown(span: ReadableSpan) -> tuple[object, ...]:
    """What an exporter sees of a child, its own span id and end time left out."""
    context = span.context
    assert context is not None and span.parent is not None
    return (
        span.name,
        span.kind,
        context.trace_id,
        int(context.trace_flags),
        context.trace_state.to_header(),
        context.is_valid,
        context.is_remote,
        (span.parent.trace_id, span.parent.span_id, span.parent.is_remote),
        span.start_time,
        dict(span.attributes or {}),
        span.status.status_code,
        span.resource,
        span.instrumentation_scope,
    )


@pytest.mark.parametrize("caller", [None, _remote(), _remote(trace_state=None)], ids=["root", "tracestate", "plain"])
def test_record_child_is_start_span_then_end(caller: SpanContext | None) -> None:
    tracer, exporter = _recording()
    parent = set_span_in_context(NonRecordingSpan(caller)) if caller is not None else None
    event = tracer.start_span("intercom_sidecar.event", context=parent)
    event_context = set_span_in_context(event)
    spans.record_child(tracer, "intercom_sidecar.validate", event_context, 1_000)
    tracer.start_span("intercom_sidecar.validate", event_context, start_time=1_000).end()
    recorded, started = exporter.get_finished_spans()
    assert type(recorded) is LeanSpan and type(started) is LeanSpan
    assert _shown(recorded) == _shown(started)
    assert recorded.parent == event.get_span_context()
    assert recorded.context is not None and started.context is not None
    assert recorded.context.span_id not in (0, started.context.span_id, event.get_span_context().span_id)
    assert recorded.end_time is not None and recorded.end_time >= 1_000
    assert not recorded.is_recording()  # ended: no later change is taken
    expected = sdk_encode_spans([recorded, started])
    assert ExportTraceServiceRequest.FromString(encode_spans([recorded, started])) == expected


def test_an_unsampled_parent_gives_unrecorded_children_in_its_trace() -> None:
    tracer, exporter = _recording()
    parent = set_span_in_context(NonRecordingSpan(_remote(flags=TraceFlags(0))))
    event = tracer.start_span("intercom_sidecar.event", context=parent)
    assert not event.is_recording()
    spans.record_child(tracer, "intercom_sidecar.validate", set_span_in_context(event), 1_000)
    child = tracer.start_span("intercom_sidecar.validate", context=set_span_in_context(event))
    assert not child.is_recording()
    assert child.get_span_context().trace_id == _remote().trace_id
    assert exporter.get_finished_spans() == ()


def test_record_child_with_another_tracer_starts_and_ends_a_span() -> None:
    tracer, exporter = _recording(TracerProvider)
    event = tracer.start_span("intercom_sidecar.event")
    spans.record_child(tracer, "intercom_sidecar.validate", set_span_in_context(event), 1_000)
    (child,) = exporter.get_finished_spans()
    assert child.name == "intercom_sidecar.validate" and child.parent == event.get_span_context()
    assert child.start_time == 1_000


def _shapes(tracer: Tracer) -> None:
    """Spans that leave the encoder's plain shape at start or later, and plain ones, under a fast-path parent."""
    root = tracer.start_span("root", attributes={"segment.message_id": "m-1"})
    root_context = set_span_in_context(root)
    tracer.start_span("plain child", context=root_context).end()
    spans.record_child(tracer, "recorded child", root_context, 5)
    tracer.start_span("a child named at length " + "x" * 120, context=root_context).end()
    spans.record_child(tracer, "a recorded child named at length " + "y" * 120, root_context, 5)
    with_status = tracer.start_span("status", context=root_context)
    with_status.set_status(Status(StatusCode.ERROR, "intercom 503"))
    with_status.end()
    with_event = tracer.start_span("event", context=root_context)
    with_event.add_event("retry", {"attempt": 2})
    with_event.end()
    with_link = tracer.start_span("link", context=root_context)
    with_link.add_link(_remote(), {"link.kind": "original"})
    with_link.end()
    dropped = tracer.start_span("dropped", context=root_context)
    dropped.set_attribute("", "an empty key is dropped")
    dropped.end()
    tracer.start_span("client", context=root_context, kind=SpanKind.CLIENT).end()
    under_state = tracer.start_span(
        "under a caller with a trace state", set_span_in_context(NonRecordingSpan(_remote()))
    )
    state_context = set_span_in_context(under_state)
    tracer.start_span("inherits the trace state", context=state_context).end()
    spans.record_child(tracer, "recorded, inherits the trace state", state_context, 5)
    under_state.end()
    root.set_attribute("segment.type", "track")
    root.end()


def test_every_shape_encodes_as_the_sdk_encodes_it(caplog: pytest.LogCaptureFixture) -> None:
    tracer, exporter = _recording()
    _shapes(tracer)
    finished = list(exporter.get_finished_spans())
    assert len(finished) == 13 and all(type(span) is LeanSpan for span in finished)
    plain = {span.name for span in finished if span._plain}  # type: ignore[attr-defined]
    assert plain == {
        "root",
        "plain child",
        "recorded child",
        "a child named at length " + "x" * 120,
        "a recorded child named at length " + "y" * 120,
    }
    assert ExportTraceServiceRequest.FromString(encode_spans(finished)) == sdk_encode_spans(finished)
    for span in finished:
        assert ExportTraceServiceRequest.FromString(encode_spans([span])) == sdk_encode_spans([span]), span.name


class _Requests:
    """An exporter of spans already encoded, as the sidecar's OTLP exporters are: keeps each request."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    def export(self, spans: object) -> SpanExportResult:
        raise AssertionError("spans should arrive encoded")

    def export_encoded(self, spans: Sequence[EncodedSpan | bytes], home: Home | None = None) -> SpanExportResult:
        self.requests.append(encode_request(spans, home))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _encoding() -> tuple[Tracer, QueueSpanProcessor, _Requests]:
    """The sidecar's set-up: its processor alone, encoding for an exporter of encoded spans."""
    exporter = _Requests()
    processor = QueueSpanProcessor(exporter, schedule_delay_millis=3_600_000)  # type: ignore[arg-type]
    provider = LeanTracerProvider(resource=Resource.create({"service.name": "test"}), shutdown_on_exit=False)
    provider.add_span_processor(processor)
    assert provider._hooks.plain_child == processor.take_plain_child and provider._hooks.fold  # the shortcuts are on
    return provider.get_tracer("intercom_sidecar", "1.0"), processor, exporter


def _exported(processor: QueueSpanProcessor, exporter: _Requests) -> list[Span]:
    assert processor.force_flush()
    request = ExportTraceServiceRequest.FromString(b"".join(exporter.requests))
    return [span for resource in request.resource_spans for scope in resource.scope_spans for span in scope.spans]


def _unidentified(span: Span) -> Span:
    """A decoded span without its own span id and end time (what a recorded child and one started and ended the
    long way, at another moment, do not share)."""
    copy = Span()
    copy.CopyFrom(span)
    copy.span_id = b""
    copy.end_time_unix_nano = 0
    return copy


def _decoded(span: ReadableSpan) -> Span:
    (decoded,) = sdk_encode_spans([span]).resource_spans[0].scope_spans[0].spans
    return decoded


_PARENTS = {
    "root, attributes (one pack for both)": ("intercom_sidecar.event", {"segment.message_id": "m-1"}, None),
    "root, no attributes": ("intercom_sidecar.event", {}, None),
    "root, attributes too long for a two-byte length": ("e", {"big": "x" * 20_000}, None),
    "under a remote caller": ("intercom_sidecar.event", {"segment.message_id": "m-1"}, "remote"),
    "under a local parent": ("intercom_sidecar.event", {"segment.message_id": "m-1"}, "local"),
    "with an error status": ("intercom_sidecar.event", {"segment.message_id": "m-1"}, "error"),
}


@pytest.mark.parametrize("parent_shape", list(_PARENTS))
@pytest.mark.parametrize("name", ["intercom_sidecar.validate", "a recorded child named at length " + "y" * 120])
def test_a_recorded_child_of_an_open_span_is_exported_with_it_as_the_span_it_would_have_been(
    parent_shape: str, name: str
) -> None:
    """With the sidecar's processor alone, `record_child` keeps the child on its open parent, with no span object
    made; both are encoded when the parent ends, each as the SDK's encoder writes the span it stands for."""
    tracer, processor, exporter = _encoding()
    event_name, attributes, situation = _PARENTS[parent_shape]
    context = None
    if situation == "remote":
        context = set_span_in_context(NonRecordingSpan(_remote(trace_state=None)))
    elif situation == "local":
        context = set_span_in_context(tracer.start_span("the caller"))
    event = tracer.start_span(event_name, context, attributes=attributes)
    event_context = set_span_in_context(event)
    spans.record_child(tracer, name, event_context, 1_000)
    assert event._folded is not None and processor.queued == 0  # type: ignore[attr-defined]
    tracer.start_span(name, event_context, start_time=1_000).end()
    if situation == "error":
        event.set_status(Status(StatusCode.ERROR, "intercom 503"))
    event.set_attribute("intercom_sidecar.ack.status", "accepted")
    event.end()
    assert processor.queued == 2  # the span started the long way, then the event span with its child
    started, recorded, ended_event = _exported(processor, exporter)
    assert ended_event == _decoded(event)  # type: ignore[arg-type]
    assert recorded.span_id != started.span_id and recorded.end_time_unix_nano >= 1_000
    assert recorded.parent_span_id == event.get_span_context().span_id.to_bytes(8, "big")
    assert _unidentified(recorded) == _unidentified(started)
    processor.shutdown()


def test_only_the_first_child_of_an_open_span_is_kept_on_it() -> None:
    """A second child, or one recorded after its parent ended, is handed to the processor at once."""
    tracer, processor, exporter = _encoding()
    event = tracer.start_span("intercom_sidecar.event", attributes={"segment.message_id": "m-1"})
    event_context = set_span_in_context(event)
    spans.record_child(tracer, "first", event_context, 1_000)
    spans.record_child(tracer, "second", event_context, 2_000)
    assert processor.queued == 1
    event.end()
    spans.record_child(tracer, "after the end", event_context, 3_000)
    second, first, ended_event, after = _exported(processor, exporter)
    assert [second.name, first.name, ended_event.name, after.name] == [
        "second",
        "first",
        "intercom_sidecar.event",
        "after the end",
    ]
    assert [span.start_time_unix_nano for span in (first, second, after)] == [1_000, 2_000, 3_000]
    processor.shutdown()


def test_a_child_is_not_kept_on_its_parent_when_other_processors_see_the_spans() -> None:
    tracer, exporter = _recording()
    event = tracer.start_span("intercom_sidecar.event")
    spans.record_child(tracer, "intercom_sidecar.validate", set_span_in_context(event), 1_000)
    assert event._folded is None  # type: ignore[attr-defined]
    assert [span.name for span in exporter.get_finished_spans()] == ["intercom_sidecar.validate"]


def test_recorded_children_count_as_dropped_when_the_queue_is_full() -> None:
    processor = QueueSpanProcessor(_Requests(), max_queue_size=1, schedule_delay_millis=3_600_000)  # type: ignore[arg-type]
    provider = LeanTracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("intercom_sidecar")
    first = tracer.start_span("intercom_sidecar.event")
    first_context = set_span_in_context(first)
    spans.record_child(tracer, "kept on its parent", first_context, 1_000)
    spans.record_child(tracer, "queued at once", first_context, 1_000)
    assert (processor.queued, processor.dropped_spans) == (1, 0)
    first.end()  # with the child kept on it: two spans dropped
    assert (processor.queued, processor.dropped_spans) == (1, 2)
    second = tracer.start_span("intercom_sidecar.event")
    spans.record_child(tracer, "kept on its parent", set_span_in_context(second), 1_000)
    spans.record_child(tracer, "queued at once", set_span_in_context(second), 1_000)
    assert (processor.queued, processor.dropped_spans) == (1, 3)
    processor.shutdown()
