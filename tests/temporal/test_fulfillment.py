"""The order fulfillment saga against the real reference backends, on the dev server and on
the real server: each step failing in turn (business and transient), exact compensations in
reverse order, lost responses replayed not repeated, cancellation, needs-attention and its
resolution, and the approval threshold waiting for a child workflow under the real name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from muster_api.fulfillment import (
    WORKFLOW,
    FulfillmentInput,
    FulfillmentOptions,
    Order,
    OrderResult,
    OrderState,
    OrderStatus,
    ResolveInput,
)
from muster_fulfillment.activities import Backends, FulfillmentActivities
from muster_fulfillment.workflows import OrderFulfillment
from muster_runtime.sandbox import muster_workflow_runner
from tests.fulfillment_support import (
    ApprovalStandIn,
    BackendsProcess,
    order,
    sku,
    start_backends,
    undo_sequence,
)
from tests.helpers import ON_BOTH_SERVERS, async_wait_until

pytestmark = [pytest.mark.timeout(180), ON_BOTH_SERVERS]

FAST = {
    "step_timeout_seconds": 5.0,
    "retry_initial_seconds": 0.1,
    "retry_max_interval_seconds": 0.5,
    "step_max_attempts": 3,
    "compensation_max_attempts": 3,
}


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory, temporal_target: str
) -> Iterator[BackendsProcess]:
    """Backends of their own for each server the module runs on (fresh ledgers)."""
    running = start_backends(tmp_path_factory.mktemp("fulfillment"))
    yield running
    running.process.stop()


@pytest.fixture(autouse=True)
def no_faults(backends: BackendsProcess) -> Iterator[None]:
    backends.clear_faults()
    yield
    backends.clear_faults()


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    client: Client, backends: BackendsProcess, task_queue: str
) -> AsyncIterator[dict[str, Any]]:
    """A fulfillment worker (the real workflow and activities) plus the approval stand-in."""
    http = httpx.AsyncClient(timeout=2.0)
    activities = FulfillmentActivities(
        Backends(http, backends.urls()), {"EUR": 100_000}, "large-orders"
    )
    approval_queue = f"{task_queue}-approval"
    async with (
        Worker(
            client,
            task_queue=task_queue,
            workflows=[OrderFulfillment],
            activities=activities.all(),
            workflow_runner=muster_workflow_runner(),
        ),
        Worker(client, task_queue=approval_queue, workflows=[ApprovalStandIn]),
    ):
        yield {"task_queue": task_queue, "approval_queue": approval_queue}
    await http.aclose()


async def start(
    client: Client, worker: dict[str, Any], placed: Order, **options: Any
) -> WorkflowHandle[Any, OrderResult]:
    return await client.start_workflow(
        WORKFLOW,
        FulfillmentInput(
            order=placed,
            options=FulfillmentOptions(
                **{**FAST, "approval_task_queue": worker["approval_queue"], **options}
            ),
        ),
        id=f"order-{placed.order_id}",
        task_queue=worker["task_queue"],
        result_type=OrderResult,
        execution_timeout=timedelta(minutes=5),
    )


async def state(handle: WorkflowHandle[Any, OrderResult]) -> OrderState:
    current: OrderState = await handle.query("state", result_type=OrderState)
    return current


async def test_happy_path_fulfils_once(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 10)
    placed = order([(item, 3, 1250)])
    result = await (await start(client, worker, placed)).result()
    assert result.status == OrderStatus.FULFILLED
    assert [s.step for s in result.steps if s.outcome == "succeeded"] == [
        "reserve", "charge", "ship", "confirm",
    ]  # fmt: skip
    assert backends.stock(item) == 7
    charges = backends.get(f"/payment/charges?order_id={placed.order_id}")
    assert [(c["amount_minor"], c["status"]) for c in charges] == [(3750, "captured")]
    shipments = backends.get(f"/shipping/ledger?order_id={placed.order_id}")
    assert [s["tracking_number"] for s in shipments] == [result.tracking_number]
    messages = backends.get(f"/notification/ledger?order_id={placed.order_id}")
    assert [m["template"] for m in messages] == ["order_confirmed"]


BUSINESS_FAILURES = {
    "reserve": ("OutOfStock", ["reserve"]),
    "charge": ("CardDeclined", ["charge", "reserve"]),
    "ship": ("AddressRejected", ["ship", "charge", "reserve"]),
}


@pytest.mark.parametrize("failing", ["reserve", "charge", "ship"])
async def test_business_failure_compensates_at_once_in_reverse(
    client: Client, worker: dict[str, Any], backends: BackendsProcess, failing: str
) -> None:
    item = sku()
    backends.set_stock(item, 1 if failing == "reserve" else 5)
    placed = order(
        [(item, 2, 1000)],
        token="tok_declined" if failing == "charge" else "tok_visa",
        postal_code="00000" if failing == "ship" else "10115",
    )
    result = await (await start(client, worker, placed)).result()
    kind, expected = BUSINESS_FAILURES[failing]
    assert result.status == OrderStatus.COMPENSATED
    assert result.failure is not None
    assert result.failure.startswith(kind)
    # Registered before each step, undone in reverse, including the step that failed.
    assert undo_sequence(result.steps) == expected
    failed = [s for s in result.steps if s.phase == "do" and s.outcome == "failed"]
    assert [s.step for s in failed] == [failing]
    # Business failures are not retried: one attempt of the failing step.
    assert [s.step for s in result.steps if s.outcome == "started" and s.phase == "do"][
        -1
    ] == "failure-notice"
    # The ledgers agree: stock back, nothing charged, nothing shipped.
    assert backends.stock(item) == (1 if failing == "reserve" else 5)
    charges = backends.get(f"/payment/charges?order_id={placed.order_id}")
    assert all(c["status"] == "refunded" for c in charges)
    assert len(charges) == (1 if failing == "ship" else 0)
    shipments = backends.get(f"/shipping/ledger?order_id={placed.order_id}")
    assert shipments == []
    messages = backends.get(f"/notification/ledger?order_id={placed.order_id}")
    assert [m["template"] for m in messages] == ["order_failed"]


@pytest.mark.parametrize(
    ("failing", "backend", "path"),
    [
        ("reserve", "inventory", "/inventory/reservations"),
        ("charge", "payment", "/payment/charges"),
        ("ship", "shipping", "/shipping/shipments"),
    ],
)
async def test_transient_failure_retries_then_compensates(
    client: Client,
    worker: dict[str, Any],
    backends: BackendsProcess,
    failing: str,
    backend: str,
    path: str,
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    backends.fault(backend, error_rate=1.0, paths=[path])
    placed = order([(item, 1, 500)])
    result = await (await start(client, worker, placed)).result()
    assert result.status == OrderStatus.COMPENSATED
    assert result.failure is not None
    assert "injected" in result.failure
    expected = {"reserve": ["reserve"], "charge": ["charge", "reserve"],
                "ship": ["ship", "charge", "reserve"]}[failing]  # fmt: skip
    assert undo_sequence(result.steps) == expected
    assert backends.stock(item) == 5
    requests = _metric(backends, "muster_backend_requests_total", backend=backend, outcome="fault")
    assert requests >= FAST["step_max_attempts"]


async def test_transient_failure_that_clears_is_fulfilled(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    backends.fault("payment", error_rate=1.0)
    placed = order([(item, 1, 500)])
    handle = await start(client, worker, placed, step_max_attempts=50)

    async def charge_retrying() -> bool:
        description = await handle.describe()
        pending = description.raw_description.pending_activities
        return any(p.attempt >= 2 for p in pending)

    await async_wait_until(charge_retrying, what="charge retrying", timeout=30)
    backends.clear_faults()
    result = await handle.result()
    assert result.status == OrderStatus.FULFILLED
    assert len(backends.get(f"/payment/charges?order_id={placed.order_id}")) == 1


async def test_a_lost_response_is_replayed_not_repeated(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    # The charge happens, but its answer arrives after the caller's 2 s timeout.
    backends.fault(
        "payment", lost_response_rate=1.0, lost_response_delay_seconds=4, paths=["/payment/charges"]
    )
    placed = order([(item, 1, 700)])
    handle = await start(client, worker, placed, step_max_attempts=50)

    def charged() -> bool:
        return bool(backends.get(f"/payment/charges?order_id={placed.order_id}"))

    await async_wait_until(_sync(charged), what="charge committed", timeout=30)
    backends.clear_faults()
    result = await handle.result()
    assert result.status == OrderStatus.FULFILLED
    charges = backends.get(f"/payment/charges?order_id={placed.order_id}")
    assert [(c["charge_id"], c["status"]) for c in charges] == [(result.charge_id, "captured")]
    assert _metric(backends, "muster_backend_requests_total", backend="payment",
                   outcome="replayed") >= 1  # fmt: skip


async def test_cancel_while_waiting_for_approval_compensates(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    placed = order([(item, 1, 150_000)])  # 1,500.00 EUR: above the threshold
    handle = await start(client, worker, placed)

    async def waiting() -> bool:
        return (await state(handle)).status == OrderStatus.AWAITING_APPROVAL

    await async_wait_until(waiting, what="order awaiting approval", timeout=30)
    assert backends.stock(item) == 4  # reserved while it waits
    assert backends.get(f"/payment/charges?order_id={placed.order_id}") == []  # not before
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            OrderFulfillment.resolve, ResolveInput(action="retry_compensation", operator="ops")
        )
    assert "is awaiting_approval; only an order that needs attention" in str(refused.value.cause)
    await handle.cancel()
    result = await handle.result()
    assert result.status == OrderStatus.COMPENSATED
    assert result.failure == "cancelled on request"
    # The refused charge's compensation voids its key: no charge can land under it later.
    assert undo_sequence(result.steps) == ["charge", "reserve"]
    assert backends.get(f"/payment/charges?order_id={placed.order_id}") == []
    assert backends.stock(item) == 5
    # The approval child was cancelled with its parent's request.
    child = client.get_workflow_handle(f"approval-order-{placed.order_id}")

    async def child_closed() -> bool:
        return (await child.describe()).status is not None and (
            await child.describe()
        ).close_time is not None

    await async_wait_until(child_closed, what="approval child closed", timeout=30)


async def test_cancel_after_shipping_changes_nothing(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    backends.fault("notification", latency_ms=1500)
    placed = order([(item, 1, 900)])
    handle = await start(client, worker, placed)

    async def confirming() -> bool:
        return (await state(handle)).status == OrderStatus.CONFIRMING

    await async_wait_until(confirming, what="order confirming", timeout=30, interval=0.05)
    await handle.cancel()
    result = await handle.result()
    assert result.status == OrderStatus.FULFILLED
    assert undo_sequence(result.steps) == []
    assert any(s.step == "cancel" and s.outcome == "skipped" for s in result.steps)
    assert backends.get(f"/payment/charges?order_id={placed.order_id}")[0]["status"] == "captured"


@pytest.mark.parametrize("approved", [True, False])
async def test_large_orders_wait_for_approval_before_payment(
    client: Client, worker: dict[str, Any], backends: BackendsProcess, approved: bool
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    placed = order([(item, 2, 60_000)])  # 1,200.00 EUR
    handle = await start(client, worker, placed)

    async def waiting() -> bool:
        return (await state(handle)).status == OrderStatus.AWAITING_APPROVAL

    await async_wait_until(waiting, what="order awaiting approval", timeout=30)
    child = client.get_workflow_handle(f"approval-order-{placed.order_id}")
    await child.signal(ApprovalStandIn.decide, args=[approved, "" if approved else "too much"])
    result = await handle.result()
    forward = [(s.step, s.outcome) for s in result.steps if s.phase == "do"]
    # The payment step refused the charge without an approval (before calling the backend).
    assert forward[:5] == [
        ("reserve", "started"), ("reserve", "succeeded"),
        ("charge", "started"), ("charge", "skipped"), ("approval", "started"),
    ]  # fmt: skip
    refusal = next(s for s in result.steps if s.outcome == "skipped")
    assert "1,200.00 EUR needs an approval under policy large-orders" in refusal.detail
    assert "from 1,000.00 EUR on" in refusal.detail
    charges = backends.get(f"/payment/charges?order_id={placed.order_id}")
    if approved:
        assert result.status == OrderStatus.FULFILLED
        assert forward[5:8] == [
            ("approval", "succeeded"),
            ("charge", "started"),
            ("charge", "succeeded"),
        ]
        assert [(c["charge_id"], c["status"]) for c in charges] == [(result.charge_id, "captured")]
    else:
        assert result.status == OrderStatus.COMPENSATED
        assert result.failure == "ApprovalRejected: approval rejected: too much"
        assert forward[5] == ("approval", "failed")
        assert undo_sequence(result.steps) == ["charge", "reserve"]
        assert charges == []


async def test_small_orders_need_no_approval(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    result = await (await start(client, worker, order([(item, 1, 99_999)]))).result()
    assert result.status == OrderStatus.FULFILLED
    assert not any(s.step == "approval" for s in result.steps)


async def test_failing_compensation_needs_attention_until_resolved(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    backends.fault("payment", error_rate=1.0, paths=["/payment/refunds"])
    placed = order([(item, 1, 1000)], postal_code="00000")  # shipping will refuse
    handle = await start(client, worker, placed)

    async def parked() -> OrderState | None:
        current = await state(handle)
        return current if current.status == OrderStatus.NEEDS_ATTENTION else None

    current = await async_wait_until(parked, what="order needs attention", timeout=60)
    assert current.attention is not None
    assert current.attention.failed_compensations == ["charge"]
    assert "AddressRejected" in current.attention.reason
    assert backends.stock(item) == 5  # the other compensations ran anyway

    async def listed() -> bool:
        query = (
            f"MusterNeedsAttention = true AND MusterBusinessKey = '{placed.order_id}' "
            "AND MusterStatus = 'needs_attention'"
        )
        return [w.id async for w in client.list_workflows(query)] == [handle.id]

    await async_wait_until(listed, what="visibility lists the order", timeout=30)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            OrderFulfillment.resolve, ResolveInput(action="mark_resolved", operator="ops")
        )
    assert "needs a note" in str(refused.value.cause)

    backends.clear_faults()
    resolved = await handle.execute_update(
        OrderFulfillment.resolve, ResolveInput(action="retry_compensation", operator="ops")
    )
    assert resolved.status in (OrderStatus.COMPENSATING, OrderStatus.COMPENSATED)
    result = await handle.result()
    assert result.status == OrderStatus.COMPENSATED
    charges = backends.get(f"/payment/charges?order_id={placed.order_id}")
    assert [c["status"] for c in charges] == ["refunded"]

    with pytest.raises(RPCError, match="already completed"):
        await handle.execute_update(
            OrderFulfillment.resolve, ResolveInput(action="retry_compensation", operator="ops")
        )


async def test_mark_resolved_closes_an_order_by_hand(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    backends.fault("payment", error_rate=1.0, paths=["/payment/refunds"])
    placed = order([(item, 1, 1000)], postal_code="00000")
    handle = await start(client, worker, placed)

    async def parked() -> bool:
        return (await state(handle)).status == OrderStatus.NEEDS_ATTENTION

    await async_wait_until(parked, what="order needs attention", timeout=60)
    await handle.execute_update(
        OrderFulfillment.resolve,
        ResolveInput(action="mark_resolved", operator="ops", note="refunded by bank transfer"),
    )
    result = await handle.result()
    assert result.status == OrderStatus.RESOLVED
    assert result.resolution_note == "ops: refunded by bank transfer"


async def test_parallel_compensation_undoes_everything(
    client: Client, worker: dict[str, Any], backends: BackendsProcess
) -> None:
    item = sku()
    backends.set_stock(item, 5)
    placed = order([(item, 2, 1000)], postal_code="00000")
    result = await (await start(client, worker, placed, parallel_compensation=True)).result()
    assert result.status == OrderStatus.COMPENSATED
    assert sorted(undo_sequence(result.steps)) == ["charge", "reserve", "ship"]
    undo_events = [s.outcome for s in result.steps if s.phase == "undo"]
    # All three started before any of them finished.
    assert undo_events[:3] == ["started", "started", "started"]
    assert backends.stock(item) == 5


def _metric(backends: BackendsProcess, name: str, **labels: str) -> float:

    text = httpx.get(backends.management + "/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def _sync(check: Any) -> Any:
    async def wrapped() -> Any:
        return check()

    return wrapped
