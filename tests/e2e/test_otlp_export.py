"""Spans leave by OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT says where: a collector on loopback receives them."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from intercom_sidecar._generated.intercom_sidecar.v1 import event_pb2, service_pb2, service_pb2_grpc
from intercom_sidecar.app import App
from intercom_sidecar.fake import FakeIntercom
from intercom_sidecar.telemetry.setup import make_tracer_provider
from tests.collectors import serve_trace_collector
from tests.e2e.conftest import sidecar_config

pytestmark = pytest.mark.e2e


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []
        self.service_names: set[str] = set()
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for resource_spans in request.resource_spans:
                for attribute in resource_spans.resource.attributes:
                    if attribute.key == "service.name":
                        self.service_names.add(attribute.value.string_value)
                for scope in resource_spans.scope_spans:
                    self.spans += [(span.trace_id.hex(), span.name) for span in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    """A synchronous gRPC server: the exporter runs in its own thread and flushes while the event loop waits."""
    servicer = Collector()
    with serve_trace_collector(servicer) as port:
        yield servicer, port


async def test_spans_reach_the_collector(
    collector: tuple[Collector, int], fake_intercom: FakeIntercom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received, port = collector
    # The OTLP exporter reads the standard variables from the environment itself, as in production.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-sidecar")
    provider = make_tracer_provider()
    config = sidecar_config(fake_intercom, tmp_path / "spool")
    app = App(dataclasses.replace(config), tracer_provider=provider)
    await app.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = service_pb2_grpc.EventServiceStub(channel)
            event = event_pb2.Event(message_id="m1", user_id="u1", identify=event_pb2.Identify())
            response = await stub.Send(
                service_pb2.SendRequest(events=[event]), metadata=(("x-ack-mode", "delivered"),), timeout=30
            )
    finally:
        await app.stop()  # flushes the batch processor
    trace_id = response.acks[0].trace_id
    names = sorted(name for trace, name in received.spans if trace == trace_id)
    assert names == sorted(
        ["intercom_sidecar.event", "intercom_sidecar.validate", "intercom_sidecar.queued", "intercom_sidecar.attempt",
         "POST /contacts"]
    )  # fmt: skip
    assert received.service_names == {"checkout-sidecar"}
