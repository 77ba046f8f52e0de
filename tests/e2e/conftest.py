"""Fixtures for end-to-end tests: the fake Intercom and the sidecar on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from intercom_sidecar._generated.intercom_sidecar.v1 import service_pb2_grpc
from intercom_sidecar.app import App
from intercom_sidecar.config import (
    Config,
    IntercomConfig,
    QueueConfig,
    RetryConfig,
    Secret,
    SegmentConfig,
    ServerConfig,
    SpoolConfig,
)
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.telemetry.setup import make_tracer_provider
from tests.openapi_schemas import validate_ledger_requests


@dataclasses.dataclass
class Sidecar:
    app: App
    channel: grpc.aio.Channel
    stub: service_pb2_grpc.EventServiceStub
    spans: InMemorySpanExporter
    target: str

    async def close(self) -> None:
        await self.channel.close()
        await self.app.stop()


SidecarFactory = Callable[..., Awaitable[Sidecar]]


@pytest.fixture
async def fake_intercom() -> AsyncIterator[FakeIntercom]:
    """The fake Intercom; after the test, every request the sidecar sent must match Intercom's OpenAPI schemas."""
    fake = FakeIntercom()
    await fake.start("127.0.0.1", 0)
    try:
        yield fake
    finally:
        await fake.stop()
    validate_ledger_requests(fake.ledger)


def sidecar_config(fake: FakeIntercom, spool_dir: Path, **sections: Any) -> Config:
    """A config pointing at `fake`, listening on an ephemeral loopback port, with fast retries and a durable
    spool in `spool_dir`."""
    config = Config(
        intercom=IntercomConfig(token=Secret(fake.token), base_url=fake.url, timeout_seconds=5.0),
        server=ServerConfig(listen="127.0.0.1:0", shutdown_grace_seconds=5.0),
        segment=SegmentConfig(listen="127.0.0.1:0"),
        queue=QueueConfig(max_events=1000, workers=4),
        retry=RetryConfig(initial_backoff_seconds=0.01, max_backoff_seconds=0.05, max_elapsed_seconds=5.0),
        spool=SpoolConfig(kind="sqlite", directory=spool_dir),
    )
    return dataclasses.replace(config, **sections)


async def start_app(fake: FakeIntercom, spool_dir: Path, **sections: Any) -> Sidecar:
    """A started sidecar delivering to `fake`, with an in-memory span exporter and a client channel."""
    spans = InMemorySpanExporter()
    provider = make_tracer_provider({}, processors=(SimpleSpanProcessor(spans),))
    app = App(sidecar_config(fake, spool_dir, **sections), tracer_provider=provider)
    await app.start()
    target = f"127.0.0.1:{app.port}"
    channel = grpc.aio.insecure_channel(target)
    return Sidecar(app, channel, service_pb2_grpc.EventServiceStub(channel), spans, target)


@pytest.fixture
async def start_sidecar(fake_intercom: FakeIntercom, tmp_path: Path) -> AsyncIterator[SidecarFactory]:
    started: list[Sidecar] = []

    async def start(**sections: Any) -> Sidecar:
        sidecar = await start_app(fake_intercom, tmp_path / f"spool-{len(started)}", **sections)
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        await sidecar.close()


@pytest.fixture
async def sidecar(start_sidecar: SidecarFactory) -> Sidecar:
    return await start_sidecar()
