"""A refused token pauses delivery for everyone (nothing is dead-lettered) until the token file changes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.app import App
from intercom_sidecar.config import Secret
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.telemetry.setup import make_tracer_provider
from tests.e2e.conftest import sidecar_config

pytestmark = pytest.mark.e2e

Ack = event_pb2.Ack
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(2_000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def identify(message_id: str) -> event_pb2.Event:
    return event_pb2.Event(message_id=message_id, user_id="u1", identify=event_pb2.Identify())


async def test_401_pauses_until_the_token_file_changes(fake_intercom: FakeIntercom, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("revoked-token\n")
    config = sidecar_config(fake_intercom, tmp_path / "spool")
    intercom = dataclasses.replace(config.intercom, token=Secret("revoked-token"), token_file=token_file)
    app = App(
        dataclasses.replace(config, intercom=intercom),
        tracer_provider=make_tracer_provider({}),
        token_check_seconds=0.02,
    )
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = service_pb2_grpc.EventServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service: str) -> int:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                return int(reply.status)

            first = await stub.Send(service_pb2.SendRequest(events=[identify("m1")]), timeout=10)
            assert first.acks[0].status == Ack.STATUS_ACCEPTED
            await until(lambda: app.pipeline.pause_reason is not None)
            assert app.pipeline.pause_reason == (
                "delivery is paused: intercom 401 unauthorized: Access Token Invalid (POST /contacts)"
            )
            assert (await status(""), await status("liveness")) == (NOT_SERVING, SERVING)
            paused = await stub.Send(service_pb2.SendRequest(events=[identify("m2")]), timeout=10)
            assert (paused.acks[0].status, paused.acks[0].reason) == (Ack.STATUS_RETRY_LATER, app.pipeline.pause_reason)
            assert paused.acks[0].retry_after.seconds == 30
            assert app.spool is not None and await app.spool.list_dead_letters() == []

            token_file.write_text(fake_intercom.token)  # the Secret is rotated
            await until(lambda: fake_intercom.state.contact_by_external_id("u1") is not None)
            assert app.pipeline.pause_reason is None
            for _ in range(200):  # readiness is set by a task the resume started
                if await status("") == SERVING:
                    break
            assert await status("") == SERVING
            assert "revoked-token" not in repr(app.config)
    finally:
        await app.stop()
