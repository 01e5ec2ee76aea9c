"""Metrics: Core SDK metrics drained from a real Temporal runtime buffer are rendered as
valid Prometheus text with Core's names (no ``_total``, milliseconds), next to the
process's prometheus-client metrics and Muster's readiness gauge, in one body."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from muster_runtime.metrics import LABEL_CACHE_SIZE, MetricsHub


def families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` whose labels include ``labels``.

    prometheus-client's parser reports counter samples as ``<name>_total`` whatever the
    exposition said; the raw text is checked separately where the name matters.
    """
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in (name, f"{name}_total") and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, f"{name}{labels}: {found}\n{text}"
    return float(found[0])


def test_core_metrics_render_with_core_names_and_valid_syntax() -> None:
    hub = MetricsHub(registry=CollectorRegistry())
    meter = hub.runtime.metric_meter
    requests = meter.create_counter("temporal_request", "RPC requests")
    requests.add(3, {"operation": "StartWorkflowExecution", "namespace": "default"})
    requests.add(2, {"operation": "StartWorkflowExecution", "namespace": "default"})
    requests.add(1, {"operation": "PollWorkflowTaskQueue", "namespace": "default"})
    slots = meter.create_gauge("temporal_worker_task_slots_available", "free slots")
    slots.set(7, {"worker_type": "ActivityWorker"})
    slots.set(4, {"worker_type": "ActivityWorker"})
    latency = meter.create_histogram_timedelta("temporal_request_latency", "RPC latency")
    for ms in (3, 30, 3_000):
        latency.record(timedelta(milliseconds=ms), {"operation": "X"})

    text = hub.temporal.render()

    assert sample(text, "temporal_request", operation="StartWorkflowExecution") == 5
    assert sample(text, "temporal_request", operation="PollWorkflowTaskQueue") == 1
    # The Core-SDK dashboard queries `temporal_request`, as Core's own exporter names it.
    assert "temporal_request_total" not in text
    assert "\ntemporal_request{" in text
    assert sample(text, "temporal_worker_task_slots_available", worker_type="ActivityWorker") == 4
    assert sample(text, "temporal_request_latency_bucket", operation="X", le="5") == 1
    assert sample(text, "temporal_request_latency_bucket", operation="X", le="50") == 2
    assert sample(text, "temporal_request_latency_bucket", operation="X", le="+Inf") == 3
    assert sample(text, "temporal_request_latency_sum", operation="X") == 3033
    assert sample(text, "temporal_request_latency_count", operation="X") == 3
    parsed = families(text)
    assert {"temporal_request", "temporal_worker_task_slots_available"} <= parsed.keys()


def test_updates_accumulate_across_drains() -> None:
    hub = MetricsHub(registry=CollectorRegistry())
    counter = hub.runtime.metric_meter.create_counter("temporal_workflow_completed")
    counter.add(1, {"workflow_type": "A"})
    assert hub.temporal.drain() >= 1
    counter.add(1, {"workflow_type": "A"})
    text = hub.temporal.render()
    assert sample(text, "temporal_workflow_completed", workflow_type="A") == 2


def test_label_translation_cache_is_bounded() -> None:
    """Core makes fresh attribute objects (one per workflow run, say): remembering each
    forever grew a worker by kilobytes per workflow it ever ran."""
    hub = MetricsHub(registry=CollectorRegistry())
    counter = hub.runtime.metric_meter.create_counter("temporal_workflow_task_queue_poll_succeed")
    rounds = 3 * LABEL_CACHE_SIZE
    most = 0
    for i in range(rounds):
        counter.with_additional_attributes({"workflow_type": "Approval"}).add(1)
        if i % 100 == 0:
            hub.temporal.drain()
            most = max(most, hub.temporal.cached_label_sets)
    text = hub.temporal.render()
    assert most > LABEL_CACHE_SIZE // 2  # every round really brought a new object
    assert hub.temporal.cached_label_sets <= LABEL_CACHE_SIZE
    assert sample(text, "temporal_workflow_task_queue_poll_succeed", workflow_type="Approval") == (
        rounds
    )


def test_label_values_are_escaped() -> None:
    hub = MetricsHub(registry=CollectorRegistry())
    counter = hub.runtime.metric_meter.create_counter("temporal_weird")
    counter.add(1, {"reason": 'quote " backslash \\ newline \n end'})
    text = hub.temporal.render()
    assert 'reason="quote \\" backslash \\\\ newline \\n end"' in text
    family = next(iter(text_string_to_metric_families(text)))
    assert family.samples[0].labels["reason"] == 'quote " backslash \\ newline \n end'


def test_one_body_holds_service_metrics_core_metrics_and_readiness() -> None:
    registry = CollectorRegistry()
    orders = Counter("muster_test_orders", "orders", registry=registry)
    orders.inc(2)
    hub = MetricsHub(
        service="canary",
        version="1.2.3",
        registry=registry,
        readiness=lambda: (
            False,
            {"checks": {"temporal": {"ok": True}, "worker": {"ok": False}}},
        ),
    )
    hub.runtime.metric_meter.create_counter("temporal_request").add(1)
    text = hub.render().decode()
    parsed = families(text)
    assert "muster_test_orders" in parsed
    assert "temporal_request" in parsed
    info = (
        'muster_service_info{build_id="unversioned",service="canary",version="1.2.3",'
        'worker_deployment="unversioned"} 1.0'
    )
    assert info in text
    assert 'muster_ready{check="temporal"} 1.0' in text
    assert 'muster_ready{check="worker"} 0.0' in text


def test_service_info_names_the_build_id_and_worker_deployment() -> None:
    hub = MetricsHub(service="approval", version="1.2.3", build_id="git-0123abcd",
                     worker_deployment="muster-approval", registry=CollectorRegistry())  # fmt: skip
    text = hub.render().decode()
    info = (
        'muster_service_info{build_id="git-0123abcd",service="approval",version="1.2.3",'
        'worker_deployment="muster-approval"} 1.0'
    )
    assert info in text
