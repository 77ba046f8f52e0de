"""The gRPC servers: the event API (with health and reflection), and health alone on its own address."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from intercom_sidecar._generated.intercom_sidecar.v1 import service_pb2
from intercom_sidecar.errors import ConfigError
from intercom_sidecar.server.servicer import EventServicer, add_event_service

__all__ = [
    "EVENT_SERVICE",
    "LIVENESS_SERVICE",
    "READINESS_SERVICES",
    "api_server",
    "bind",
    "health_server",
    "listening_on",
    "set_health",
]

EVENT_SERVICE = service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name
LIVENESS_SERVICE = "liveness"
"""Health service name for liveness: SERVING from start to stop, whatever Intercom's state."""
READINESS_SERVICES = ("", EVENT_SERVICE)
"""Health service names for readiness: SERVING while events are taken."""


def api_server(servicer: EventServicer, health: HealthServicer, *, max_message_bytes: int) -> grpc.aio.Server:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)])
    add_event_service(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (EVENT_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    return server


def health_server(health: HealthServicer) -> grpc.aio.Server:
    """Probes come from the kubelet to the pod IP while the API stays on localhost: health alone, elsewhere."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server


def bind(server: grpc.aio.Server, address: str, key: str) -> int:
    """Listen on `address`; the port bound. ConfigError naming `key` when it cannot."""
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(key, f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise ConfigError(key, f"cannot listen on {address}")
    return port


def listening_on(listen: str, port: int) -> str:
    """`HOST:PORT` as bound (the configured host, the actual port)."""
    return f"{listen.rsplit(':', 1)[0]}:{port}"


async def set_health(health: HealthServicer, services: tuple[str, ...], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in services:
        await health.set(service, status)
