"""`intercom_sidecar.v1.EventService`: Stream and Send, thin over `Intake`.

Call options come from gRPC metadata: `x-ack-mode: delivered` asks for final outcomes instead of ACCEPTED,
and W3C `traceparent`/`tracestate` make each event's span a child of the caller's span (an event's own
`trace_context` field, when set, wins over the call's metadata).

Stream and Send take their requests as raw bytes (`add_event_service` registers them without the generated
deserializers): a message protobuf cannot parse would otherwise end the whole call, every good event on the
stream with it. Here each event is parsed on its own, and one that cannot be gets an INVALID ack naming the field.
A `Send` with more than INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND events is refused whole with INVALID_ARGUMENT,
before any event is looked at: nothing is taken, so the caller can split the batch and send it again as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
from opentelemetry.context import Context

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2
from intercom_sidecar.config import Secret
from intercom_sidecar.errors import InvalidEventError
from intercom_sidecar.intake import Intake
from intercom_sidecar.mapping.verification import user_hash
from intercom_sidecar.model.acks import AckInfo
from intercom_sidecar.model.from_proto import DecodeLimits, parse_limited
from intercom_sidecar.model.wire import TooManyEventsError, WireError, peek_message_id, split_send_request
from intercom_sidecar.server.acks import ack_to_proto, send_response
from intercom_sidecar.server.submit import collect_acks, take_event, take_unreadable
from intercom_sidecar.telemetry.spans import context_from_carrier

__all__ = ["ACK_MODE_KEY", "EventServicer", "add_event_service"]

ACK_MODE_KEY = "x-ack-mode"
_ACK_MODES = {"accepted": False, "delivered": True}
_CLOSED_DETAILS = "the sidecar is shutting down; events without an ack were not taken, send them again elsewhere"


def add_event_service(servicer: EventServicer, server: grpc.aio.Server) -> None:
    """Register `servicer` as `intercom_sidecar.v1.EventService`, with Stream's and Send's requests left as bytes."""
    handlers = {
        "Stream": grpc.stream_stream_rpc_method_handler(
            servicer.Stream, request_deserializer=None, response_serializer=event_pb2.Ack.SerializeToString
        ),
        "Send": grpc.unary_unary_rpc_method_handler(
            servicer.Send, request_deserializer=None, response_serializer=service_pb2.SendResponse.SerializeToString
        ),
        "UserHash": grpc.unary_unary_rpc_method_handler(
            servicer.UserHash,
            request_deserializer=service_pb2.UserHashRequest.FromString,
            response_serializer=service_pb2.UserHashResponse.SerializeToString,
        ),
    }
    name = service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))


class EventServicer:
    """The EventService methods (not the generated base class: Stream and Send take bytes, see the module doc)."""

    def __init__(
        self,
        intake: Intake,
        limits: DecodeLimits,
        *,
        identity_secret: Secret | None = None,
    ) -> None:
        self._intake = intake
        self._max_events_per_send = limits.max_events_per_send
        self._identity_secret = identity_secret
        self._limits = limits
        self._readers: set[asyncio.Task[None]] = set()
        self._closing = False

    async def Send(self, request: bytes, context: grpc.aio.ServicerContext[object, object]) -> service_pb2.SendResponse:
        wait, parent = await _call_options(context)
        try:
            events = split_send_request(request, self._max_events_per_send)
        except WireError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a serialized SendRequest: {error}")
            raise  # not reached: abort raises
        except TooManyEventsError:
            limit = self._max_events_per_send
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"events: more than {limit} events in one Send, the limit (INTERCOM_SIDECAR_MAX_EVENTS_PER_SEND); "
                "none was taken: send them again in batches of at most that many, or on Stream",
            )
            raise
        acks = await collect_acks(events, lambda raw, deliver: self._take(raw, wait, parent, deliver))
        return send_response(acks)

    async def Stream(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[event_pb2.Ack]:
        wait, parent = await _call_options(context)
        acks: asyncio.Queue[event_pb2.Ack | None] = asyncio.Queue()
        """Acks to write, in the order outcomes became known; None once every event read has its ack."""
        waiting = 0
        """Events read whose ack is not known yet."""
        reading = True

        def on_final(ack: AckInfo) -> None:
            nonlocal waiting
            waiting -= 1
            acks.put_nowait(ack_to_proto(ack))
            if not reading and not waiting:
                acks.put_nowait(None)

        async def read() -> None:
            nonlocal reading, waiting
            try:
                async for message in request_iterator:
                    ack = self._take(message, wait, parent, on_final)
                    if ack is None:
                        waiting += 1
                    else:
                        acks.put_nowait(ack_to_proto(ack))
            finally:
                reading = False
                if not waiting:
                    acks.put_nowait(None)

        reader = asyncio.create_task(read())
        self._readers.add(reader)
        try:
            while (ack := await acks.get()) is not None:
                yield ack
            if self._closing:
                await context.abort(grpc.StatusCode.UNAVAILABLE, _CLOSED_DETAILS)
            await reader  # surfaces a failed read (e.g. the client cancelled)
        finally:
            self._readers.discard(reader)
            reader.cancel()

    async def UserHash(
        self, request: service_pb2.UserHashRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> service_pb2.UserHashResponse:
        if self._identity_secret is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "identity verification is not configured (set INTERCOM_IDENTITY_SECRET_FILE)",
            )
        if not request.user_id.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "user_id: is required")
        assert self._identity_secret is not None
        return service_pb2.UserHashResponse(user_hash=user_hash(self._identity_secret, request.user_id))

    def close_streams(self) -> None:
        """Stop reading every open stream. Each one still writes the acks it owes, then ends UNAVAILABLE."""
        self._closing = True
        for reader in self._readers:
            reader.cancel()

    def _take(
        self, raw: bytes, wait: bool, parent: Context | None, deliver: Callable[[AckInfo], None]
    ) -> AckInfo | None:
        """The event's ack now, or None and `deliver(ack)` later (never from within this call)."""
        try:
            message = parse_limited(raw, self._limits)
        except InvalidEventError as error:
            return take_unreadable(self._intake, peek_message_id(raw), error, parent=parent)
        return take_event(self._intake, message, self._limits, deliver, wait=wait, parent=parent)


async def _call_options(context: grpc.aio.ServicerContext[object, object]) -> tuple[bool, Context | None]:
    metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
    mode = metadata.get(ACK_MODE_KEY, "accepted").strip().lower()
    if mode not in _ACK_MODES:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"{ACK_MODE_KEY} must be 'accepted' or 'delivered', got {mode!r}"
        )
    return _ACK_MODES[mode], context_from_carrier(metadata)
