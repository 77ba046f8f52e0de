"""H11Transport against real servers on 127.0.0.1: pooling, keep-alive, and httpx's exceptions where httpcore
raises them (each failure is run through httpx's default transport too, and must raise the same type)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which

import httpx
import pytest

from intercom_sidecar.config import Config, Secret
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.intercom.client import IntercomClient, IntercomResponse
from intercom_sidecar.intercom.transport import H11Transport

PROXY_VARIABLES = [f"{name}{suffix}" for name in ("http", "https", "all", "no") for suffix in ("_proxy", "_PROXY")]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    """A scripted HTTP/1.1 server: `script` runs once per connection."""

    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    got_request: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def serve(script: Script, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> AsyncIterator[Server]:
    state = Server()
    tasks: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await script(reader, writer, state)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    state.url = f"{'https' if tls else 'http'}://{host}:{port}"
    try:
        yield state
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader, state: Server) -> bytes | None:
    """One request (head and Content-Length body), recorded; None at end of file."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    request = head + await reader.readexactly(length)
    state.requests.append(request)
    state.got_request.set()
    return request


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
    while await read_request(reader, state) is not None:
        writer.write(OK)
        await writer.drain()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
    await read_request(reader, state)
    await asyncio.Event().wait()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def h11_transport(max_connections: int, tls: ssl.SSLContext | None) -> httpx.AsyncBaseTransport:
    return H11Transport(max_connections=max_connections, ssl_context=tls)


def httpcore_transport(max_connections: int, tls: ssl.SSLContext | None) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncHTTPTransport(limits=limits, verify=tls or True)


TRANSPORTS = {"h11": h11_transport, "httpcore": httpcore_transport}


