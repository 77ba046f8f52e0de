"""The spans intake makes for one event: the event span and its validation child, recorded by the sidecar's own
tracer and by the SDK's alike (same tree, statuses and exception events), whatever the outcome of validation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, get_current_span

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2
from intercom_sidecar.config import LimitsConfig, MappingConfig, QueueConfig, RetryConfig
from intercom_sidecar.delivery.pipeline import Pipeline
from intercom_sidecar.delivery.spool_memory import MemorySpool
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.intake import Intake
from intercom_sidecar.model.acks import AckInfo, AckStatus
from intercom_sidecar.model.events import Event
from intercom_sidecar.model.from_proto import event_from_proto
from intercom_sidecar.telemetry.tracer import LeanTracerProvider
from tests.unit.delivery.test_pipeline import FakeSender

pytestmark = pytest.mark.timeout(10)

PROVIDERS = [LeanTracerProvider, TracerProvider]


async def _intake(provider_type: type[TracerProvider]) -> tuple[Intake, InMemorySpanExporter]:
    spool = MemorySpool(max_events=100, max_bytes=1_000_000)
    await spool.open()
    pipeline = Pipeline(FakeSender(), QueueConfig(), RetryConfig())  # not started: nothing is delivered
    exporter = InMemorySpanExporter()
    provider = provider_type(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Intake(Spooler(spool, pipeline), provider.get_tracer("test"), MappingConfig(), durable=True), exporter


def _decoder(event: event_pb2.Event) -> Callable[[float], Event]:
    def decode(now: float) -> Event:
        return event_from_proto(event, now=now, limits=LimitsConfig())

    return decode


async def _take(intake: Intake, event: event_pb2.Event) -> AckInfo:
    later: asyncio.Future[AckInfo] = asyncio.get_running_loop().create_future()
    ack = intake.submit(event.message_id, _decoder(event), lambda traceparent: b"payload", later.set_result, wait=False)
    return await later if ack is None else ack


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


@pytest.mark.parametrize("provider_type", PROVIDERS)
async def test_an_accepted_event_has_a_validation_child_that_ended(provider_type: type[TracerProvider]) -> None:
    intake, exporter = await _intake(provider_type)
    event = event_pb2.Event(message_id="m1", user_id="u1", track=event_pb2.Track(event="Order Completed"))

    ack = await _take(intake, event)

    assert ack.status is AckStatus.ACCEPTED
    [validate] = exporter.get_finished_spans()  # the event span ends with the delivery, held here
    assert validate.name == "intercom_sidecar.validate"
    assert validate.status.status_code is StatusCode.UNSET
    assert validate.parent is not None and format(validate.context.trace_id, "032x") == ack.trace_id
    assert not validate.events and not validate.attributes


@pytest.mark.parametrize("provider_type", PROVIDERS)
async def test_an_invalid_event_ends_both_spans_with_the_error(provider_type: type[TracerProvider]) -> None:
    intake, exporter = await _intake(provider_type)
    event = event_pb2.Event(message_id="m1", user_id="u1", track=event_pb2.Track(event=" "))

    ack = await _take(intake, event)

    assert ack.status is AckStatus.INVALID
    spans = _by_name(exporter.get_finished_spans())
    validate, event_span = spans["intercom_sidecar.validate"], spans["intercom_sidecar.event"]
    assert validate.parent is not None and validate.parent.span_id == event_span.context.span_id
    assert validate.status.status_code is StatusCode.ERROR
    assert validate.status.description == f"InvalidEventError: {ack.reason}"
    [exception] = validate.events
    assert exception.name == "exception"
    assert dict(exception.attributes or {})["exception.message"] == ack.reason
    assert event_span.status.status_code is StatusCode.ERROR
    assert dict(event_span.attributes or {})["intercom_sidecar.ack.status"] == "invalid"


async def test_the_span_current_around_intake_is_current_again_after_it() -> None:
    intake, _ = await _intake(LeanTracerProvider)
    before = get_current_span()
    await _take(intake, event_pb2.Event(message_id="m1", user_id="u1", track=event_pb2.Track(event=" ")))
    assert get_current_span() is before
