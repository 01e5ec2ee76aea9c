"""One Prometheus ``/metrics`` body per process: Temporal SDK metrics plus the service's own.

Temporal's Core SDK records its metrics into a :class:`temporalio.runtime.MetricBuffer`;
:class:`TemporalMetricStore` drains it and keeps the aggregates, rendering them with the
names Core's own Prometheus exporter uses by default (``temporal_request``,
``temporal_workflow_completed``, ``temporal_request_latency_bucket`` in milliseconds), so
Temporal's Core-SDK Grafana dashboard works unchanged. The service's prometheus-client
registry is rendered alongside in the same response.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio.common import MetricAttributes
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    BufferedMetricUpdate,
    LogForwardingConfig,
    LoggingConfig,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Millisecond buckets from 1 ms to 1 h: covers RPCs, activity runs and long workflows.
DEFAULT_BUCKETS_MS: tuple[float, ...] = (
    1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000,
    300_000, 600_000, 1_800_000, 3_600_000,
)  # fmt: skip

# Histograms Muster's workflows record in their own units (not milliseconds): people take
# minutes to weeks to decide, so decision latency has buckets from a minute to a month.
MUSTER_BUCKETS: dict[str, tuple[float, ...]] = {
    "muster_approval_decision_seconds": (
        60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400,
    ),
}  # fmt: skip

LabelSet = tuple[tuple[str, str], ...]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(labels: LabelSet, extra: tuple[str, str] | None = None) -> str:
    pairs = [*labels, extra] if extra else list(labels)
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs)
    return "{" + inner + "}"


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


LABEL_CACHE_SIZE = 1024
"""Attribute objects whose labels are remembered; new ones past this evict the oldest."""


@dataclass
class _Family:
    name: str
    kind: int
    help: str
    series: dict[LabelSet, Any] = field(default_factory=dict)


class TemporalMetricStore:
    """Aggregates buffered Core SDK metric updates and renders Prometheus text."""

    def __init__(
        self,
        buffer: MetricBuffer,
        *,
        buckets: Sequence[float] = DEFAULT_BUCKETS_MS,
        bucket_overrides: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self._buffer = buffer
        self._buckets = tuple(sorted(buckets))
        overrides = {**MUSTER_BUCKETS, **(bucket_overrides or {})}
        self._overrides = {k: tuple(sorted(v)) for k, v in overrides.items()}
        self._families: dict[str, _Family] = {}
        # Attribute objects are translated to labels once per object. Core reuses an object
        # for a while (a worker's, a poller's), but also makes new ones (one per workflow
        # run, for instance), so the cache is bounded: it holds each object it keys (so
        # the id stays unique) and forgets the oldest beyond LABEL_CACHE_SIZE.
        self._label_cache: dict[int, tuple[MetricAttributes, LabelSet]] = {}
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()

    def _label_set(self, attributes: MetricAttributes) -> LabelSet:
        cached = self._label_cache.get(id(attributes))
        if cached is not None and cached[0] is attributes:
            return cached[1]
        labels = tuple(sorted((str(k), str(v).lower() if isinstance(v, bool) else str(v))
                              for k, v in attributes.items()))  # fmt: skip
        if len(self._label_cache) >= LABEL_CACHE_SIZE:
            del self._label_cache[next(iter(self._label_cache))]  # the oldest entry
        self._label_cache[id(attributes)] = (attributes, labels)
        return labels

    @property
    def cached_label_sets(self) -> int:
        """Attribute objects currently remembered (bounded by ``LABEL_CACHE_SIZE``)."""
        return len(self._label_cache)

    def apply(self, updates: Sequence[BufferedMetricUpdate]) -> None:
        """Fold updates into the aggregates (counters add, gauges set, histograms observe)."""
        with self._lock:
            for update in updates:
                metric = update.metric
                family = self._families.get(metric.name)
                if family is None:
                    family = _Family(metric.name, metric.kind, metric.description or metric.name)
                    self._families[metric.name] = family
                labels = self._label_set(update.attributes)
                if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
                    family.series[labels] = family.series.get(labels, 0) + update.value
                elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                    family.series[labels] = update.value
                elif metric.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
                    hist = family.series.get(labels)
                    if hist is None:
                        hist = _Histogram(self._overrides.get(metric.name, self._buckets))
                        family.series[labels] = hist
                    hist.observe(float(update.value))

    def drain(self) -> int:
        """Move everything waiting in the Core buffer into the aggregates."""
        # Draining and folding happen under one lock so updates are applied in order.
        with self._drain_lock:
            updates = self._buffer.retrieve_updates()
            self.apply(updates)
        return len(updates)

    def render(self) -> str:
        """Prometheus text exposition (format 0.0.4) of every Temporal metric seen so far."""
        self.drain()
        lines: list[str] = []
        with self._lock:
            for name in sorted(self._families):
                family = self._families[name]
                lines.append(f"# HELP {name} {_escape_help(family.help)}")
                if family.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
                    lines.append(f"# TYPE {name} histogram")
                    for labels, hist in sorted(family.series.items()):
                        cumulative = 0
                        for bound, count in zip(hist.bounds, hist.counts, strict=False):
                            cumulative += count
                            le = ("le", _format_value(bound))
                            lines.append(f"{name}_bucket{_labels(labels, le)} {cumulative}")
                        lines.append(f"{name}_bucket{_labels(labels, ('le', '+Inf'))} {hist.count}")
                        lines.append(f"{name}_sum{_labels(labels)} {_format_value(hist.total)}")
                        lines.append(f"{name}_count{_labels(labels)} {hist.count}")
                else:
                    kind = "counter" if family.kind == BUFFERED_METRIC_KIND_COUNTER else "gauge"
                    lines.append(f"# TYPE {name} {kind}")
                    for labels, value in sorted(family.series.items()):
                        lines.append(f"{name}{_labels(labels)} {_format_value(value)}")
        return "\n".join(lines) + ("\n" if lines else "")


class ReadinessCollector(Collector):
    """Exposes each readiness check as ``muster_ready{check=...}`` (1 passing, 0 failing)."""

    def __init__(self, readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self._readiness = readiness

    def collect(self) -> Iterable[Metric]:
        """Read the checks at scrape time."""
        _, body = self._readiness()
        family = GaugeMetricFamily(
            "muster_ready", "Whether a readiness check passes (1) or fails (0)", labels=["check"]
        )
        for name, check in body.get("checks", {}).items():
            family.add_metric([name], 1.0 if check["ok"] else 0.0)
        return [family]


class MetricsHub:
    """The process's metrics: a Temporal runtime feeding a buffer, and prometheus registries.

    Create one per process before any Temporal client, and pass :attr:`runtime` to the
    client factory. Services define their own metrics on prometheus-client's default
    registry as usual; the hub adds ``muster_service_info`` and ``muster_ready`` on a
    registry of its own.
    """

    def __init__(
        self,
        *,
        service: str = "muster",
        version: str = "0.0.0",
        build_id: str | None = None,
        worker_deployment: str | None = None,
        readiness: Callable[[], tuple[bool, dict[str, Any]]] | None = None,
        registry: CollectorRegistry = REGISTRY,
        global_tags: Mapping[str, str] | None = None,
        buffer_size: int = 200_000,
        bucket_overrides: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.registry = registry
        self.own_registry = CollectorRegistry(auto_describe=True)
        # The build id is a label of this one series per process, not of every metric:
        # queries join it in by pod, and a deploy adds one series, not one per metric.
        info = Gauge(
            "muster_service_info",
            "Always 1; labels name the Muster service, its version, and the build id and "
            "Worker Deployment its worker runs as (unversioned: none)",
            ["service", "version", "build_id", "worker_deployment"],
            registry=self.own_registry,
        )
        versioned = build_id is not None
        info.labels(
            service=service,
            version=version,
            build_id=build_id or "unversioned",
            worker_deployment=(worker_deployment or "") if versioned else "unversioned",
        ).set(1)
        if readiness is not None:
            self.own_registry.register(ReadinessCollector(readiness))
        self.buffer = MetricBuffer(buffer_size, MetricBufferDurationFormat.MILLISECONDS)
        self.runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=self.buffer,
                global_tags=dict(global_tags or {}),
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                    forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
                ),
            )
        )
        self.temporal = TemporalMetricStore(self.buffer, bucket_overrides=bucket_overrides)

    def render(self) -> bytes:
        """The whole ``/metrics`` body."""
        return (
            generate_latest(self.registry)
            + generate_latest(self.own_registry)
            + self.temporal.render().encode()
        )

    async def drain_forever(self, interval: float = 1.0) -> None:
        """Keep the Core buffer drained between scrapes so no update is dropped."""
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.temporal.drain)
            except Exception:
                log.exception("draining Temporal metrics failed")
