"""Intake: one event in, one acknowledgement out, whatever the transport.

    span -> decode (validate) -> map -> spool (durable) -> pipeline -> ACCEPTED, or later the final outcome

Each event gets its own span (`intercom_sidecar.event`), ended when its outcome is known; the ack carries that
span's trace id. Bad input never raises out of here: it becomes the event's ack.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer, set_span_in_context

from intercom_sidecar.config import MappingConfig
from intercom_sidecar.delivery.pipeline import Abandoned, Deferred, Delivered, Outcome, Rejected
from intercom_sidecar.delivery.spool import SpoolEntry, SpoolError
from intercom_sidecar.delivery.spooler import Spooler
from intercom_sidecar.errors import InvalidEventError, PausedError, QueueFullError, ShuttingDownError
from intercom_sidecar.mapping import CreateDataEvent, Skip, map_event
from intercom_sidecar.mapping.plan import Plan
from intercom_sidecar.model.acks import AckInfo, AckStatus
from intercom_sidecar.model.events import Event
from intercom_sidecar.telemetry import names, spans
from intercom_sidecar.telemetry.metrics import Metrics
from intercom_sidecar.telemetry.pii import PiiPolicy
from intercom_sidecar.telemetry.recent import RecentEvent, RecentEvents

__all__ = ["Intake", "record_outcome"]

_log = logging.getLogger(__name__)

_SPOOL_ERROR_RETRY_AFTER = 1.0
_DUPLICATE = "message_id was already accepted within the dedupe window; not sent again"


class Intake:
    def __init__(
        self,
        spooler: Spooler,
        tracer: Tracer,
        mapping: MappingConfig,
        *,
        durable: bool,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        pii: PiiPolicy | None = None,
        recent: RecentEvents | None = None,
    ) -> None:
        self._recent = recent
        self._metrics = metrics or Metrics()
        self._pii = pii or PiiPolicy()
        self._spooler = spooler
        self._tracer = tracer
        self._record_child = spans.child_recorder(tracer)
        self._mapping = mapping
        self._durable = durable
        self._clock = clock

    def submit(
        self,
        message_id: str,
        decode: Callable[[float], Event],
        payload: Callable[[str], bytes],
        deliver: Callable[[AckInfo], None],
        *,
        wait: bool,
        parent: Context | None = None,
    ) -> AckInfo | None:
        """Take one event: its ack now (not queued), or None and `deliver(ack)` once it is known (exactly once,
        never from within this call): ACCEPTED once durable, or with `wait` the final outcome. `decode(now)`
        validates; `payload(traceparent)` is what the spool keeps, with the event span's W3C context in it, so a
        delivery after a restart joins the trace. A callback rather than a future: callers collect many acks (a
        `Send` batch, a stream, a Segment request) with one wait for all (`server.submit.collect_acks`)."""
        span = self._tracer.start_span(names.SPAN_EVENT, context=parent, attributes={names.ATTR_MESSAGE_ID: message_id})
        ack = _Ack(span, message_id, format(span.get_span_context().trace_id, "032x"), self._durable, self._metrics)
        if self._recent is not None:
            ack.record = self._recent.begin(message_id, span)
        now = self._clock()
        event_context = set_span_in_context(span)
        try:
            if span.is_recording():
                # A child of the event span, never made current: nothing in decoding, validation or mapping reads
                # the current span or logs (the attach and detach would be a tenth of what recording costs).
                started = time.time_ns()
                try:
                    event, plan = self._validate(decode, now, span, ack)
                except Exception as error:
                    validate = self._tracer.start_span(spans.SPAN_VALIDATE, context=event_context, start_time=started)
                    _end_failed(validate, error)
                    raise
                self._record_child(spans.SPAN_VALIDATE, event_context, started)
            else:  # nothing records the event: a validation span would cost microseconds and show nothing
                event, plan = self._validate(decode, now, span, ack)
            if isinstance(plan, Skip):
                self._metrics.event_filtered()
                return ack.sent(ack.finish(AckStatus.FILTERED, plan.reason))
            for step in plan.steps:
                if isinstance(step, CreateDataEvent) and step.dropped_metadata_keys:
                    self._metrics.metadata_keys_dropped(step.dropped_metadata_keys)
            entry = SpoolEntry(message_id, event.user_key, payload(spans.traceparent(span)), ack.trace_id, now)
            ack.wait, ack.deliver = wait, deliver
            self._spooler.accept(entry, plan, ack.on_appended, ack.on_outcome, event_context)
        except InvalidEventError as error:
            return ack.sent(ack.finish(AckStatus.INVALID, str(error)))
        except (ShuttingDownError, PausedError) as error:
            return ack.sent(ack.finish(AckStatus.RETRY_LATER, str(error), retry_after=error.retry_after))
        except Exception as error:  # a bug: this event is rejected, the stream and the process stay up
            _log.exception("Unexpected error while taking an event.")
            span.record_exception(error)
            return ack.sent(ack.finish(AckStatus.REJECTED, "internal error"))
        return None

    def _validate(
        self, decode: Callable[[float], Event], now: float, span: Span, ack: _Ack
    ) -> tuple[Event, Plan | Skip]:
        """Decode, validate and map one event; raises InvalidEventError."""
        event = decode(now)
        span.set_attribute(names.ATTR_CALL_TYPE, event.type)
        ack.call_type = event.type
        if ack.record is not None:
            ack.record.describe(event)
        if self._pii.allowed_keys:
            _allowed_attributes(span, event, self._pii)
        return event, map_event(event, self._mapping)


def _end_failed(span: Span, error: Exception) -> None:
    """End a span an exception escapes, as `start_as_current_span` would: recorded, with an ERROR status."""
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()


def _allowed_attributes(span: Span, event: Event, pii: PiiPolicy) -> None:
    """The trait/property values the operator allow-listed (INTERCOM_SIDECAR_LOG_ALLOWED_KEYS), and no others."""
    values = getattr(event.call, "traits", None) or getattr(event.call, "properties", None) or {}
    for key, value in pii.allowed_items(values).items():
        if isinstance(value, str | bool | int | float):
            span.set_attribute(f"segment.{event.type}.{key}", value)


def record_outcome(record: RecentEvent | None, outcome: Outcome | Deferred) -> None:
    """Tell the event view how delivery ended (or that it waits in the spool, behind a backlog)."""
    if record is None:
        return
    if isinstance(outcome, Deferred):
        record.finished("deferred", outcome.reason, None, 0)
    elif isinstance(outcome, Delivered):
        record.finished("delivered", "", None, outcome.attempts)
    elif isinstance(outcome, Rejected):
        record.finished("rejected", outcome.error.reason, outcome.error.status, outcome.attempts)
    else:
        record.finished("abandoned", outcome.reason, None, 0)


class _Ack:
    """The acknowledgement of one event, and the end of its span."""

    def __init__(self, span: Span, message_id: str, trace_id: str, durable: bool, metrics: Metrics) -> None:
        self.span = span
        self.call_type = "unknown"
        self.record: RecentEvent | None = None
        self._metrics = metrics
        self.message_id = message_id
        self.trace_id = trace_id
        self._durable = durable
        self.deliver: Callable[[AckInfo], None] | None = None
        """Where the ack goes once known; set when the event is handed to the spooler."""
        self.wait = False

    def on_appended(self, seq: int | None, error: BaseException | None) -> None:
        if isinstance(error, QueueFullError | ShuttingDownError):
            self._resolve(self.finish(AckStatus.RETRY_LATER, str(error), retry_after=error.retry_after))
        elif isinstance(error, SpoolError):
            reason = "the spool could not store the event"
            self._resolve(self.finish(AckStatus.RETRY_LATER, reason, retry_after=_SPOOL_ERROR_RETRY_AFTER))
        elif error is not None:
            self._resolve(self.finish(AckStatus.REJECTED, "internal error"))
        elif seq is None:
            self._resolve(self.finish(AckStatus.DUPLICATE, _DUPLICATE))
        elif not self.wait:
            self._resolve(AckInfo(self.message_id, AckStatus.ACCEPTED, self.trace_id))

    def on_outcome(self, outcome: Outcome | Deferred) -> None:
        record_outcome(self.record, outcome)
        if isinstance(outcome, Delivered):
            ack = self.finish(AckStatus.DELIVERED)
        elif isinstance(outcome, Rejected):
            ack = self.finish(AckStatus.REJECTED, outcome.error.reason)
        elif isinstance(outcome, Deferred):  # durable or not, it is in the spool and will be delivered
            ack = self.finish(AckStatus.ACCEPTED, outcome.reason)
        elif isinstance(outcome, Abandoned) and self._durable:
            ack = self.finish(AckStatus.ACCEPTED, "kept in the spool; delivery continues after the restart")
        else:
            ack = self.finish(AckStatus.RETRY_LATER, outcome.reason, retry_after=1.0)
        if self.wait:
            self._resolve(ack)

    def finish(self, status: AckStatus, reason: str = "", *, retry_after: float | None = None) -> AckInfo:
        self.span.set_attribute(names.ATTR_ACK_STATUS, status.value)
        if reason:
            self.span.set_attribute(names.ATTR_OUTCOME_REASON, reason)
        if status in (AckStatus.INVALID, AckStatus.REJECTED):
            self.span.set_status(Status(StatusCode.ERROR, reason))
        self.span.end()
        return AckInfo(self.message_id, status, self.trace_id, reason, retry_after)

    def sent(self, ack: AckInfo) -> AckInfo:
        """Count the ack that goes to the caller (one per event)."""
        self._metrics.event_received(self.call_type, ack.status)
        if self.record is not None:
            self.record.acked(ack.status.value, ack.reason)
        return ack

    def _resolve(self, ack: AckInfo) -> None:
        deliver, self.deliver = self.deliver, None  # once
        if deliver is not None:
            deliver(self.sent(ack))
