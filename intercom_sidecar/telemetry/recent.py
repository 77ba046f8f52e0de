"""The last N events, for the event view: what each caller was told, the Intercom calls each event became, and
how each ended.

    Intake.submit ─begin()─▶ RecentEvent ◀─acked()── _Ack.sent        (what the caller was told)
                                  ▲  ▲
                                  │  └─finished()── the outcome callback (delivered / rejected / abandoned)
                                  └────call()────── IntercomClient, after each HTTP call

Linking an HTTP call to its event. One event's plan runs in one worker task, so the pipeline sets a contextvar
(`attempt()`) around `Sender.send(plan)` to the job's trace context and the attempt number; when the client
finishes a call it calls `RecentEvents.call()`, which reads the contextvar and finds the event by the span id of
the event span in that context. Intake and recovery already hand that context to the pipeline with each job, so
nothing new travels through the spooler, and span ids exist whether or not the span is sampled (the SDK draws the
ids before it samples). A call made outside a delivery (the data-attribute prefetch, the token check) has no
attempt set and is not recorded.

Cost. The hooks are O(1) attribute writes and dict operations on the event loop (no locks, no copies): a few
microseconds per event, measured in the README. Records live in a dict in insertion order, so the oldest is
evicted in O(1). All serialisation happens only when someone reads the API. `capacity=0` records nothing.

Privacy: ids, call types, event names, ack reasons and endpoint templates only; never traits or properties.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Span, get_current_span

from intercom_sidecar.model.events import Event

__all__ = ["MAX_CALLS_PER_EVENT", "RecentEvent", "RecentEvents", "attempt", "end_attempt"]

MAX_CALLS_PER_EVENT = 20
"""Intercom calls kept per event (the latest ones); a long retry series counts the ones dropped."""

_ATTEMPT: contextvars.ContextVar[tuple[Context | None, int] | None] = contextvars.ContextVar(
    "intercom_sidecar_attempt", default=None
)


def attempt(trace: Context | None, number: int) -> contextvars.Token[tuple[Context | None, int] | None]:
    """Mark the current task as delivering the event of `trace` (its attempt `number`, from 1) until `end_attempt`."""
    return _ATTEMPT.set((trace, number))


def end_attempt(token: contextvars.Token[tuple[Context | None, int] | None]) -> None:
    _ATTEMPT.reset(token)


@dataclass(slots=True)
class _Call:
    at: float
    method: str
    route: str
    status: int | None
    duration_ms: float
    attempt: int
    request_id: str
    error: str


class RecentEvent:
    """One event's record. Written by the hooks; read only through `RecentEvents`."""

    __slots__ = (
        "_owner",
        "ack_reason",
        "ack_status",
        "acked_at",
        "attempts",
        "call_type",
        "calls",
        "calls_dropped",
        "event_name",
        "finished_at",
        "id",
        "message_id",
        "outcome",
        "outcome_reason",
        "outcome_status",
        "received_at",
        "revision",
        "source",
        "span_id",
        "trace_id",
        "user_id",
    )

    def __init__(self, owner: RecentEvents, record_id: int, message_id: str, trace_id: int, source: str) -> None:
        self._owner = owner
        self.id = record_id
        self.message_id = message_id
        self.trace_id = trace_id
        self.source = source
        self.received_at = owner._clock()
        self.call_type = ""
        self.event_name = ""
        self.user_id = ""
        self.ack_status = ""
        self.ack_reason = ""
        self.acked_at: float | None = None
        self.outcome = ""
        self.outcome_reason = ""
        self.outcome_status: int | None = None
        self.attempts = 0
        self.finished_at: float | None = None
        self.calls: list[_Call] = []
        self.calls_dropped = 0
        self.revision = 0
        self.span_id = 0

    def describe(self, event: Event) -> None:
        """The decoded event's call type, name (track event, page/screen name) and user id (else anonymous id)."""
        self.call_type = event.type
        self.event_name = getattr(event.call, "event", None) or getattr(event.call, "name", None) or ""
        self.user_id = event.user_key
        self._owner._touch(self)

    def acked(self, status: str, reason: str) -> None:
        """What the caller was told (once per event)."""
        self.ack_status = status
        self.ack_reason = reason
        self.acked_at = self._owner._clock()
        self._owner._touch(self)

    def finished(self, outcome: str, reason: str, status: int | None, attempts: int) -> None:
        """How delivery ended: `delivered`, `rejected` (now a dead letter), `abandoned` (the sidecar stopped) or
        `deferred` (stored behind a backlog: its delivery shows up later as a recovered event)."""
        self.outcome = outcome
        self.outcome_reason = reason
        self.outcome_status = status
        self.attempts = attempts
        self.finished_at = self._owner._clock()
        self._owner._touch(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "message_id": self.message_id,
            "source": self.source,
            "call_type": self.call_type,
            "event_name": self.event_name,
            "user_id": self.user_id,
            "trace_id": format(self.trace_id, "032x"),
            "received_at": self.received_at,
            "ack_status": self.ack_status,
            "ack_reason": self.ack_reason,
            "acked_at": self.acked_at,
            "outcome": self.outcome,
            "outcome_reason": self.outcome_reason,
            "outcome_status": self.outcome_status,
            "attempts": self.attempts,
            "finished_at": self.finished_at,
            "requests": [
                {
                    "at": call.at,
                    "method": call.method,
                    "route": call.route,
                    "status": call.status,
                    "duration_ms": round(call.duration_ms, 3),
                    "attempt": call.attempt,
                    "request_id": call.request_id,
                    "error": call.error,
                }
                for call in self.calls
            ],
            "requests_dropped": self.calls_dropped,
        }