@pytest.fixture(params=sorted(TRANSPORTS))
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """`make_client(max_connections=4, timeout=..., tls=None)`: an AsyncClient over the transport under test."""
    clients: list[httpx.AsyncClient] = []

    def make(max_connections: int = 4, timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> httpx.AsyncClient:
        transport = TRANSPORTS[request.param](max_connections, tls)
        clients.append(httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def h11_client() -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Like `make_client`, for behaviour only H11Transport has."""
    clients: list[httpx.AsyncClient] = []

    def make(max_connections: int = 4, timeout: float = 5.0) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(transport=H11Transport(max_connections=max_connections), timeout=timeout))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


# the happy path, against the fake Intercom --------------------------------------------------------------------


async def test_post_to_the_fake_intercom_and_read_the_whole_answer(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with FakeIntercom() as fake:
        fake.state.create_contact("user", {"external_id": "u1"})
        client = make_client()
        body = {"event_name": "signed-up", "created_at": 1_700_000_000, "user_id": "u1"}
        response = await client.post(f"{fake.url}/events", json=body, headers=fake.headers())
        listed = await client.get(f"{fake.url}/contacts", headers=fake.headers())
    assert response.status_code == 202
    assert listed.status_code == 200
    assert listed.json()["data"][0]["external_id"] == "u1"
    assert listed.headers["content-type"].startswith("application/json")
    (entry,) = fake.requests("POST", "/events")
    assert entry.body == body


# keep-alive and pool bounds -------------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with serve(answer_ok) as server:
        client = make_client()
        for _ in range(5):
            assert (await client.post(server.url, content=b"x" * 100)).content == b"ok"
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_connection_close_from_the_server_ends_the_connection(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with serve(answer_then_close) as server:
        client = make_client()
        for _ in range(3):
            assert (await client.get(server.url)).content == b"ok"
    assert server.connections == 3


async def test_concurrent_requests_never_open_more_than_max_connections(
    make_client: Callable[..., httpx.AsyncClient],
) -> None:
    async with serve(answer_ok) as server:
        client = make_client(max_connections=3)
        responses = await asyncio.gather(*(client.get(f"{server.url}/{n}") for n in range(30)))
    assert [r.status_code for r in responses] == [200] * 30
    assert server.connections == 3


async def test_waiters_are_served_in_arrival_order(h11_client: Callable[..., httpx.AsyncClient]) -> None:
    async with serve(answer_ok) as server:
        client = h11_client(max_connections=1)
        await asyncio.gather(*(client.get(f"{server.url}/{n}") for n in range(8)))
    assert [request.split(b" ")[1] for request in server.requests] == [f"/{n}".encode() for n in range(8)]


async def test_a_cancelled_request_gives_its_connection_back(h11_client: Callable[..., httpx.AsyncClient]) -> None:
    answered = asyncio.Event()

    async def hold_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        if state.connections == 1:
            await never_answer(reader, writer, state)
        await answer_ok(reader, writer, state)
        answered.set()

    async with serve(hold_first) as server:
        client = h11_client(max_connections=1)
        stuck = asyncio.create_task(client.get(server.url))
        await server.got_request.wait()
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        assert (await client.get(server.url)).content == b"ok"
    assert server.connections == 2  # the interrupted connection was discarded, not reused mid-answer


async def test_pool_timeout(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with serve(never_answer) as server:
        client = make_client(max_connections=1)
        stuck = asyncio.create_task(client.get(server.url))
        await server.got_request.wait()
        with pytest.raises(httpx.PoolTimeout):
            await client.get(server.url, timeout=httpx.Timeout(5.0, pool=0.05))
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck


# failures: the same httpx exception as httpcore's -------------------------------------------------------------


async def test_connection_refused_is_a_connect_error(make_client: Callable[..., httpx.AsyncClient]) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(httpx.ConnectError):
            await make_client().get(f"http://127.0.0.1:{port}/")


async def test_no_answer_is_a_read_timeout(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with serve(never_answer) as server:
        with pytest.raises(httpx.ReadTimeout):
            await make_client(timeout=0.05).get(server.url)


async def test_slow_fake_intercom_is_a_read_timeout(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with FakeIntercom() as fake:
        fake.faults.latency = 30.0
        with pytest.raises(httpx.ReadTimeout):
            await make_client(timeout=0.05).get(f"{fake.url}/contacts", headers=fake.headers())


async def test_fake_intercom_reset_is_a_remote_protocol_error(make_client: Callable[..., httpx.AsyncClient]) -> None:
    # The fake aborts the connection having read the whole request: the kernel sends a FIN, and httpcore calls
    # that "Server disconnected without sending a response."
    async with FakeIntercom() as fake:
        fake.faults.script("*", "/", 0)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await make_client().get(f"{fake.url}/contacts", headers=fake.headers())


async def test_tcp_reset_mid_response_is_a_read_error(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async def reset_mid_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-len")
        await writer.drain()
        reset(writer)

    async with serve(reset_mid_head) as server:
        with pytest.raises(httpx.ReadError):
            await make_client().get(server.url)


async def test_close_mid_body_is_a_remote_protocol_error(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async def close_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()

    async with serve(close_mid_body) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await make_client().get(server.url)


async def test_malformed_answer_is_a_remote_protocol_error(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        await writer.drain()
        await asyncio.Event().wait()

    async with serve(garbage) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await make_client().get(server.url)


async def test_a_header_h11_refuses_is_a_local_protocol_error(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async with serve(answer_ok) as server:
        with pytest.raises(httpx.LocalProtocolError):
            await make_client().get(server.url, headers={"bad header": "x"})
        assert server.requests == []


async def test_a_server_that_does_not_read_is_a_write_timeout(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await asyncio.Event().wait()

    async with serve(never_read) as server:
        with pytest.raises(httpx.WriteTimeout):
            await make_client(timeout=0.2).post(server.url, content=b"x" * (64 * 1024 * 1024))


async def test_unsupported_scheme(make_client: Callable[..., httpx.AsyncClient]) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await make_client().get("ftp://127.0.0.1/")


# TLS ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost`, made by the openssl command."""
    if which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path], names: list[str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    return context


async def test_tls_with_server_name_indication(
    make_client: Callable[..., httpx.AsyncClient], certificate: tuple[Path, Path]
) -> None:
    names: list[str | None] = []
    async with serve(answer_ok, tls=server_tls(certificate, names), host="localhost") as server:
        trusting = ssl.create_default_context(cafile=str(certificate[0]))
        response = await make_client(tls=trusting).get(server.url)
    assert response.content == b"ok"
    assert names == ["localhost"]


async def test_an_untrusted_certificate_is_a_connect_error(
    make_client: Callable[..., httpx.AsyncClient], certificate: tuple[Path, Path]
) -> None:
    async with serve(answer_ok, tls=server_tls(certificate, []), host="localhost") as server:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await make_client().get(server.url)  # the default trust store does not know this certificate
        assert server.requests == []


async def test_a_silent_tls_server_is_a_connect_timeout(make_client: Callable[..., httpx.AsyncClient]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await asyncio.Event().wait()

    async with serve(silent) as server:
        with pytest.raises(httpx.ConnectTimeout):
            await make_client(timeout=0.05).get(server.url.replace("http://", "https://"))


# the stale keep-alive connection ------------------------------------------------------------------------------


async def test_a_reused_connection_closed_before_any_answer_is_retried_once_on_a_new_one(
    h11_client: Callable[..., httpx.AsyncClient],
) -> None:
    async def one_request_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server
    ) -> None:
        await read_request(reader, state)
        writer.write(OK)  # without `connection: close`: the client keeps the connection
        await writer.drain()
        await read_request(reader, state)  # the next request on it is read, then the connection closed unanswered

    async with serve(one_request_per_connection) as server:
        client = h11_client(max_connections=1)
        assert (await client.post(server.url, content=b"first")).content == b"ok"
        assert (await client.post(server.url, content=b"second")).content == b"ok"
    assert server.connections == 2
    assert [request.rsplit(b"\r\n", 1)[1] for request in server.requests] == [b"first", b"second", b"second"]


async def test_a_new_connection_closed_before_any_answer_is_not_retried(
    h11_client: Callable[..., httpx.AsyncClient],
) -> None:
    async def close_unanswered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)

    async with serve(close_unanswered) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await h11_client().post(server.url, content=b"once")
    assert len(server.requests) == 1


async def test_a_reused_connection_closed_mid_answer_is_not_retried(
    h11_client: Callable[..., httpx.AsyncClient],
) -> None:
    async def half_second_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)
        writer.write(OK)
        await read_request(reader, state)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()

    async with serve(half_second_answer) as server:
        client = h11_client(max_connections=1)
        await client.get(server.url)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)
    assert len(server.requests) == 2


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    closed = asyncio.Event()

    async def answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)
        writer.write(OK)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    transport = H11Transport(max_connections=1)
    async with serve(answer_then_close) as server, httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url)
        await closed.wait()
        (pool,) = transport._pools.values()
        while not pool._idle[0].eof:  # the client's side of the loop has not yet read the end of file
            await asyncio.sleep(0)
        await client.get(server.url)
    assert server.connections == 2
    assert len(server.requests) == 2  # no request was sent on the closed connection (and so none retried)


