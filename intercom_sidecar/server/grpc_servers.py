"""The gRPC servers: the event API (with health and reflection), and health alone on its own address.

Addresses are `HOST:PORT` or `unix:PATH`. Before binding a Unix socket, a socket file left behind by a crashed
sidecar is removed; anything else at that path, or a socket someone still answers on, is a ConfigError. The new
socket is made readable and writable by its owner and group only (0660): who may connect is who may send events.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Sequence

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


def api_server(
    servicer: EventServicer,
    health: HealthServicer,
    *,
    max_message_bytes: int,
    reflection_on: bool = True,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),  # type: ignore[type-arg]
) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", max_message_bytes), ("grpc.so_reuseport", 0)],
        interceptors=interceptors,
    )
    add_event_service(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if reflection_on:
        reflection.enable_server_reflection(
            (EVENT_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
        )
    return server


def health_server(health: HealthServicer) -> grpc.aio.Server:
    """Probes come from the kubelet to the pod IP while the API stays on localhost: health alone, elsewhere."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server


def bind(server: grpc.aio.Server, address: str, key: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Listen on `address`, with TLS when `credentials` are given; the port bound (1 for a Unix socket).
    ConfigError naming `key` when it cannot."""
    path = _unix_path(address)
    if path is not None:
        _clear_stale_socket(path, key)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise ConfigError(key, f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise ConfigError(key, f"cannot listen on {address}")
    if path is not None:
        os.chmod(path, 0o660)
    return port


def listening_on(listen: str, port: int) -> str:
    """`HOST:PORT` as bound (the configured host, the actual port), or the `unix:PATH` as given."""
    if _unix_path(listen) is not None:
        return listen
    return f"{listen.rsplit(':', 1)[0]}:{port}"


def _unix_path(address: str) -> str | None:
    """The file of a `unix:PATH` or `unix:///PATH` address; None for HOST:PORT."""
    if not address.startswith("unix:"):
        return None
    return address.removeprefix("unix:").removeprefix("//")


def _clear_stale_socket(path: str, key: str) -> None:
    """Remove a socket file a stopped sidecar left at `path`; refuse to touch anything else, or a live socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(key, f"cannot use {path!r}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(key, f"{path!r} exists and is not a socket; refusing to replace it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:  # nobody listens: a socket left by a process that is gone
            pass
        else:
            raise ConfigError(key, f"another process is listening on {path!r}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def set_health(health: HealthServicer, services: tuple[str, ...], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in services:
        await health.set(service, status)
