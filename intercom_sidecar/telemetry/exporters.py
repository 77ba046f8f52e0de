"""The OTLP span exporters, over gRPC and over HTTP, sending what `telemetry/otlp.py` encodes.

Each is the SDK's exporter for its protocol (so every `OTEL_EXPORTER_OTLP_*` setting it reads, endpoint, headers,
certificates, compression, timeout, and its retries, are the SDK's), with one change: the request body is written
by the sidecar's encoder instead of being built as protobuf objects. Over gRPC the bytes go out through the same
channel, on the `TraceService/Export` method, without being parsed again.

Over HTTP the requests go through the SDK's urllib3 transport rather than its default, `requests` (0.25 against
0.62 ms of CPU to post 512 spans, on the export thread that shares the interpreter lock with intake), with the
same certificate settings; a credential provider (`OTEL_PYTHON_EXPORTER_OTLP_HTTP_*CREDENTIAL_PROVIDER`, which
hands over a `requests.Session`) keeps the SDK's transport.

Both also take spans already encoded (`export_encoded`, what `QueueSpanProcessor` hands them: each span encoded by
`otlp.encode_span` as it ended), and put the request together from their bytes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry.exporter.http.transport._base import BaseHTTPTransport
from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as SdkGrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as SdkHttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.environment_variables import (
    _OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER,
    _OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER,
    OTEL_EXPORTER_OTLP_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_CLIENT_KEY,
    OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
    OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from intercom_sidecar.telemetry.otlp import EncodedSpan, Home, encode_request, encode_spans

__all__ = ["GrpcSpanExporter", "HttpSpanExporter"]

_log = logging.getLogger(__name__)

_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class GrpcSpanExporter(SdkGrpcSpanExporter):
    """OTLP over gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, the default)."""

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
        self._client = _BytesStub(self._channel)  # type: ignore[assignment,arg-type]

    def _translate_data(self, data: Sequence[ReadableSpan]) -> bytes:  # type: ignore[override]
        if isinstance(data, _EncodedBatch):
            return encode_request(data, data.home)
        return encode_spans(data)

    def export_encoded(self, spans: Sequence[EncodedSpan | bytes], home: Home | None = None) -> SpanExportResult:
        """`export` of spans already encoded (`otlp.encode_request`), by the SDK's export path: retries, metrics,
        shutdown."""
        return self.export(_EncodedBatch(spans, home))  # type: ignore[arg-type]


class _EncodedBatch(list[EncodedSpan | bytes]):
    """Encoded spans going through the SDK exporter's `export`, which counts them and has them translated."""

    def __init__(self, spans: Sequence[EncodedSpan | bytes], home: Home | None) -> None:
        super().__init__(spans)
        self.home = home


class _BytesStub:
    """`TraceService.Export` taking the request already serialised (no request serializer: bytes go as they are)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.Export = channel.unary_unary(
            _EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )


class HttpSpanExporter(SdkHttpSpanExporter):
    """OTLP over HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`): the SDK exporter's `export`, with this
    encoder, over urllib3."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(_transport=_urllib3_transport(os.environ if env is None else env))  # type: ignore[arg-type]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._send(spans, encode_spans)

    def export_encoded(self, spans: Sequence[EncodedSpan | bytes], home: Home | None = None) -> SpanExportResult:
        """`export` of spans already encoded (`otlp.encode_request`)."""
        return self._send(spans, lambda encoded: encode_request(encoded, home))

    def _send(self, spans: Sequence[Any], encode: Callable[[Any], bytes]) -> SpanExportResult:
        if self._shutdown:
            _log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            serialized = encode(spans)
            if _is_request_too_large(serialized, self._max_request_size):
                _log.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                    len(serialized),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized)} bytes exceeds max_request_size "
                    f"{self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE
            exported = self._client.export(serialized)
            if not exported.success:
                result.error = exported.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: exported.status_code} if exported.status_code is not None else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


def _urllib3_transport(env: Mapping[str, str]) -> BaseHTTPTransport | None:
    """The SDK's urllib3 transport, verifying and presenting certificates as its default transport would (the same
    variables, traces' first); None (the SDK's default) when a credential provider is configured."""
    if env.get(_OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER) or env.get(
        _OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER
    ):
        return None
    verify: bool | str = (
        env.get(OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE) or env.get(OTEL_EXPORTER_OTLP_CERTIFICATE) or True
    )
    key = env.get(OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY) or env.get(OTEL_EXPORTER_OTLP_CLIENT_KEY)
    certificate = env.get(OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE) or env.get(
        OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE
    )
    cert = (certificate, key) if certificate and key else certificate
    return Urllib3HTTPTransport(verify=verify, cert=cert)
