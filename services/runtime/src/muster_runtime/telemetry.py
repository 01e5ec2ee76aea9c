"""OpenTelemetry tracing for Muster processes, configured from the standard ``OTEL_*`` variables.

Spans are exported over OTLP only when an endpoint is configured
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); the protocol
follows ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` (``grpc`` or ``http/protobuf``),
``OTEL_TRACES_EXPORTER`` may say ``console`` or ``none``, and ``OTEL_SDK_DISABLED=true``
turns tracing off. The provider is Temporal's replay-safe one so workflow code can open
spans without duplicating them on replay.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.util import types
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider, create_tracer_provider

log = logging.getLogger(__name__)

# Downward-API variables the Helm chart sets, and the semantic-convention keys they fill.
_KUBERNETES_ENV = {
    "POD_NAME": "k8s.pod.name",
    "POD_NAMESPACE": "k8s.namespace.name",
    "POD_UID": "k8s.pod.uid",
    "NODE_NAME": "k8s.node.name",
}


class MusterTracerProvider(ReplaySafeTracerProvider):
    """Temporal's replay-safe tracer provider, handing out one tracer per scope.

    Temporal's tracing interceptor asks the global provider for its tracer for every span it
    opens, inside the workflow sandbox too, and the SDK's provider builds new scope objects
    (and installs a warnings filter) on every call. The tracers it returns are stateless
    wrappers, so one per (name, version, schema URL) serves every caller.
    """

    def __init__(self, base: ReplaySafeTracerProvider) -> None:
        super().__init__(base._tracer_provider, base.id_generator())
        self._tracers: dict[tuple[str, str | None, str | None], trace.Tracer] = {}

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes | None = None,
    ) -> trace.Tracer:
        """The tracer of this scope (made once; scopes with attributes are never cached)."""
        if attributes:
            return super().get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        key = (instrumenting_module_name, instrumenting_library_version, schema_url)
        tracer = self._tracers.get(key)
        if tracer is None:
            tracer = super().get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url
            )
            self._tracers[key] = tracer
        return tracer


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` variable holds a value Muster cannot act on."""


def build_resource(
    service_name: str, version: str, env: Mapping[str, str] | None = None
) -> Resource:
    """Resource attributes for a process: service, version, Kubernetes pod when present.

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` override these defaults.
    """
    env = os.environ if env is None else env
    attributes: dict[str, str] = {
        "service.name": service_name,
        "service.version": version,
        "service.namespace": "muster",
    }
    for variable, key in _KUBERNETES_ENV.items():
        if env.get(variable):
            attributes[key] = env[variable]
    detected = OTELResourceDetector().detect() if env is os.environ else Resource.get_empty()
    return Resource.create(attributes).merge(detected)


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def span_exporters(env: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """The exporters that the ``OTEL_*`` variables ask for (possibly none)."""
    env = os.environ if env is None else env
    names = [
        name.strip().lower()
        for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip()
    ]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            return []
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
                "OTEL_EXPORTER_OTLP_ENDPOINT"
            )
            if not endpoint:
                continue
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "grpc"
            ).strip()
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
                    OTLPSpanExporter as GrpcExporter,
                )

                exporters.append(GrpcExporter())
            elif protocol == "http/protobuf":
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                    OTLPSpanExporter as HttpExporter,
                )

                exporters.append(HttpExporter())
            else:
                raise TelemetryConfigError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use 'grpc' or 'http/protobuf'"
                )
        else:
            raise TelemetryConfigError(
                f"OTEL_TRACES_EXPORTER={name!r}: Muster supports 'otlp', 'console' or 'none'"
            )
    return exporters


def setup_tracing(
    resource: Resource,
    *,
    extra_processors: Sequence[SpanProcessor] = (),
    env: Mapping[str, str] | None = None,
    set_global: bool = True,
) -> ReplaySafeTracerProvider | None:
    """Create the process's tracer provider (and make it global unless told not to).

    Returns None when ``OTEL_SDK_DISABLED`` is true.
    """
    env = os.environ if env is None else env
    if _env_flag(env, "OTEL_SDK_DISABLED"):
        log.info("tracing disabled by OTEL_SDK_DISABLED")
        return None
    provider = MusterTracerProvider(create_tracer_provider(resource=resource))
    exporters = span_exporters(env)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    log.info(
        "tracing configured",
        extra={"exporters": [type(e).__module__ + "." + type(e).__name__ for e in exporters]},
    )
    return provider
