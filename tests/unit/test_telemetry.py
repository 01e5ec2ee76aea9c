"""Tracing configuration from the standard OTEL_* variables: resource attributes (service,
version, Kubernetes pod), exporter selection, clear errors for unsupported values, and a
real OTLP/HTTP export received by a local collector endpoint."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider

from muster_runtime.telemetry import (
    TelemetryConfigError,
    build_resource,
    setup_tracing,
    span_exporters,
)


def test_resource_names_service_version_and_pod() -> None:
    env = {"POD_NAME": "approval-7d9f", "POD_NAMESPACE": "muster", "NODE_NAME": "kind-worker"}
    attributes = build_resource("muster-approval", "1.4.0", env).attributes
    assert attributes["service.name"] == "muster-approval"
    assert attributes["service.version"] == "1.4.0"
    assert attributes["service.namespace"] == "muster"
    assert attributes["k8s.pod.name"] == "approval-7d9f"
    assert attributes["k8s.namespace.name"] == "muster"
    assert attributes["k8s.node.name"] == "kind-worker"
    assert "k8s.pod.uid" not in attributes


def test_otel_variables_override_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_SERVICE_NAME", "orders-eu")
    clean_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    attributes = build_resource("muster-fulfillment", "1.0.0").attributes
    assert attributes["service.name"] == "orders-eu"
    assert attributes["deployment.environment"] == "staging"
    assert attributes["service.version"] == "1.0.0"


def test_no_endpoint_means_no_exporter() -> None:
    assert span_exporters({}) == []


def test_exporter_selection() -> None:
    grpc = span_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert [type(e) for e in grpc] == [GrpcExporter]
    http = span_exporters(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }
    )
    assert [type(e) for e in http] == [HttpExporter]
    assert [type(e) for e in span_exporters({"OTEL_TRACES_EXPORTER": "console"})] == [
        ConsoleSpanExporter
    ]
    none = {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
    assert span_exporters(none) == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            },
            "OTEL_EXPORTER_OTLP_PROTOCOL='http/json'",
        ),
    ],
)
def test_unsupported_values_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(TelemetryConfigError, match=message.replace("/", ".")):
        span_exporters(env)


def test_sdk_disabled() -> None:
    resource = build_resource("muster-x", "0", {})
    assert setup_tracing(resource, env={"OTEL_SDK_DISABLED": "true"}, set_global=False) is None


class _Collector(HTTPServer):
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.received = threading.Event()
        super().__init__(("127.0.0.1", 0), _CollectorHandler)


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        self.server.received.set()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_spans_reach_an_otlp_http_endpoint(collector: _Collector) -> None:
    port = collector.server_address[1]
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    }
    resource = build_resource("muster-canary", "9.9.9", {"POD_NAME": "canary-0"})
    # The exporter reads its endpoint from the process environment, as in production.
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        provider = setup_tracing(resource, env=env, set_global=False)
    assert provider is not None
    with provider.get_tracer("test").start_as_current_span("place-order"):
        pass
    assert provider.force_flush(10_000)
    assert collector.received.wait(10)
    provider.shutdown()
    spans = [
        (resource_spans, span)
        for request in collector.requests
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    ]
    assert [span.name for _, span in spans] == ["place-order"]
    attributes = {a.key: a.value.string_value for a in spans[0][0].resource.attributes}
    assert attributes["service.name"] == "muster-canary"
    assert attributes["service.version"] == "9.9.9"
    assert attributes["k8s.pod.name"] == "canary-0"


def test_the_provider_makes_one_tracer_per_scope() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        build_resource("muster-test", "0"),
        env={},
        extra_processors=[SimpleSpanProcessor(exporter)],
        set_global=False,
    )
    assert isinstance(provider, ReplaySafeTracerProvider)
    first = provider.get_tracer("temporalio.contrib.opentelemetry")
    assert provider.get_tracer("temporalio.contrib.opentelemetry") is first
    assert provider.get_tracer("temporalio.contrib.opentelemetry", "1.0") is not first
    assert provider.get_tracer("muster.fulfillment") is not first
    with_attributes = provider.get_tracer("x", attributes={"tenant": "a"})
    assert provider.get_tracer("x", attributes={"tenant": "b"}) is not with_attributes
    # The shared tracer still records, with its own scope.
    with first.start_as_current_span("one"), first.start_as_current_span("two"):
        pass
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["two", "one"]
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "temporalio.contrib.opentelemetry"
    }
    provider.shutdown()
