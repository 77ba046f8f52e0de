"""server/auth.py: which calls pass the bearer-token check, and how a rotated token file is followed."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from intercom_sidecar.config import Secret, ServerConfig
from intercom_sidecar.server.auth import BearerTokenInterceptor, TokenSource, auth_interceptors
from intercom_sidecar.telemetry.logs import REDACTED, redact

TOKEN = "grpc-auth-0a1b2c3d4e5f6789"
EVENTS = "/intercom_sidecar.v1.EventService/Stream"
HEALTH = "/grpc.health.v1.Health/Check"


@dataclass
class Details:
    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


def handler() -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
    async def stream(requests: object, context: object) -> None:
        raise AssertionError("not called here")

    return grpc.stream_stream_rpc_method_handler(stream, request_deserializer=bytes, response_serializer=bytes)


async def intercept(method: str, *metadata: tuple[str, str | bytes], tokens: TokenSource | None = None) -> object:
    """The handler the interceptor gives gRPC: the servicer's own one, or a refusal."""
    original = handler()

    async def continuation(details: object) -> object:
        return original

    interceptor = BearerTokenInterceptor(tokens or TokenSource(Secret(TOKEN)))
    chosen = await interceptor.intercept_service(continuation, Details(method, metadata))  # type: ignore[arg-type]
    return "passed" if chosen is original else chosen


@pytest.mark.parametrize(
    "metadata",
    [
        (("authorization", f"Bearer {TOKEN}"),),
        (("authorization", f"bearer {TOKEN}"),),
        (("x-ack-mode", "delivered"), ("authorization", f"  Bearer   {TOKEN} ")),
    ],
)
async def test_the_right_token_passes(metadata: tuple[tuple[str, str], ...]) -> None:
    assert await intercept(EVENTS, *metadata) == "passed"


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", f"Bearer {TOKEN}x"),),
        (("authorization", f"Bearer {TOKEN[:-1]}"),),
        (("authorization", TOKEN),),
        (("authorization", f"Basic {TOKEN}"),),
        (("authorization", "Bearer "),),
        (("authorization", f"Bearer {TOKEN}"), ("authorization", f"Bearer {TOKEN}")),
        (("authorization", "Bearer tökén"),),
        (("x-token", TOKEN),),
    ],
)
async def test_anything_else_is_refused_with_a_handler_of_the_same_shape(metadata: tuple[tuple[str, str], ...]) -> None:
    refusal = await intercept(EVENTS, *metadata)
    assert isinstance(refusal, grpc.RpcMethodHandler)
    assert (refusal.request_streaming, refusal.response_streaming) == (True, True)
    assert refusal.request_deserializer is bytes and refusal.response_serializer is bytes


async def test_health_is_open_and_every_other_service_is_not() -> None:
    assert await intercept(HEALTH) == "passed"
    assert await intercept("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") != "passed"
    assert await intercept("/intercom_sidecar.v1.EventService/Send") != "passed"


async def test_the_first_refusal_is_a_warning_that_never_shows_the_token_sent(caplog: pytest.LogCaptureFixture) -> None:
    sent = "Bearer guess-0123456789abcdef"
    interceptor = BearerTokenInterceptor(TokenSource(Secret(TOKEN)))

    async def continuation(details: object) -> object:
        return handler()

    with caplog.at_level(logging.DEBUG, logger="intercom_sidecar.server.auth"):
        for _ in range(3):
            details = Details(EVENTS, (("authorization", sent),))
            await interceptor.intercept_service(continuation, details)  # type: ignore[arg-type]
    assert [record.levelname for record in caplog.records] == ["WARNING", "DEBUG", "DEBUG"]
    assert caplog.records[0].getMessage() == (
        "Refused a call to `intercom_sidecar.v1.EventService`: the bearer token in `authorization` is not this "
        "sidecar's INTERCOM_SIDECAR_AUTH_TOKEN; later refusals are logged at DEBUG."
    )
    assert all("guess" not in record.getMessage() and TOKEN not in record.getMessage() for record in caplog.records)


def test_no_token_no_interceptor() -> None:
    assert auth_interceptors(ServerConfig()) == []
    assert len(auth_interceptors(ServerConfig(auth_token=Secret(TOKEN)))) == 1


def write(path: Path, text: str) -> None:
    """Replace `path` as a Kubernetes Secret volume does: a new file, moved over the old one."""
    path.with_suffix(".new").write_text(text)
    os.replace(path.with_suffix(".new"), path)


async def test_a_rotated_token_file_is_used_from_the_next_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "grpc-token"
    write(path, f"{TOKEN}\n")
    tokens = TokenSource(Secret(TOKEN), path)
    new = "grpc-auth-rotated-fedcba9876543210"
    write(path, f"{new}\n")
    with caplog.at_level(logging.WARNING, logger="intercom_sidecar.server.auth"):
        assert await intercept(EVENTS, ("authorization", f"Bearer {new}"), tokens=tokens) == "passed"
        assert await intercept(EVENTS, ("authorization", f"Bearer {TOKEN}"), tokens=tokens) != "passed"
    assert caplog.records[0].getMessage() == f"Picked up a new gRPC auth token from `{path}`."
    assert len(caplog.records) == 2  # and the refusal of the old token
    assert redact(f"x {new} y") == f"x {REDACTED} y", "the new token is registered as a secret"


async def test_an_unusable_token_file_keeps_the_current_token_and_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "grpc-token"
    write(path, TOKEN)
    tokens = TokenSource(Secret(TOKEN), path)
    write(path, "")
    with caplog.at_level(logging.WARNING, logger="intercom_sidecar.server.auth"):
        for _ in range(3):
            assert await intercept(EVENTS, ("authorization", f"Bearer {TOKEN}"), tokens=tokens) == "passed"
        path.unlink()
        assert await intercept(EVENTS, ("authorization", f"Bearer {TOKEN}"), tokens=tokens) == "passed"
    assert [record.getMessage() for record in caplog.records] == [
        f"Keeping the current gRPC auth token: INTERCOM_SIDECAR_AUTH_TOKEN_FILE: {str(path)!r} is empty.",
        f"Keeping the current gRPC auth token: INTERCOM_SIDECAR_AUTH_TOKEN_FILE: cannot read {str(path)!r}: No such "
        "file or directory.",
    ]