class RecentEvents:
    """A bounded record of the last `capacity` events, newest last; see the module docstring."""

    def __init__(self, capacity: int, *, clock: Callable[[], float] = time.time) -> None:
        self.capacity = max(0, capacity)
        self._clock = clock
        self._records: dict[int, RecentEvent] = {}
        self._by_span: dict[int, RecentEvent] = {}
        self._next_id = 1
        self.revision = 0
        """Bumped by every change; a reader passes the last value it saw as `since`."""

    def begin(self, message_id: str, span: Span, *, source: str = "intake") -> RecentEvent | None:
        """Start the record of an event whose span is `span`; None when recording is off."""
        if not self.capacity:
            return None
        context = span.get_span_context()
        record = RecentEvent(self, self._next_id, message_id, context.trace_id, source)
        self._next_id += 1
        self._records[record.id] = record
        if context.span_id:
            self._by_span[context.span_id] = record
        record.span_id = context.span_id
        if len(self._records) > self.capacity:
            oldest = self._records.pop(next(iter(self._records)))
            if self._by_span.get(oldest.span_id) is oldest:
                del self._by_span[oldest.span_id]
        self._touch(record)
        return record

    def call(
        self, method: str, endpoint: str, status: int | None, seconds: float, request_id: str = "", error: str = ""
    ) -> None:
        """An Intercom call ended; it belongs to the event being delivered in this task, if any."""
        current = _ATTEMPT.get()
        if current is None or not self._by_span:
            return
        trace, number = current
        record = self._by_span.get(get_current_span(trace).get_span_context().span_id)
        if record is None:
            return
        if len(record.calls) >= MAX_CALLS_PER_EVENT:
            del record.calls[0]
            record.calls_dropped += 1
        route = endpoint.partition(" ")[2] or endpoint
        record.calls.append(_Call(self._clock(), method, route, status, seconds * 1000, number, request_id, error))
        self._touch(record)

    def since(self, revision: int, limit: int | None = None) -> list[RecentEvent]:
        """The records changed after `revision`, newest first (at most `limit`)."""
        found = []
        for record in reversed(self._records.values()):
            if record.revision > revision:
                found.append(record)
                if limit is not None and len(found) >= limit:
                    break
        return found

    @property
    def oldest_id(self) -> int:
        """The id of the oldest record still kept (readers drop rows older than it); the next id when empty."""
        return next(iter(self._records), self._next_id)

    def __len__(self) -> int:
        return len(self._records)

    def _touch(self, record: RecentEvent) -> None:
        self.revision += 1
        record.revision = self.revision
