"""One trace per event, from the caller to each Intercom call, across retries and restarts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from google.protobuf import struct_pb2
from opentelemetry.sdk.trace import ReadableSpan

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import ServerConfig
from intercom_sidecar.fake import FakeIntercom
from tests.e2e.conftest import SidecarFactory

pytestmark = pytest.mark.e2e

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACED = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"), ("x-ack-mode", "delivered"))


def tree(spans: Sequence[ReadableSpan], trace_id: str) -> list[tuple[str, str]]:
    """(parent name, child name) for every span of the trace, the caller's span named `caller`."""
    names = {span.context.span_id: span.name for span in spans}
    names[int(CALLER_SPAN, 16)] = "caller"
    return sorted(
        (names.get(span.parent.span_id, "?") if span.parent else "-", span.name)
        for span in spans
        if format(span.context.trace_id, "032x") == trace_id
    )


async def test_identify_and_track_form_one_tree_down_to_the_http_calls(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    sidecar = await start_sidecar()
    events = [
        event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify()),
        event_pb2.Event(message_id="m2", user_id="u1", track=event_pb2.Track(event="Signed In")),
    ]
    response = await sidecar.stub.Send(service_pb2.SendRequest(events=events), metadata=TRACED, timeout=30)
    assert [(ack.status, ack.trace_id) for ack in response.acks] == [(event_pb2.Ack.STATUS_DELIVERED, CALLER_TRACE)] * 2
    spans = sidecar.spans.get_finished_spans()
    assert tree(spans, CALLER_TRACE) == sorted(
        [("caller", "intercom_sidecar.event")] * 2
        + [("intercom_sidecar.event", "intercom_sidecar.validate")] * 2
        + [("intercom_sidecar.event", "intercom_sidecar.queued")] * 2
        + [("intercom_sidecar.event", "intercom_sidecar.attempt")] * 2
        + [("intercom_sidecar.attempt", "POST /contacts"), ("intercom_sidecar.attempt", "POST /events")]
    )
    [http] = [span for span in spans if span.name == "POST /events"]
    attributes = dict(http.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.template"] == "/events"
    assert attributes["http.response.status_code"] == 202
    assert attributes["server.address"] == "127.0.0.1"
    assert isinstance(attributes["intercom.request_id"], str) and attributes["intercom.request_id"]
    assert isinstance(attributes["intercom.ratelimit.remaining"], int)


async def test_each_retried_attempt_is_a_span(start_sidecar: SidecarFactory, fake_intercom: FakeIntercom) -> None:
    sidecar = await start_sidecar()
    fake_intercom.faults.script("POST", "/contacts", status=503, times=2)
    event = event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify())
    await sidecar.stub.Send(service_pb2.SendRequest(events=[event]), metadata=TRACED, timeout=30)
    attempts = [span for span in sidecar.spans.get_finished_spans() if span.name == "intercom_sidecar.attempt"]
    assert [dict(span.attributes or {})["retry.attempt"] for span in attempts] == [1, 2, 3]
    assert [span.status.is_ok for span in attempts] == [False, False, True]
    calls = [span for span in sidecar.spans.get_finished_spans() if span.name == "POST /contacts"]
    assert [dict(span.attributes or {})["http.response.status_code"] for span in calls] == [503, 503, 200]


async def test_an_event_per_event_trace_context_wins_over_the_calls(start_sidecar: SidecarFactory) -> None:
    sidecar = await start_sidecar()
    own_trace = "0af7651916cd43dd8448eb211c80319c"
    event = event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify())
    event.trace_context["traceparent"] = f"00-{own_trace}-b7ad6b7169203331-01"
    response = await sidecar.stub.Send(service_pb2.SendRequest(events=[event]), metadata=TRACED, timeout=30)
    assert response.acks[0].trace_id == own_trace


async def test_a_delivery_after_a_restart_joins_the_original_trace(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    quick_stop = ServerConfig(listen="127.0.0.1:0", shutdown_grace_seconds=0.2)
    fake_intercom.faults.script("POST", "/contacts", status=503, times=10_000)
    first = await start_sidecar(server=quick_stop)
    event = event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify())
    accepted = await first.stub.Send(service_pb2.SendRequest(events=[event]), metadata=TRACED[:1], timeout=30)
    assert accepted.acks[0].trace_id == CALLER_TRACE
    await first.app.stop()
    [original] = [span for span in first.spans.get_finished_spans() if span.name == "intercom_sidecar.event"]

    fake_intercom.faults.clear()
    second = await start_sidecar(server=quick_stop, spool=first.app.config.spool)
    await second.app.wait_idle()
    [recovered] = [
        span for span in second.spans.get_finished_spans() if span.name == "intercom_sidecar.event.recovered"
    ]
    assert format(recovered.context.trace_id, "032x") == CALLER_TRACE
    assert recovered.parent is not None and recovered.parent.span_id == original.context.span_id
    assert [link.context.span_id for link in recovered.links] == [original.context.span_id]
    names = {span.context.span_id: span.name for span in second.spans.get_finished_spans()}
    calls = [span for span in second.spans.get_finished_spans() if span.name == "POST /contacts"]
    assert calls and all(format(span.context.trace_id, "032x") == CALLER_TRACE for span in calls)
    assert all(span.parent is not None and names[span.parent.span_id] == "intercom_sidecar.attempt" for span in calls)


async def test_only_allow_listed_traits_reach_span_attributes(
    start_sidecar: SidecarFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERCOM_SIDECAR_LOG_ALLOWED_KEYS", "plan")
    sidecar = await start_sidecar()
    traits = struct_pb2.Struct()
    traits.update({"plan": "pro", "email": "ada@example.com"})
    event = event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify(traits=traits))
    await sidecar.stub.Send(service_pb2.SendRequest(events=[event]), metadata=TRACED, timeout=30)
    values = [value for span in sidecar.spans.get_finished_spans() for value in (span.attributes or {}).values()]
    [event_span] = [span for span in sidecar.spans.get_finished_spans() if span.name == "intercom_sidecar.event"]
    assert dict(event_span.attributes or {})["segment.identify.plan"] == "pro"
    assert "ada@example.com" not in values
