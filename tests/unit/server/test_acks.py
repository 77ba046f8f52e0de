"""server/acks.py: AckInfo -> Ack, one by one and as a whole SendResponse."""

from __future__ import annotations

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.model.acks import AckInfo, AckStatus
from intercom_sidecar.server.acks import ack_to_proto, send_response

TRACE = "0123456789abcdef0123456789abcdef"

ACKS = [
    AckInfo("m1", AckStatus.ACCEPTED, TRACE),
    AckInfo("m2", AckStatus.RETRY_LATER, TRACE, "the spool is full", 1.25),
    AckInfo("m3", AckStatus.INVALID, TRACE, "track.event: must not be empty"),
    AckInfo("m4", AckStatus.RETRY_LATER, TRACE, "shutting down", 30.0),
    AckInfo("", AckStatus.DUPLICATE, TRACE, "seen"),
]


def test_an_ack_carries_every_field_and_its_retry_after_as_a_duration() -> None:
    ack = ack_to_proto(ACKS[1])

    assert (ack.message_id, ack.status, ack.reason, ack.trace_id) == (
        "m2",
        event_pb2.Ack.STATUS_RETRY_LATER,
        "the spool is full",
        TRACE,
    )
    assert (ack.retry_after.seconds, ack.retry_after.nanos) == (1, 250_000_000)
    assert not ack_to_proto(ACKS[0]).HasField("retry_after")


def test_a_send_response_holds_the_acks_in_order_as_ack_to_proto_makes_them() -> None:
    response = send_response(ACKS)

    assert list(response.acks) == [ack_to_proto(ack) for ack in ACKS]
    assert response == service_pb2.SendResponse(acks=[ack_to_proto(ack) for ack in ACKS])
    assert [ack.HasField("retry_after") for ack in response.acks] == [False, True, False, True, False]
    assert send_response([]) == service_pb2.SendResponse()
