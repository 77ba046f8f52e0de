"""The ceiling: a bare grpc.aio server implementing `EventService` that acks every event ACCEPTED, doing no work.

Built like the sidecar's server (`App.start`: same options, loopback, port 0) and driven by the same client, so
sidecar/ceiling ratios compare like with like.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection

import grpc

from benchmarks.processes import quiet_logging, serve_commands
from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.config import ServerConfig

__all__ = ["CeilingServicer", "run_ceiling"]

_ACCEPTED = event_pb2.Ack.STATUS_ACCEPTED


class CeilingServicer(service_pb2_grpc.EventServiceServicer):
    async def Send(
        self, request: service_pb2.SendRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> service_pb2.SendResponse:
        return service_pb2.SendResponse(
            acks=[event_pb2.Ack(message_id=event.message_id, status=_ACCEPTED) for event in request.events]
        )

    async def Stream(
        self, request_iterator: AsyncIterator[event_pb2.Event], context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[event_pb2.Ack]:
        async for event in request_iterator:
            yield event_pb2.Ack(message_id=event.message_id, status=_ACCEPTED)

    async def UserHash(
        self, request: service_pb2.UserHashRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> service_pb2.UserHashResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of the ceiling")
        raise AssertionError("unreachable")


async def _serve(conn: Connection) -> None:
    config = ServerConfig(listen="127.0.0.1:0")
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", config.max_message_bytes), ("grpc.so_reuseport", 0)]
    )
    service_pb2_grpc.add_EventServiceServicer_to_server(CeilingServicer(), server)
    port = server.add_insecure_port(config.listen)
    await server.start()

    async def stop() -> None:
        await server.stop(0.5)

    await serve_commands(conn, {"target": f"127.0.0.1:{port}"}, {"stop": stop})


def run_ceiling(conn: Connection) -> None:
    """Process entry point."""
    quiet_logging()
    asyncio.run(_serve(conn))
