"""The recent-events recorder: bounded, O(1) eviction, revision cursor, and each Intercom call tied to its event."""

from __future__ import annotations

import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, set_span_in_context

from intercom_sidecar.model.events import Event, Identify, Track
from intercom_sidecar.telemetry import recent
from intercom_sidecar.telemetry.recent import MAX_CALLS_PER_EVENT, RecentEvents

TRACER = TracerProvider().get_tracer("test")


def span() -> Span:
    return TRACER.start_span("event")


def track(user_id: str | None = "u1", name: str = "Order Completed") -> Event:
    return Event("m1", user_id, "anon-1", 0.0, Track(event=name, properties={}), {}, {})


def test_a_record_follows_its_event_from_ack_to_outcome() -> None:
    times = iter([10.0, 11.0, 12.0])
    events = RecentEvents(5, clock=lambda: next(times))
    event_span = span()
    record = events.begin("m1", event_span)
    assert record is not None
    record.describe(track())
    record.acked("accepted", "")
    record.finished("rejected", "intercom 422 parameter_invalid", 422, 2)

    data = record.to_json()
    assert data["message_id"] == "m1"
    assert data["trace_id"] == format(event_span.get_span_context().trace_id, "032x")
    assert (data["call_type"], data["event_name"], data["user_id"]) == ("track", "Order Completed", "u1")
    assert (data["received_at"], data["acked_at"], data["finished_at"]) == (10.0, 11.0, 12.0)
    assert (data["ack_status"], data["outcome"], data["outcome_status"], data["attempts"]) == (
        "accepted",
        "rejected",
        422,
        2,
    )
    assert data["source"] == "intake"


def test_user_id_falls_back_to_the_anonymous_id_and_identify_has_no_event_name() -> None:
    record = RecentEvents(5).begin("m1", span())
    assert record is not None
    record.describe(Event("m1", None, "anon-1", 0.0, Identify(traits={"email": "a@example.com"}), {}, {}))
    data = record.to_json()
    assert (data["user_id"], data["event_name"], data["call_type"]) == ("anon-1", "", "identify")
    assert "a@example.com" not in str(data), "traits never reach the view"


def test_only_the_last_capacity_events_are_kept() -> None:
    events = RecentEvents(3)
    spans = [span() for _ in range(5)]
    for n, event_span in enumerate(spans):
        events.begin(f"m{n}", event_span)
    assert len(events) == 3
    assert [record.message_id for record in events.since(0)] == ["m4", "m3", "m2"], "newest first"
    assert events.oldest_id == 3
    # The evicted events' calls are no longer linked (and nothing is kept for them).
    token = recent.attempt(set_span_in_context(spans[0]), 1)
    try:
        events.call("POST", "POST /events", 202, 0.01)
    finally:
        recent.end_attempt(token)
    assert all(not record.calls for record in events.since(0))


def test_since_returns_only_what_changed_after_the_cursor() -> None:
    events = RecentEvents(10)
    first = events.begin("m1", span())
    second = events.begin("m2", span())
    assert first is not None and second is not None
    cursor = events.revision
    assert events.since(cursor) == []
    first.acked("accepted", "")
    assert [record.message_id for record in events.since(cursor)] == ["m1"]
    assert events.since(0, limit=1) == [second]


def test_capacity_zero_records_nothing() -> None:
    events = RecentEvents(0)
    assert events.begin("m1", span()) is None
    assert len(events) == 0


async def test_a_call_belongs_to_the_event_whose_attempt_is_under_way_in_this_task() -> None:
    events = RecentEvents(10)
    one, two = span(), span()
    first, second = events.begin("m1", one), events.begin("m2", two)
    assert first is not None and second is not None

    async def deliver(event_span: Span, attempt: int, status: int) -> None:
        token = recent.attempt(set_span_in_context(event_span), attempt)
        try:
            await asyncio.sleep(0)  # the two deliveries interleave on the loop
            events.call("PUT", "PUT /contacts/{id}", status, 0.002, request_id=f"req-{status}")
        finally:
            recent.end_attempt(token)

    await asyncio.gather(deliver(one, 1, 200), deliver(two, 3, 503))
    events.call("GET", "GET /data_attributes", 200, 0.001)  # outside any delivery: not recorded

    assert [call.status for call in first.calls] == [200]
    assert [(call.status, call.attempt, call.route, call.request_id) for call in second.calls] == [
        (503, 3, "/contacts/{id}", "req-503")
    ]
    assert second.to_json()["requests"][0]["duration_ms"] == 2.0


def test_a_long_retry_series_keeps_the_latest_calls_and_counts_the_rest() -> None:
    events = RecentEvents(10)
    event_span = span()
    record = events.begin("m1", event_span)
    assert record is not None
    token = recent.attempt(set_span_in_context(event_span), 1)
    try:
        for n in range(MAX_CALLS_PER_EVENT + 5):
            events.call("POST", "POST /events", 500 + n % 4, 0.001, error=str(n))
    finally:
        recent.end_attempt(token)
    assert len(record.calls) == MAX_CALLS_PER_EVENT
    assert record.calls_dropped == 5
    assert record.calls[0].error == "5"
