"""server/grpc_servers.py: binding a Unix socket safely, and where the logs say the server listens."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from intercom_sidecar.errors import ConfigError
from intercom_sidecar.server.grpc_servers import bind, health_server, listening_on

KEY = "INTERCOM_SIDECAR_LISTEN"


@pytest.fixture
def directory() -> Iterator[Path]:
    """A short directory: a Unix socket path must fit in 108 bytes."""
    with tempfile.TemporaryDirectory(prefix="ics-") as name:
        yield Path(name)


@pytest.fixture
async def server() -> AsyncIterator[grpc.aio.Server]:
    health = HealthServicer()
    server = health_server(health)
    yield server
    await server.stop(0)


async def check(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


async def test_a_unix_socket_is_owner_and_group_only(server: grpc.aio.Server, directory: Path) -> None:
    path = directory / "grpc.sock"
    assert bind(server, f"unix:{path}", KEY) == 1
    await server.start()
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    assert await check(f"unix:{path}") == health_pb2.HealthCheckResponse.SERVING  # "" is SERVING from the start
    assert listening_on(f"unix:{path}", 1) == f"unix:{path}"


async def test_a_socket_left_by_a_crash_is_replaced(server: grpc.aio.Server, directory: Path) -> None:
    path = directory / "grpc.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # bound and closed without unlinking: what a killed process leaves
    bind(server, f"unix://{path}", KEY)
    await server.start()
    assert await check(f"unix:{path}") == health_pb2.HealthCheckResponse.SERVING


async def test_a_file_that_is_not_a_socket_is_left_alone(server: grpc.aio.Server, directory: Path) -> None:
    path = directory / "grpc.sock"
    path.write_text("precious")
    with pytest.raises(ConfigError) as caught:
        bind(server, f"unix:{path}", KEY)
    assert str(caught.value) == f"{KEY}: {str(path)!r} exists and is not a socket; refusing to replace it"
    assert path.read_text() == "precious"


async def test_a_socket_someone_answers_on_is_left_alone(server: grpc.aio.Server, directory: Path) -> None:
    path = directory / "grpc.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ConfigError) as caught:
            bind(server, f"unix:{path}", KEY)
        assert str(caught.value) == f"{KEY}: another process is listening on {str(path)!r}"
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


async def test_a_missing_directory_is_a_config_error(server: grpc.aio.Server, directory: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        bind(server, f"unix:{directory}/no/such/dir/grpc.sock", KEY)
    assert str(caught.value).startswith(f"{KEY}: cannot listen on unix:{directory}/no/such/dir/grpc.sock")


def test_listening_on_a_port() -> None:
    assert listening_on("127.0.0.1:0", 43210) == "127.0.0.1:43210"
    assert listening_on("[::1]:0", 43210) == "[::1]:43210"
