"""One order is one trace across every process: a request that arrives at the gateway with a
W3C ``traceparent`` is continued by the gateway's server span, carried through Temporal's
headers into the workflow and every activity, and over HTTP into the backends. The spans are
collected by a local OTLP/HTTP receiver, as a Collector would get them, from the real
gateway, fulfillment worker and backends processes on the dev server."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from muster_runtime.polling import async_wait_until, wait_until
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.platform_support import TOKENS, Platform, platform

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
SERVER, CLIENT = 2, 3  # OTLP span kinds
STEPS = tuple(
    f"fulfillment.{step}"
    for step in ("reserve_inventory", "charge_payment", "create_shipment", "send_notification")
)
TRACE_ENV = {
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_TRACES_EXPORTER": "otlp",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str], receiver: OtlpReceiver
) -> Iterator[Platform]:
    """The platform, every process exporting its spans to the receiver."""
    overrides = {**TRACE_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    saved = {name: os.environ.get(name) for name in [*overrides, "OTEL_SDK_DISABLED"]}
    os.environ.update(overrides)
    os.environ.pop("OTEL_SDK_DISABLED", None)
    try:
        # Child processes copy the environment when they start.
        with platform(tmp_path_factory.mktemp("traced"), temporal_env) as running:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            yield running
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _order(order_id: str) -> dict[str, object]:
    order = json.loads((REPO / "examples" / "orders" / "basic.json").read_text())
    order["order_id"] = order_id
    return dict(order)


def _ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[str]:
    """Span ids from the parent up to the root (as far as the receiver has them)."""
    found = []
    while span.parent_id in by_id:
        found.append(span.parent_id)
        span = by_id[span.parent_id]
    found.append(span.parent_id)
    return found


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans; have {sorted({s.name for s in spans})}"
    return found[0]


async def test_one_order_is_one_trace_from_gateway_to_backends(
    traced: Platform, receiver: OtlpReceiver
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    order_id = f"trace-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(base_url=traced.gateway, timeout=30) as http:
        response = await http.post(
            "/v1/orders",
            json=_order(order_id),
            headers={
                "Authorization": f"Bearer {TOKENS['shop']}",
                "Idempotency-Key": order_id,
                "traceparent": f"00-{trace_id}-{caller_span}-01",
            },
        )
        assert response.status_code == 201, response.text

        async def fulfilled() -> bool:
            state = await http.get(
                f"/v1/orders/{order_id}", headers={"Authorization": f"Bearer {TOKENS['shop']}"}
            )
            return bool(state.json()["status"] == "fulfilled")

        await async_wait_until(fulfilled, what="the order to be fulfilled", timeout=90)

    def complete() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace_id)
        names = {s.name for s in spans}
        wanted = {"POST /v1/orders", "RunWorkflow:OrderFulfillment"} | {
            f"RunActivity:{step}" for step in STEPS
        }
        backend_servers = [s for s in spans if s.service == "muster-backends" and s.kind == SERVER]
        return spans if wanted <= names and len(backend_servers) >= 4 else None

    spans = wait_until(complete, what="the order's spans at the receiver", timeout=60, interval=0.5)
    by_id = {s.span_id: s for s in spans}
    assert {s.service for s in spans} >= {"muster-gateway", "muster-fulfillment", "muster-backends"}

    # The gateway continues the caller's trace and names the order.
    gateway = _one(spans, "POST /v1/orders")
    assert gateway.parent_id == caller_span
    assert gateway.kind == SERVER
    assert gateway.service == "muster-gateway"
    assert gateway.attributes["muster.order_id"] == order_id
    assert gateway.attributes["http.route"] == "/v1/orders"
    # ... starts the workflow inside it ...
    start = _one(spans, "StartWorkflow:OrderFulfillment")
    assert gateway.span_id in _ancestors(start, by_id)
    # ... the workflow runs under that start, each activity under the workflow's scheduling.
    run = [s for s in spans if s.name == "RunWorkflow:OrderFulfillment"]
    assert run
    assert all(r.parent_id == start.span_id for r in run)
    for step in STEPS:
        activity = [s for s in spans if s.name == f"RunActivity:{step}"]
        assert activity, step
        scheduled = by_id[activity[0].parent_id]
        assert scheduled.name == f"StartActivity:{step}"
        assert scheduled.service == "muster-fulfillment"
    # Every backend request is one server span, a child of the fulfillment worker's client
    # span for it.
    servers = [s for s in spans if s.service == "muster-backends" and s.kind == SERVER]
    assert len({s.parent_id for s in servers}) == len(servers), "one server span per request"
    for server in servers:
        client = by_id[server.parent_id]
        assert client.kind == CLIENT
        assert client.service == "muster-fulfillment"
        assert by_id[client.parent_id].name.startswith("RunActivity:")
    # No personal data in any span: the order's customer details never appear.
    order = _order(order_id)
    personal = {str(order["customer_email"]), "Ada Lovelace", "12 Analytical Way", "tok_visa"}
    for span in spans:
        assert not personal & {str(v) for v in span.attributes.values()}, span.name


async def test_compensations_continue_the_orders_trace(
    traced: Platform, receiver: OtlpReceiver
) -> None:
    """A declined card: the saga undoes the reservation, and that compensation (activity and
    backend call) belongs to the same trace as the order's request."""
    trace_id = secrets.token_hex(16)
    order_id = f"trace-declined-{secrets.token_hex(4)}"
    order = {**_order(order_id), "payment_token": "tok_declined"}
    async with httpx.AsyncClient(base_url=traced.gateway, timeout=30) as http:
        response = await http.post(
            "/v1/orders",
            json=order,
            headers={
                "Authorization": f"Bearer {TOKENS['shop']}",
                "Idempotency-Key": order_id,
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            },
        )
        assert response.status_code == 201, response.text

    undo = "RunActivity:fulfillment.release_inventory"

    def compensated() -> list[ReceivedSpan] | None:
        spans = receiver.spans(trace_id)
        release = [s for s in spans if s.name == undo]
        if not release:
            return None
        by_id = {s.span_id: s for s in spans}
        calls = [s for s in spans if s.kind == CLIENT and s.parent_id == release[0].span_id]
        served = [s for s in spans if s.kind == SERVER and s.service == "muster-backends"
                  and s.parent_id in {c.span_id for c in calls}]  # fmt: skip
        return spans if served and release[0].parent_id in by_id else None

    spans = wait_until(compensated, what="the compensation's spans", timeout=90, interval=0.5)
    by_id = {s.span_id: s for s in spans}
    gateway = _one(spans, "POST /v1/orders")
    release = next(s for s in spans if s.name == undo)
    assert gateway.span_id in _ancestors(release, by_id)
    assert any(s.name == "RunActivity:fulfillment.charge_payment" for s in spans)