# IntercomClient's choice of transport ---------------------------------------------------------------------------


def _request_parts(request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """(request line, headers by lowercase name, body)."""
    head, _, body = request.partition(b"\r\n\r\n")
    line, *fields = head.split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(b":") for f in fields)}
    return line, headers, body


async def test_intercom_client_by_default_sends_what_httpx_would_send(
    config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default client builds its h11 requests itself: the same request line, headers and body as an httpx
    client over httpcore sends (less httpx's Accept-Encoding and Connection, which it does not need)."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        while await read_request(reader, state) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nX-Request-Id: r1\r\nVary: a\r\nVary: b\r\n"
                b'content-type: application/json\r\ncontent-length: 12\r\n\r\n{"id": "me"}'
            )
            await writer.drain()

    async def calls(client: IntercomClient) -> list[IntercomResponse]:
        return [
            await client.request("POST", "/events", endpoint="POST /events", body={"event_name": "é", "n": 1}),
            await client.request("GET", "/companies", endpoint="GET /companies", params={"company_id": "a b&c"}),
            await client.request(
                "DELETE", "/contacts/c 1/companies/2", endpoint="DELETE /contacts/{id}/companies/{id}"
            ),
            await client.request("POST", "/contacts/c1/archive", endpoint="POST /contacts/{id}/archive"),
        ]

    async with serve(answer) as server:
        config = config_factory(token=Secret("tok-1"), base_url=server.url, max_connections=2).intercom
        async with IntercomClient(config) as client:
            direct = await calls(client)
        sent_directly = server.requests[:]
        server.requests.clear()
        async with IntercomClient(config, transport=httpx.AsyncHTTPTransport()) as client:
            await calls(client)
        sent_by_httpx = server.requests[:]

    ignored = {b"accept-encoding", b"connection"}
    assert len(sent_directly) == len(sent_by_httpx) == 4
    for ours, theirs in zip(sent_directly, sent_by_httpx, strict=True):
        line, headers, body = _request_parts(ours)
        their_line, their_headers, their_body = _request_parts(theirs)
        assert (line, body) == (their_line, their_body)
        assert headers == {name: value for name, value in their_headers.items() if name not in ignored}
    assert _request_parts(sent_directly[1])[0] == b"GET /companies?company_id=a+b%26c HTTP/1.1"
    assert _request_parts(sent_directly[0])[1][b"authorization"] == b"Bearer tok-1"
    assert _request_parts(sent_directly[3])[1][b"content-length"] == b"0"  # a POST without a body says so
    first = direct[0]
    assert (first.status, first.json(), first.request_id) == (200, {"id": "me"}, "r1")
    assert first.headers["X-REQUEST-ID"] == "r1" and first.headers.get("vary") == "a, b"


async def test_with_a_proxy_in_the_environment_httpx_default_transport_takes_over(
    config_factory: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: Server) -> None:
        await read_request(reader, state)
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"id": "me"}')
        await writer.drain()

    async with serve(proxy) as server:
        monkeypatch.setenv("HTTP_PROXY", server.url)
        config = config_factory(base_url="http://127.0.0.1:9").intercom  # port 9 (discard): never reached
        async with IntercomClient(config) as client:
            response = await client.request("GET", "/me", endpoint="GET /me")
    assert response.json() == {"id": "me"}
    (request,) = server.requests
    assert request.startswith(b"GET http://127.0.0.1:9/me HTTP/1.1\r\n")  # the absolute form a proxy is sent
