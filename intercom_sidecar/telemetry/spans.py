"""The spans of one event's journey, and the helpers that carry its trace context.

    intercom_sidecar.event              from intake to the final outcome (child of the caller's span)
    ├── intercom_sidecar.validate       decoding, validation and mapping
    ├── intercom_sidecar.queued         from the durable write to the start of delivery
    └── intercom_sidecar.attempt        one per delivery attempt (`retry.attempt`)
        └── POST /contacts/{id}         one per Intercom call (HTTP client span, semantic conventions)

After a restart, delivery of a spooled event happens under `intercom_sidecar.event.recovered`, a child of the
original event span (its W3C context is kept with the event in the spool) that also links to it, so the delivery
joins the original trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, Tracer, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from intercom_sidecar.telemetry.tracer import LeanTracer

__all__ = [
    "ATTR_ERROR_TYPE",
    "ATTR_HTTP_METHOD",
    "ATTR_HTTP_STATUS",
    "ATTR_INTERCOM_ENDPOINT",
    "ATTR_INTERCOM_RATELIMIT_REMAINING",
    "ATTR_INTERCOM_REQUEST_ID",
    "ATTR_MESSAGE_ID",
    "ATTR_OUTCOME",
    "ATTR_RETRY_ATTEMPT",
    "ATTR_SERVER_ADDRESS",
    "ATTR_URL_TEMPLATE",
    "SPAN_ATTEMPT",
    "SPAN_QUEUED",
    "SPAN_RECOVERED",
    "SPAN_VALIDATE",
    "ChildRecorder",
    "child_recorder",
    "context_from_carrier",
    "end_recovered_span",
    "record_child",
    "recovered_span",
    "traceparent",
]

SPAN_VALIDATE = "intercom_sidecar.validate"
SPAN_QUEUED = "intercom_sidecar.queued"
SPAN_ATTEMPT = "intercom_sidecar.attempt"
SPAN_RECOVERED = "intercom_sidecar.event.recovered"

ATTR_RETRY_ATTEMPT = "retry.attempt"
ATTR_HTTP_METHOD = "http.request.method"
ATTR_HTTP_STATUS = "http.response.status_code"
ATTR_URL_TEMPLATE = "url.template"
ATTR_SERVER_ADDRESS = "server.address"
ATTR_ERROR_TYPE = "error.type"
ATTR_INTERCOM_ENDPOINT = "intercom.endpoint"
ATTR_INTERCOM_REQUEST_ID = "intercom.request_id"
ATTR_INTERCOM_RATELIMIT_REMAINING = "intercom.ratelimit.remaining"
ATTR_MESSAGE_ID = "segment.message_id"
ATTR_OUTCOME = "intercom_sidecar.outcome"

_propagator = TraceContextTextMapPropagator()


ChildRecorder = Callable[[str, Context, int], None]
"""`record(name, context, start_time)`: a child span of the span in `context`, from `start_time` to now."""


def child_recorder(tracer: Tracer) -> ChildRecorder:
    """How `tracer` records a finished child span: in one step with the sidecar's tracer (`LeanTracer.record_child`),
    else started then ended. Bound once, so the per-event call is the recording itself."""
    if type(tracer) is LeanTracer:
        return tracer.record_child

    def start_then_end(name: str, context: Context, start_time: int) -> None:
        tracer.start_span(name, context, start_time=start_time).end()

    return start_then_end


def record_child(tracer: Tracer, name: str, context: Context, start_time: int) -> None:
    """A child span of the span in `context`, from `start_time` to now (in one step with the sidecar's tracer)."""
    child_recorder(tracer)(name, context, start_time)


def traceparent(span: Span) -> str:
    """The W3C `traceparent` of `span` (kept with a spooled event, so delivery can join its trace later)."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def context_from_carrier(carrier: Mapping[str, str]) -> Context | None:
    """The context of a W3C carrier (`traceparent`, `tracestate`), or None when it has no usable traceparent."""
    if "traceparent" not in carrier:
        return None
    context = _propagator.extract(carrier)
    return context if get_current_span(context).get_span_context().is_valid else None


def recovered_span(tracer: Tracer, message_id: str, carrier: Mapping[str, str]) -> tuple[Span, Context]:
    """The span a spooled event is delivered under after a restart: in the original trace, as a child of the
    original event span (which ended with the old process) and linked to it."""
    parent = context_from_carrier(carrier)
    links = [Link(get_current_span(parent).get_span_context())] if parent is not None else []
    span = tracer.start_span(SPAN_RECOVERED, context=parent, links=links, attributes={ATTR_MESSAGE_ID: message_id})
    return span, set_span_in_context(span)


def end_recovered_span(span: Span, outcome: object) -> None:
    span.set_attribute(ATTR_OUTCOME, type(outcome).__name__.lower())
    span.end()
