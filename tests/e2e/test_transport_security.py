"""Transport security of a running sidecar: TLS, mutual TLS, certificate reload, bearer tokens, Unix sockets, and
what the plain-text health and metrics addresses expose (nothing sensitive).

Certificates are made at test time (`tests/certificates.py`); every server listens on 127.0.0.1 or a Unix socket.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from intercom_sidecar.__main__ import _parser
from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.config import Secret, ServerConfig, TlsConfig
from intercom_sidecar.fake import FakeIntercom
from tests.certificates import CertificateAuthority, Issued, make_ca, needs_openssl
from tests.e2e.conftest import SidecarFactory

pytestmark = pytest.mark.e2e

AUTH = "grpc-auth-canary-5e4d3c2b1a09"
ACCEPTED = event_pb2.Ack.STATUS_ACCEPTED
SERVING = health_pb2.HealthCheckResponse.SERVING
FRESH = [("grpc.use_local_subchannel_pool", 1)]
"""Each test channel makes its own connections (and so its own TLS handshakes)."""


def event(message_id: str) -> event_pb2.Event:
    return event_pb2.Event(message_id=message_id, user_id="u1", track=event_pb2.Track(event="Signed Up"))


async def send(channel: grpc.aio.Channel, message_id: str, metadata: tuple[tuple[str, str], ...] = ()) -> list[int]:
    stub = service_pb2_grpc.EventServiceStub(channel)
    reply = await stub.Send(service_pb2.SendRequest(events=[event(message_id)]), metadata=metadata, timeout=10)
    return [ack.status for ack in reply.acks]


def tls_channel(target: str, ca: Path, client: Issued | None = None) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(target, credentials, options=FRESH)


async def served_serial(port: int, ca: Path) -> str:
    """The serial number of the certificate the server shows a new connection (hex, as `ssl` gives it)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    try:
        certificate = writer.get_extra_info("ssl_object").getpeercert()
        return str(certificate["serialNumber"])
    finally:
        writer.transport.abort()  # no TLS close: the server has already started speaking HTTP/2


