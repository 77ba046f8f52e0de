"""`AckInfo` -> the `Ack` protobuf message, in one table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf import duration_pb2

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.model.acks import AckInfo, AckStatus

__all__ = ["ack_to_proto", "send_response"]

_STATUS: Mapping[AckStatus, event_pb2.Ack.Status.ValueType] = {
    AckStatus.ACCEPTED: event_pb2.Ack.STATUS_ACCEPTED,
    AckStatus.DELIVERED: event_pb2.Ack.STATUS_DELIVERED,
    AckStatus.DUPLICATE: event_pb2.Ack.STATUS_DUPLICATE,
    AckStatus.FILTERED: event_pb2.Ack.STATUS_FILTERED,
    AckStatus.INVALID: event_pb2.Ack.STATUS_INVALID,
    AckStatus.REJECTED: event_pb2.Ack.STATUS_REJECTED,
    AckStatus.RETRY_LATER: event_pb2.Ack.STATUS_RETRY_LATER,
}


def ack_to_proto(ack: AckInfo) -> event_pb2.Ack:
    message = event_pb2.Ack(
        message_id=ack.message_id, status=_STATUS[ack.status], reason=ack.reason, trace_id=ack.trace_id
    )
    if ack.retry_after is not None:
        _set_retry_after(message, ack.retry_after)
    return message


def send_response(acks: Iterable[AckInfo]) -> service_pb2.SendResponse:
    """The `SendResponse` of `acks`, in their order. Each Ack is made in place in the response: making it apart and
    copying it in costs about 60% more per ack."""
    response = service_pb2.SendResponse()
    add = response.acks.add
    for ack in acks:
        message = add(message_id=ack.message_id, status=_STATUS[ack.status], reason=ack.reason, trace_id=ack.trace_id)
        if ack.retry_after is not None:
            _set_retry_after(message, ack.retry_after)
    return response


def _set_retry_after(message: event_pb2.Ack, retry_after: float) -> None:
    seconds = int(retry_after)
    message.retry_after.CopyFrom(
        duration_pb2.Duration(seconds=seconds, nanos=int((retry_after - seconds) * 1_000_000_000))
    )
