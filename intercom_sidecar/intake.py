"""Intake: one event in, one acknowledgement out, whatever the transport.

    span -> decode (validate) -> map -> pipeline.submit -> ACCEPTED now, or the final outcome later

Each event gets its own span (`intercom_sidecar.event`); the ack carries that span's trace id. Bad input never
raises out of here: it becomes the event's ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.delivery.pipeline import Abandoned, Delivered, Outcome, Pipeline, Rejected
from intercom_sidecar.errors import InvalidEventError, QueueFullError, ShuttingDownError
from intercom_sidecar.mapping import Skip, map_event
from intercom_sidecar.model.acks import AckInfo, AckStatus
from intercom_sidecar.model.events import Event
from intercom_sidecar.telemetry import names

__all__ = ["Intake"]

_log = logging.getLogger(__name__)


class Intake:
    def __init__(self, pipeline: Pipeline, tracer: Tracer, mapping: MappingConfig) -> None:
        self._pipeline = pipeline
        self._tracer = tracer
        self._mapping = mapping

    def submit(
        self, message_id: str, decode: Callable[[], Event], *, wait: bool, parent: Context | None = None
    ) -> AckInfo | asyncio.Future[AckInfo]:
        """Take one event. Returns its ack now, or (when `wait` and it was queued) a future of its final ack."""
        span = self._tracer.start_span(names.SPAN_EVENT, context=parent, attributes={names.ATTR_MESSAGE_ID: message_id})
        trace_id = format(span.get_span_context().trace_id, "032x")
        try:
            event = decode()
            span.set_attribute(names.ATTR_CALL_TYPE, event.type)
            plan = map_event(event, self._mapping)
            if isinstance(plan, Skip):
                return _finish(span, AckInfo(message_id, AckStatus.FILTERED, trace_id, plan.reason))
            future: asyncio.Future[AckInfo] | None = asyncio.get_running_loop().create_future() if wait else None
            self._pipeline.submit(event.user_key, plan, _on_outcome(span, message_id, trace_id, future))
        except InvalidEventError as error:
            return _finish(span, AckInfo(message_id, AckStatus.INVALID, trace_id, str(error)))
        except (QueueFullError, ShuttingDownError) as error:
            return _finish(
                span, AckInfo(message_id, AckStatus.RETRY_LATER, trace_id, str(error), retry_after=error.retry_after)
            )
        except Exception as error:  # a bug: this event is rejected, the stream and the process stay up
            _log.exception("Unexpected error while taking an event.")
            span.record_exception(error)
            return _finish(span, AckInfo(message_id, AckStatus.REJECTED, trace_id, "internal error"))
        if future is not None:
            return future
        return AckInfo(message_id, AckStatus.ACCEPTED, trace_id)


def _on_outcome(
    span: Span, message_id: str, trace_id: str, future: asyncio.Future[AckInfo] | None
) -> Callable[[Outcome], None]:
    def done(outcome: Outcome) -> None:
        ack = _finish(span, _ack_for(outcome, message_id, trace_id))
        if future is not None and not future.done():
            future.set_result(ack)

    return done


def _ack_for(outcome: Outcome, message_id: str, trace_id: str) -> AckInfo:
    if isinstance(outcome, Delivered):
        return AckInfo(message_id, AckStatus.DELIVERED, trace_id)
    if isinstance(outcome, Rejected):
        return AckInfo(message_id, AckStatus.REJECTED, trace_id, outcome.error.reason)
    if isinstance(outcome, Abandoned):
        return AckInfo(message_id, AckStatus.RETRY_LATER, trace_id, outcome.reason, retry_after=1.0)
    raise AssertionError(f"unknown outcome {outcome!r}")


def _finish(span: Span, ack: AckInfo) -> AckInfo:
    span.set_attribute(names.ATTR_ACK_STATUS, ack.status.value)
    if ack.reason:
        span.set_attribute(names.ATTR_OUTCOME_REASON, ack.reason)
    if ack.status in (AckStatus.INVALID, AckStatus.REJECTED):
        span.set_status(Status(StatusCode.ERROR, ack.reason))
    span.end()
    return ack