def install(issued: Issued, ca: CertificateAuthority, directory: Path) -> None:
    """Put a server certificate at the fixed names, each file replaced in one step (as a rotated Secret is)."""
    directory.mkdir(exist_ok=True)
    for source, name in ((issued.cert, "tls.crt"), (issued.key, "tls.key"), (ca.cert, "ca.crt")):
        shutil.copyfile(source, directory / f"{name}.new")
        os.replace(directory / f"{name}.new", directory / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, CertificateAuthority]:
    base = tmp_path_factory.mktemp("pki")
    return make_ca(base / "a", "Sidecar CA A"), make_ca(base / "b", "Sidecar CA B")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for Unix sockets (108 bytes at most)."""
    with tempfile.TemporaryDirectory(prefix="ics-") as name:
        yield Path(name)


# --- TLS and mutual TLS ---


@needs_openssl
async def test_tls_a_client_trusting_the_ca_gets_acks_and_plain_text_fails(
    start_sidecar: SidecarFactory, pki: tuple[CertificateAuthority, ...], tmp_path: Path
) -> None:
    ca = pki[0]
    install(ca.issue("server"), ca, tmp_path / "tls")
    tls = TlsConfig(tmp_path / "tls" / "tls.crt", tmp_path / "tls" / "tls.key")
    sidecar = await start_sidecar(server=ServerConfig(listen="127.0.0.1:0", tls=tls, shutdown_grace_seconds=1.0))
    target = f"127.0.0.1:{sidecar.app.port}"

    async with tls_channel(target, ca.cert) as channel:
        assert await send(channel, "tls-1") == [ACCEPTED]
    async with grpc.aio.insecure_channel(target, options=FRESH) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(plain, "plain-1")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    async with tls_channel(target, pki[1].cert) as untrusting:  # a client that trusts another CA
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(untrusting, "other-ca-1")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@needs_openssl
async def test_mutual_tls_refuses_a_client_without_a_certificate_from_the_client_ca(
    start_sidecar: SidecarFactory, pki: tuple[CertificateAuthority, ...], tmp_path: Path
) -> None:
    ca, other = pki
    install(ca.issue("server"), ca, tmp_path / "tls")
    tls = TlsConfig(tmp_path / "tls" / "tls.crt", tmp_path / "tls" / "tls.key", tmp_path / "tls" / "ca.crt")
    sidecar = await start_sidecar(server=ServerConfig(listen="127.0.0.1:0", tls=tls, shutdown_grace_seconds=1.0))
    target = f"127.0.0.1:{sidecar.app.port}"

    async with tls_channel(target, ca.cert, client=ca.issue("app", client=True)) as channel:
        assert await send(channel, "mtls-1") == [ACCEPTED]
    for client in (None, other.issue("stranger", client=True)):
        async with tls_channel(target, ca.cert, client=client) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await send(channel, "mtls-refused")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@needs_openssl
async def test_a_replaced_certificate_is_shown_to_new_connections_without_a_restart(
    start_sidecar: SidecarFactory, pki: tuple[CertificateAuthority, ...], tmp_path: Path
) -> None:
    a, b = pki
    directory = tmp_path / "tls"
    first = a.issue("server")
    install(first, a, directory)
    tls = TlsConfig(directory / "tls.crt", directory / "tls.key")
    sidecar = await start_sidecar(server=ServerConfig(listen="127.0.0.1:0", tls=tls, shutdown_grace_seconds=1.0))
    port = sidecar.app.port
    target = f"127.0.0.1:{port}"
    assert int(await served_serial(port, a.cert), 16) == first.serial

    # Broken files (a certificate without its key yet): the current certificate stays in use.
    shutil.copyfile(b.issue("half").cert, directory / "tls.crt")
    assert int(await served_serial(port, a.cert), 16) == first.serial
    async with tls_channel(target, a.cert) as channel:
        assert await send(channel, "during-rotation") == [ACCEPTED]

    # The rotation completes: a new CA, a new serial, seen by the next connection.
    second = b.issue("server")
    install(second, b, directory)
    assert int(await served_serial(port, b.cert), 16) == second.serial
    async with tls_channel(target, b.cert) as channel:
        assert await send(channel, "after-rotation") == [ACCEPTED]
    async with tls_channel(target, a.cert) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await send(channel, "old-ca")
    assert sidecar.app.certificates is not None and sidecar.app.certificates.reloads == 1


# --- the shared secret ---


async def test_a_bearer_token_is_required_on_the_api_but_not_for_health(start_sidecar: SidecarFactory) -> None:
    server = ServerConfig(listen="127.0.0.1:0", auth_token=Secret(AUTH), shutdown_grace_seconds=1.0)
    sidecar = await start_sidecar(server=server)
    channel, stub = sidecar.channel, sidecar.stub
    good = (("authorization", f"Bearer {AUTH}"),)

    assert await send(channel, "auth-1", good) == [ACCEPTED]
    acks = [ack async for ack in stub.Stream(iter([event("auth-2")]), metadata=good, timeout=10)]
    assert [ack.status for ack in acks] == [ACCEPTED]

    guess = "Bearer guess-0000111122223333"
    for metadata, message in (
        ((), "this sidecar requires `authorization: Bearer <token>` metadata (its INTERCOM_SIDECAR_AUTH_TOKEN)"),
        (
            (("authorization", guess),),
            "the bearer token in `authorization` is not this sidecar's INTERCOM_SIDECAR_AUTH_TOKEN",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await send(channel, "auth-refused", metadata)
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, message)
        error = await refused(stub.Stream(metadata=metadata, timeout=10))
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, message)
        assert "guess" not in str(error.trailing_metadata())

    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == SERVING
    assert (await refused(reflection(channel))).code() == grpc.StatusCode.UNAUTHENTICATED
    assert "grpc.health.v1.Health" in await list_services(channel, good)


async def test_a_rotated_token_file_is_used_from_the_next_call(start_sidecar: SidecarFactory, tmp_path: Path) -> None:
    path = tmp_path / "grpc-token"
    path.write_text(AUTH)
    server = ServerConfig(
        listen="127.0.0.1:0", auth_token=Secret(AUTH), auth_token_file=path, shutdown_grace_seconds=1.0
    )
    sidecar = await start_sidecar(server=server)
    rotated = "grpc-auth-rotated-0f1e2d3c4b5a"
    (tmp_path / "new").write_text(rotated)
    os.replace(tmp_path / "new", path)
    assert await send(sidecar.channel, "rotated", (("authorization", f"Bearer {rotated}"),)) == [ACCEPTED]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send(sidecar.channel, "old-token", (("authorization", f"Bearer {AUTH}"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


# --- reflection, the health-only address, the metrics address ---


async def refused(call: Any) -> grpc.aio.AioRpcError:
    """How a streaming call the server refuses ends, read before the client writes anything: grpcio's asyncio
    client reports a write that fails because the server has already ended the call as INTERNAL, overwriting the
    status the server sent (grpc/grpc#36066), so a refused call that writes gets either, by timing."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    return caught.value


def reflection(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    """A reflection call with nothing written yet."""
    return reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(metadata=metadata, timeout=10)


async def list_services(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10)]
    return sorted(service.name for reply in replies for service in reply.list_services_response.service)


async def test_reflection_is_on_by_default_and_can_be_turned_off(start_sidecar: SidecarFactory) -> None:
    on = await start_sidecar()
    assert await list_services(on.channel) == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "intercom_sidecar.v1.EventService",
    ]
    off = await start_sidecar(server=ServerConfig(listen="127.0.0.1:0", reflection=False, shutdown_grace_seconds=1.0))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await list_services(off.channel)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert await send(off.channel, "no-reflection") == [ACCEPTED]


