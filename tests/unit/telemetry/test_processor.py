"""QueueSpanProcessor: batches, the schedule delay, a bounded queue that drops and counts, flush and shutdown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from intercom_sidecar.telemetry.otlp import EncodedSpan, Home, encode_request
from intercom_sidecar.telemetry.processor import QueueSpanProcessor

WAIT = 10.0  # seconds: a bound on waiting for the worker thread, never a pause


class Recorder(SpanExporter):
    def __init__(self, *, hold: bool = False, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.exported = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.fail = fail
        self.shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        assert self.release.wait(WAIT)
        self.batches.append([span.name for span in spans])
        self.exported.set()
        if self.fail:
            raise RuntimeError("collector gone")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut_down = True


def span(name: str, *, sampled: bool = True) -> ReadableSpan:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else 0)
    return ReadableSpan(name, context=SpanContext(1, 2, is_remote=False, trace_flags=flags), start_time=1, end_time=2)


@pytest.fixture
def processors() -> Iterator[list[QueueSpanProcessor]]:
    made: list[QueueSpanProcessor] = []
    yield made
    for processor in made:
        processor.shutdown()


def make(processors: list[QueueSpanProcessor], exporter: Recorder, **options: int) -> QueueSpanProcessor:
    processor = QueueSpanProcessor(exporter, env={}, **options)  # type: ignore[arg-type]
    processors.append(processor)
    return processor


def test_a_full_batch_is_exported_at_once(processors: list[QueueSpanProcessor]) -> None:
    exporter = Recorder()
    processor = make(processors, exporter, max_export_batch_size=3, schedule_delay_millis=3_600_000)
    for number in range(3):
        processor.on_end(span(f"s{number}"))
    assert exporter.exported.wait(WAIT)
    assert exporter.batches == [["s0", "s1", "s2"]]


def test_a_partial_batch_goes_after_the_schedule_delay(processors: list[QueueSpanProcessor]) -> None:
    exporter = Recorder()
    processor = make(processors, exporter, max_export_batch_size=100, schedule_delay_millis=10)
    processor.on_end(span("alone"))
    assert exporter.exported.wait(WAIT)
    assert exporter.batches == [["alone"]]


def test_unsampled_spans_are_not_exported(processors: list[QueueSpanProcessor]) -> None:
    exporter = Recorder()
    processor = make(processors, exporter, schedule_delay_millis=3_600_000)
    processor.on_end(span("not sampled", sampled=False))
    processor.on_end(span("sampled"))
    assert processor.force_flush()
    assert exporter.batches == [["sampled"]]


def test_a_full_queue_drops_and_counts(processors: list[QueueSpanProcessor], caplog: pytest.LogCaptureFixture) -> None:
    exporter = Recorder(hold=True)
    processor = make(processors, exporter, max_queue_size=2, max_export_batch_size=1, schedule_delay_millis=3_600_000)
    processor.on_end(span("first"))
    assert exporter.entered.wait(WAIT)  # the worker took it and is held in export: the queue is empty again
    for name in ("second", "third", "dropped", "dropped too"):
        processor.on_end(span(name))
    assert processor.dropped_spans == 2
    assert processor.queued == 2
    exporter.release.set()
    with caplog.at_level(logging.WARNING):
        assert processor.force_flush()
    assert [name for batch in exporter.batches for name in batch] == ["first", "second", "third"]
    assert "Dropped 2 spans" in caplog.text


def test_force_flush_exports_everything_queued_in_batches(processors: list[QueueSpanProcessor]) -> None:
    exporter = Recorder()
    processor = make(processors, exporter, max_export_batch_size=512, schedule_delay_millis=3_600_000)
    for number in range(1030):
        processor.on_end(span(f"s{number}"))
    assert processor.force_flush()
    sizes = [len(batch) for batch in exporter.batches]
    assert sum(sizes) == 1030 and max(sizes) <= 512
    assert processor.queued == 0


def test_shutdown_exports_what_is_left_then_refuses(processors: list[QueueSpanProcessor]) -> None:
    exporter = Recorder()
    processor = make(processors, exporter, schedule_delay_millis=3_600_000)
    processor.on_end(span("last"))
    processor.shutdown()
    assert exporter.batches == [["last"]]
    assert exporter.shut_down
    processor.on_end(span("too late"))
    assert processor.dropped_spans == 1
    assert not processor.force_flush()
    processor.shutdown()  # twice: nothing more


def test_an_exporter_that_raises_loses_its_batch_not_the_processor(
    processors: list[QueueSpanProcessor], caplog: pytest.LogCaptureFixture
) -> None:
    exporter = Recorder(fail=True)
    processor = make(processors, exporter, schedule_delay_millis=3_600_000)
    processor.on_end(span("lost"))
    with caplog.at_level(logging.ERROR):
        assert processor.force_flush()
    processor.on_end(span("next"))
    with caplog.at_level(logging.ERROR):
        assert processor.force_flush()
    assert exporter.batches == [["lost"], ["next"]]
    assert "1 spans lost" in caplog.text


def test_the_standard_variables_size_it(caplog: pytest.LogCaptureFixture) -> None:
    env = {"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "50", "OTEL_BSP_SCHEDULE_DELAY": "250"}
    processor = QueueSpanProcessor(Recorder(), env=env)
    try:
        assert (processor._max_queue_size, processor._max_batch, processor._delay) == (10, 10, 0.25)
    finally:
        processor.shutdown()
    with caplog.at_level(logging.WARNING):
        bad = {"OTEL_BSP_MAX_QUEUE_SIZE": "-1", "OTEL_BSP_SCHEDULE_DELAY": "x"}
        processor = QueueSpanProcessor(Recorder(), env=bad)
    try:
        assert (processor._max_queue_size, processor._max_batch, processor._delay) == (2048, 512, 5.0)
        assert "`OTEL_BSP_MAX_QUEUE_SIZE` must be a positive integer" in caplog.text
    finally:
        processor.shutdown()


class Unreachable(SpanExporter):
    """A collector that is down: an export waits (the SDK exporter's retries) until the exporter is shut down."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.exports = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exports += 1
        self.stopped.wait(WAIT)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.stopped.set()


def test_shutdown_gives_a_collector_that_is_down_its_deadline_and_no_more(
    processors: list[QueueSpanProcessor],
) -> None:
    exporter = Unreachable()
    processor = make(processors, exporter, schedule_delay_millis=3_600_000, max_export_batch_size=1)
    for name in ("a", "b", "c"):
        processor.on_end(span(name))

    started = time.monotonic()
    processor.shutdown(timeout_millis=200)

    assert time.monotonic() - started < WAIT / 2, "shutdown waited for the exporter's own timeouts"
    assert exporter.stopped.is_set(), "the exporter was shut down, which ends its retries"
    assert exporter.exports <= 2, "no batch is started after the deadline"


class EncodedRecorder(Recorder):
    """An exporter that takes spans already encoded, as the sidecar's OTLP exporters do."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[bytes] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise AssertionError("spans should arrive encoded")

    def export_encoded(self, spans: Sequence[EncodedSpan | bytes], home: Home | None = None) -> SpanExportResult:
        self.requests.append(encode_request(spans, home))
        self.exported.set()
        return SpanExportResult.SUCCESS


def test_an_exporter_of_encoded_spans_gets_each_span_encoded_as_it_ended(
    processors: list[QueueSpanProcessor], caplog: pytest.LogCaptureFixture
) -> None:
    exporter = EncodedRecorder()
    processor = make(processors, exporter, max_export_batch_size=3)
    context = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    resource = Resource({"service.name": "intercom-sidecar"})  # one, as a provider's spans share theirs
    ended = [ReadableSpan(name, context=context, resource=resource, start_time=1, end_time=2) for name in "ab"]
    unencodable = ReadableSpan(
        "no kind",
        context=context,
        resource=resource,
        kind=None,  # type: ignore[arg-type]
        start_time=1,
        end_time=2,
    )
    for each in (ended[0], unencodable, ended[1]):
        processor.on_end(each)
    assert "`no kind` left out of the export" in caplog.text  # when it ended, not at export time
    assert processor.queued == 2
    assert processor.force_flush()
    [request] = exporter.requests
    assert ExportTraceServiceRequest.FromString(request) == sdk_encode_spans(ended)


def test_spans_of_other_resources_and_scopes_than_the_first_keep_theirs(processors: list[QueueSpanProcessor]) -> None:
    # The first span's resource and scope become the processor's home (its spans are queued as bytes alone);
    # every other span carries its own, and the request groups them all as the SDK encoder does.
    exporter = EncodedRecorder()
    processor = make(processors, exporter)
    context = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    home, other = Resource({"service.name": "intercom-sidecar"}), Resource({"service.name": "other"})
    scopes = [InstrumentationScope("intercom_sidecar"), InstrumentationScope("grpc", "1.0"), None]
    ended = [
        ReadableSpan(f"span {n}", context=context, resource=resource, instrumentation_scope=scope, start_time=n)
        for n, (resource, scope) in enumerate(
            [(home, scopes[0]), (home, scopes[1]), (other, scopes[0]), (home, scopes[0]), (home, scopes[2])] * 2
        )
    ]
    for span in ended:
        processor.on_end(span)
    assert processor.force_flush()
    [request] = exporter.requests
    assert ExportTraceServiceRequest.FromString(request) == sdk_encode_spans(ended)


def test_a_span_given_as_bytes_alone_needs_its_home() -> None:
    with pytest.raises(ValueError, match="without its resource and scope"):
        encode_request([b"\x12\x00"])
