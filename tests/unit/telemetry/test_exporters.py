"""The OTLP exporters `make_tracer_provider` builds send the sidecar's encoding, over gRPC and over HTTP, with the
standard variables (endpoint, protocol, headers) honoured: a loopback collector receives what the SDK would send."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import set_span_in_context

from intercom_sidecar.telemetry.exporters import GrpcSpanExporter, HttpSpanExporter, _urllib3_transport
from intercom_sidecar.telemetry.processor import QueueSpanProcessor
from intercom_sidecar.telemetry.setup import make_tracer_provider
from intercom_sidecar.telemetry.tracer import LeanTracerProvider
from tests.collectors import serve_trace_collector

Request = tuple[trace_service_pb2.ExportTraceServiceRequest, dict[str, str]]


class GrpcCollector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self.requests.append((request, dict(context.invocation_metadata())))  # type: ignore[arg-type]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def grpc_collector() -> Iterator[tuple[GrpcCollector, int]]:
    collector = GrpcCollector()
    with serve_trace_collector(collector) as port:
        yield collector, port


@pytest.fixture
def http_collector() -> Iterator[tuple[list[tuple[str, Request]], int]]:
    received: list[tuple[str, Request]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            received.append((self.path, (request, {key.lower(): value for key, value in self.headers.items()})))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def trace_one_event(provider: LeanTracerProvider) -> str:
    tracer = provider.get_tracer("intercom_sidecar")
    event = tracer.start_span("intercom_sidecar.event", attributes={"segment.message_id": "m-1"})
    with tracer.start_as_current_span("intercom_sidecar.validate", context=set_span_in_context(event)):
        event.set_attribute("segment.type", "track")
    event.end()
    provider.shutdown()  # flushes the processor, then shuts the exporter down
    return f"{event.get_span_context().trace_id:032x}"


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list[tuple[str, str, dict[str, str]]]:
    return [
        (span.trace_id.hex(), span.name, {kv.key: kv.value.string_value for kv in span.attributes})
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


def service_name(request: trace_service_pb2.ExportTraceServiceRequest) -> str:
    attributes = request.resource_spans[0].resource.attributes
    return next(kv.value.string_value for kv in attributes if kv.key == "service.name")


def test_otlp_over_grpc(grpc_collector: tuple[GrpcCollector, int], monkeypatch: pytest.MonkeyPatch) -> None:
    collector, port = grpc_collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k-123")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-sidecar")
    provider = make_tracer_provider()
    assert isinstance(provider, LeanTracerProvider)
    trace_id = trace_one_event(provider)
    [(request, metadata)] = collector.requests
    assert spans_of(request) == [
        (trace_id, "intercom_sidecar.validate", {}),
        (trace_id, "intercom_sidecar.event", {"segment.message_id": "m-1", "segment.type": "track"}),
    ]
    assert service_name(request) == "checkout-sidecar"
    assert metadata["x-collector-key"] == "k-123"


def test_otlp_over_http(http_collector: tuple[list[tuple[str, Request]], int], monkeypatch: pytest.MonkeyPatch) -> None:
    received, port = http_collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-collector-key=k-456")
    provider = make_tracer_provider()
    assert isinstance(provider, LeanTracerProvider)
    trace_id = trace_one_event(provider)
    [(path, (request, headers))] = received
    assert path == "/v1/traces"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["x-collector-key"] == "k-456"
    assert [name for _, name, _ in spans_of(request)] == ["intercom_sidecar.validate", "intercom_sidecar.event"]
    assert {trace for trace, _, _ in spans_of(request)} == {trace_id}


def test_the_exporters_and_processor_are_the_sidecars(monkeypatch: pytest.MonkeyPatch) -> None:
    def exporter_of(env: dict[str, str]) -> object:
        provider = make_tracer_provider(env)
        [processor] = provider._active_span_processor._span_processors  # type: ignore[attr-defined]
        assert isinstance(processor, QueueSpanProcessor)
        exporter = processor._exporter
        provider.shutdown()
        return exporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    assert isinstance(exporter_of(endpoint), GrpcSpanExporter)
    assert isinstance(exporter_of({**endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}), HttpSpanExporter)
    assert isinstance(exporter_of({"OTEL_TRACES_EXPORTER": "console"}), ConsoleSpanExporter)


def test_http_export_goes_through_urllib3_with_the_certificate_settings(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    env = {
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ca),
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": str(cert),
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(key),
    }
    transport = HttpSpanExporter(env)._client._transport
    assert isinstance(transport, Urllib3HTTPTransport)
    assert transport._pool.connection_pool_kw["ca_certs"] == str(ca)
    assert transport._pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
    assert (transport._pool.connection_pool_kw["cert_file"], transport._pool.connection_pool_kw["key_file"]) == (
        str(cert),
        str(key),
    )
    plain = HttpSpanExporter({})._client._transport
    assert isinstance(plain, Urllib3HTTPTransport)
    assert plain._pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
    assert "ca_certs" not in plain._pool.connection_pool_kw and "cert_file" not in plain._pool.connection_pool_kw


def test_a_credential_provider_keeps_the_sdks_requests_transport() -> None:
    assert _urllib3_transport({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "vendor"}) is None
    assert _urllib3_transport({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "vendor"}) is None


def test_http_export_retries_a_refused_connection_then_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector that is not there: the SDK client's retry loop classifies urllib3's error as a connection
    error (so it retries until its timeout) and the export fails without raising."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.5")
    exporter = HttpSpanExporter()
    transport = exporter._client._transport
    assert transport.is_connection_error(transport.request("POST", f"http://127.0.0.1:{port}/v1/traces").error)
    provider = LeanTracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.get_tracer("t").start_span("s").end()  # SimpleSpanProcessor exports here, and logs the failure
    provider.shutdown()