async def test_the_health_address_serves_health_and_nothing_else(start_sidecar: SidecarFactory) -> None:
    sidecar = await start_sidecar(
        server=ServerConfig(listen="127.0.0.1:0", health_listen="127.0.0.1:0", shutdown_grace_seconds=1.0)
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.app.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "intercom_sidecar.v1.EventService", "liveness"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == SERVING
        stub = service_pb2_grpc.EventServiceStub(channel)
        for rpc in (send(channel, "via-health"), stub.UserHash(service_pb2.UserHashRequest(user_id="u1"), timeout=10)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await rpc
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        for streaming in (reflection(channel), stub.Stream(timeout=10)):
            assert (await refused(streaming)).code() == grpc.StatusCode.UNIMPLEMENTED


async def test_metrics_show_no_trait_or_property_value_and_no_secret(
    start_sidecar: SidecarFactory, fake_intercom: FakeIntercom
) -> None:
    server = ServerConfig(
        listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", auth_token=Secret(AUTH), shutdown_grace_seconds=1.0
    )
    sidecar = await start_sidecar(server=server)
    canaries = {
        "email": "canary-trait-email@example.test",
        "plan": "canary-trait-plan-value",
        "order": "canary-property-order-value",
        "user": "canary-user-id-4242",
    }
    traits = struct_pb2.Struct()
    traits.update({"email": canaries["email"], "plan": canaries["plan"]})
    properties = struct_pb2.Struct()
    properties.update({"order_id": canaries["order"], "revenue": 12.5})
    events = [
        event_pb2.Event(message_id="m-identify", user_id=canaries["user"], identify=event_pb2.Identify(traits=traits)),
        event_pb2.Event(
            message_id="m-track", user_id=canaries["user"], track=event_pb2.Track(event="Paid", properties=properties)
        ),
        event_pb2.Event(message_id="m-invalid", user_id=canaries["user"], track=event_pb2.Track(properties=properties)),
    ]
    metadata = (("authorization", f"Bearer {AUTH}"),)
    await sidecar.stub.Send(service_pb2.SendRequest(events=events), metadata=metadata, timeout=30)
    await sidecar.app.wait_idle()
    assert len(fake_intercom.ledger) >= 2, "the events reached (the fake) Intercom"

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sidecar.app.metrics_port}") as client:
        scrape = (await client.get("/metrics")).text
    assert "intercom_sidecar_events_accepted_total" in scrape
    for secret in (*canaries.values(), AUTH, fake_intercom.token):
        assert secret not in scrape


# --- the Unix socket ---


async def test_a_unix_socket_sidecar_takes_events(start_sidecar: SidecarFactory, short_dir: Path) -> None:
    path = short_dir / "grpc.sock"
    sidecar = await start_sidecar(server=ServerConfig(listen=f"unix:{path}", shutdown_grace_seconds=1.0))
    async with grpc.aio.insecure_channel(f"unix:{path}") as channel:
        assert await send(channel, "over-unix") == [ACCEPTED]
    await sidecar.app.stop()
    assert not path.exists(), "the socket goes away with the sidecar"


# --- the command line ---


@needs_openssl
async def test_send_reaches_a_locked_down_sidecar(
    start_sidecar: SidecarFactory,
    pki: tuple[CertificateAuthority, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = pki[0]
    directory = tmp_path / "tls"
    install(ca.issue("server"), ca, directory)
    tls = TlsConfig(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
    server = ServerConfig(listen="127.0.0.1:0", tls=tls, auth_token=Secret(AUTH), shutdown_grace_seconds=1.0)
    sidecar = await start_sidecar(server=server)
    client = ca.issue("operator", client=True)
    token_file = tmp_path / "grpc-token"
    token_file.write_text(f"{AUTH}\n")
    events = tmp_path / "events.ndjson"
    events.write_text('{"type": "track", "messageId": "cli-1", "userId": "u1", "event": "Signed Up"}\n')
    monkeypatch.delenv("INTERCOM_SIDECAR_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("INTERCOM_SIDECAR_AUTH_TOKEN_FILE", raising=False)
    base = ["send", "--target", f"127.0.0.1:{sidecar.app.port}", "--json", "--tls-ca", str(ca.cert)]
    mtls = ["--tls-cert", str(client.cert), "--tls-key", str(client.key)]

    async def run(*argv: str) -> int:
        args = _parser().parse_args([*base, *argv, str(events)])
        return int(await args.run(args))

    assert await run(*mtls, "--auth-token-file", str(token_file)) == 0
    assert '"status": "ACCEPTED"' in capsys.readouterr().out

    assert await run(*mtls) == 2  # no token: the call fails
    assert "UNAUTHENTICATED" in capsys.readouterr().err

    monkeypatch.setenv("INTERCOM_SIDECAR_AUTH_TOKEN", AUTH)
    assert await run(*mtls) == 0, "the token from the environment"
    assert await run() == 2  # no client certificate
    assert "over TLS (UNAVAILABLE" in capsys.readouterr().err


def test_serve_refuses_plain_text_beyond_loopback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "INTERCOM_ACCESS_TOKEN": "tok_test_refusal_1234",
        "INTERCOM_SIDECAR_SPOOL_DIR": str(tmp_path / "spool"),
    }
    for key in ("INTERCOM_SIDECAR_INSECURE_LISTEN", "INTERCOM_SIDECAR_TLS_CERT_FILE", "INTERCOM_SIDECAR_TLS_KEY_FILE"):
        env.pop(key, None)
    refused = subprocess.run(
        [sys.executable, "-m", "intercom_sidecar", "serve", "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "intercom-sidecar: configuration error: INTERCOM_SIDECAR_LISTEN: 0.0.0.0:0 is not a loopback address"
    )
    assert "INTERCOM_SIDECAR_INSECURE_LISTEN=true" in refused.stderr
