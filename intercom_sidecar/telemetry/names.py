"""Span names and attribute keys, defined once. `segment.*` and `intercom.*` are this project's namespace."""

from __future__ import annotations

__all__ = [
    "ATTR_ACK_STATUS",
    "ATTR_ATTEMPTS",
    "ATTR_CALL_TYPE",
    "ATTR_MESSAGE_ID",
    "ATTR_OUTCOME_REASON",
    "SPAN_EVENT",
    "TRACER_NAME",
]

TRACER_NAME = "intercom_sidecar"

SPAN_EVENT = "intercom_sidecar.event"
"""One per event, from intake to its final outcome."""

ATTR_MESSAGE_ID = "segment.message_id"
ATTR_CALL_TYPE = "segment.type"
ATTR_ACK_STATUS = "intercom_sidecar.ack.status"
ATTR_OUTCOME_REASON = "intercom_sidecar.outcome.reason"
ATTR_ATTEMPTS = "retry.attempts"

# Metrics (`telemetry/metrics.py`). Instrument names in OpenTelemetry's style; the Prometheus endpoint writes them
# with underscores, the unit and `_total` (`intercom_sidecar.intercom.request.duration` ->
# `intercom_sidecar_intercom_request_duration_seconds`). Label values come from fixed sets only, never from events.
__all__ += [
    "ENDPOINT_TEMPLATES",
    "METER_NAME",
    "METRIC_ATTRIBUTES_DROPPED",
    "METRIC_ATTR_CACHE",
    "METRIC_ATTR_CACHE_RESULT",
    "METRIC_ATTR_ENDPOINT",
    "METRIC_ATTR_ERROR_TYPE",
    "METRIC_ATTR_HTTP_STATUS",
    "METRIC_ATTR_MODEL",
    "METRIC_ATTR_OUTCOME",
    "METRIC_ATTR_SOURCE",
    "METRIC_CACHE_LOOKUPS",
    "METRIC_DELIVERIES",
    "METRIC_DELIVERY_LATENCY",
    "METRIC_DELIVERY_RETRIES",
    "METRIC_EVENTS_ACCEPTED",
    "METRIC_EVENTS_DEAD_LETTERED",
    "METRIC_EVENTS_DELIVERED",
    "METRIC_EVENTS_FILTERED",
    "METRIC_EVENTS_RECEIVED",
    "METRIC_INTERCOM_REQUESTS",
    "METRIC_INTERCOM_REQUEST_DURATION",
    "METRIC_INTERCOM_THROTTLED",
    "METRIC_METADATA_KEYS_DROPPED",
    "METRIC_QUEUE_DEPTH",
    "METRIC_QUEUE_OLDEST_AGE",
    "METRIC_RATE_LIMIT_WAIT",
    "METRIC_WRITES_SKIPPED",
]

METER_NAME = "intercom_sidecar"

METRIC_EVENTS_RECEIVED = "intercom_sidecar.events.received"
"""Counter: events by `segment.type` and the status of their ack."""
METRIC_EVENTS_ACCEPTED = "intercom_sidecar.events.accepted"
"""Counter, by source (intake, recovered, replayed). With the next three and the queue depth, the invariant
accepted = delivered + filtered + dead_lettered + queue depth."""
METRIC_EVENTS_DELIVERED = "intercom_sidecar.events.delivered"
METRIC_EVENTS_FILTERED = "intercom_sidecar.events.filtered"
METRIC_EVENTS_DEAD_LETTERED = "intercom_sidecar.events.dead_lettered"
METRIC_QUEUE_DEPTH = "intercom_sidecar.queue.depth"
"""Gauge: events pending in the spool (queued or in flight)."""
METRIC_QUEUE_OLDEST_AGE = "intercom_sidecar.queue.oldest_age"
"""Gauge, seconds."""
METRIC_DELIVERIES = "intercom_sidecar.deliveries"
"""Counter: finished delivery runs by outcome (delivered, rejected, abandoned)."""
METRIC_DELIVERY_RETRIES = "intercom_sidecar.delivery.retries"
METRIC_DELIVERY_LATENCY = "intercom_sidecar.delivery.latency"
"""Histogram, seconds from accepted to delivered."""
METRIC_INTERCOM_REQUESTS = "intercom_sidecar.intercom.requests"
METRIC_INTERCOM_REQUEST_DURATION = "intercom_sidecar.intercom.request.duration"
METRIC_INTERCOM_THROTTLED = "intercom_sidecar.intercom.throttled"
"""Counter: 429 answers."""
METRIC_RATE_LIMIT_WAIT = "intercom_sidecar.intercom.rate_limit.wait"
"""Counter, seconds spent waiting on the rate limit (summed over requests)."""
METRIC_CACHE_LOOKUPS = "intercom_sidecar.cache.lookups"
METRIC_WRITES_SKIPPED = "intercom_sidecar.intercom.writes_skipped"
METRIC_ATTRIBUTES_DROPPED = "intercom_sidecar.intercom.attributes_dropped"
METRIC_METADATA_KEYS_DROPPED = "intercom_sidecar.mapping.metadata_keys_dropped"

METRIC_ATTR_SOURCE = "intercom_sidecar.event.source"
METRIC_ATTR_OUTCOME = "intercom_sidecar.delivery.outcome"
METRIC_ATTR_ENDPOINT = "intercom.endpoint"
METRIC_ATTR_HTTP_STATUS = "http.response.status_code"
METRIC_ATTR_ERROR_TYPE = "error.type"
METRIC_ATTR_CACHE = "intercom_sidecar.cache.name"
METRIC_ATTR_CACHE_RESULT = "intercom_sidecar.cache.result"
METRIC_ATTR_MODEL = "intercom.model"

ENDPOINT_TEMPLATES = frozenset(
    {
        "GET /me",
        "POST /contacts",
        "PUT /contacts/{id}",
        "POST /contacts/search",
        "POST /contacts/merge",
        "POST /contacts/{id}/companies",
        "DELETE /contacts/{id}/companies/{company_id}",
        "POST /events",
        "POST /companies",
        "GET /companies",
        "GET /data_attributes",
        "POST /data_attributes",
    }
)
"""Every Intercom route template the client calls (`IntercomClient.request(endpoint=...)`); others are labelled
`other`. A test checks the code's templates against this set."""
