"""Records histories of the order saga's paths for the replay gate.

Run by ``make histories`` (``tests/replay/record.py``), never during a test run. Every
path runs on a real dev server against the real reference backends (a process, with
faults injected through its admin API) and the real fulfillment workflow and activities;
large orders wait for the real approval workflow as their child, on its own worker, and a
person decides it through its ``decide`` update. Each history lands in
``tests/replay/histories/OrderFulfillment/<name>.json``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from muster_api.approval import Decision
from muster_api.approval import workflow_id as approval_workflow_id
from muster_api.fulfillment import (
    WORKFLOW,
    FulfillmentInput,
    FulfillmentOptions,
    Order,
    OrderResult,
    OrderState,
    OrderStatus,
    ResolveInput,
    approval_request_id,
)
from muster_approval.workflows import Approval
from muster_fulfillment.activities import Backends, FulfillmentActivities
from muster_fulfillment.workflows import OrderFulfillment
from muster_runtime.sandbox import muster_workflow_runner
from tests.approval_support import approval_worker, setup
from tests.fulfillment_support import BackendsProcess, order, sku, start_backends
from tests.replay.recording import Servers, save, wanted

Handle = WorkflowHandle[Any, OrderResult]
POLICY = "large-orders"
THRESHOLDS = {"EUR": 100_000}
FAST = FulfillmentOptions(
    step_timeout_seconds=5.0,
    retry_initial_seconds=0.1,
    retry_max_interval_seconds=0.5,
    step_max_attempts=3,
    compensation_max_attempts=3,
)


@dataclass
class World:
    """A fulfillment worker and an approval worker on their own task queues."""

    client: Client
    task_queue: str
    approval_queue: str
    backends: BackendsProcess

    async def start(self, placed: Order, **options: Any) -> Handle:
        return await self.client.start_workflow(
            WORKFLOW,
            FulfillmentInput(
                order=placed,
                options=FAST.model_copy(
                    update={"approval_task_queue": self.approval_queue, **options}
                ),
            ),
            id=f"order-{placed.order_id}",
            task_queue=self.task_queue,
            result_type=OrderResult,
            execution_timeout=timedelta(minutes=5),
        )

    def stocked(self, count: int = 5) -> str:
        item = sku()
        self.backends.set_stock(item, count)
        return item

    async def until(self, handle: Handle, status: OrderStatus) -> None:
        for _ in range(600):
            state: OrderState = await handle.query(OrderFulfillment.state)
            if state.status == status:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"order {handle.id} never reached {status.value} in 30 s")

    async def decide(self, placed: Order, verdict: str, reason: str | None = None) -> None:
        child = self.client.get_workflow_handle(
            approval_workflow_id(approval_request_id(placed.order_id))
        )
        decision = Decision.model_validate(
            {"approver": "alice", "verdict": verdict, "reason": reason}
        )
        for _ in range(300):  # the child starts once the charge has been refused
            try:
                await child.execute_update(Approval.decide, decision)
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise AssertionError(f"the approval of {placed.order_id} could not be decided")


async def fulfilled(world: World) -> Handle:
    """Reserve, charge, ship, confirm."""
    handle = await world.start(order([(world.stocked(), 3, 1250)]))
    assert (await handle.result()).status == OrderStatus.FULFILLED
    return handle


async def _compensated(world: World, handle: Handle) -> Handle:
    assert (await handle.result()).status == OrderStatus.COMPENSATED
    return handle


async def out_of_stock(world: World) -> Handle:
    """The reservation fails for good: undone at once (its compensation runs too)."""
    return await _compensated(world, await world.start(order([(world.stocked(1), 2, 1000)])))


async def card_declined(world: World) -> Handle:
    """The charge fails for good: charge and reservation undone, in reverse."""
    placed = order([(world.stocked(), 2, 1000)], token="tok_declined")
    return await _compensated(world, await world.start(placed))


async def address_rejected(world: World) -> Handle:
    """Shipping refuses the address: shipment, charge and reservation undone."""
    placed = order([(world.stocked(), 2, 1000)], postal_code="00000")
    return await _compensated(world, await world.start(placed))


async def charge_keeps_failing(world: World) -> Handle:
    """A transient fault outlasts the charge's retries: compensated."""
    world.backends.fault("payment", error_rate=1.0, paths=["/payment/charges"])
    return await _compensated(world, await world.start(order([(world.stocked(), 1, 500)])))


async def parallel_compensation(world: World) -> Handle:
    """Shipping refuses; the three compensations run at once."""
    placed = order([(world.stocked(), 2, 1000)], postal_code="00000")
    return await _compensated(world, await world.start(placed, parallel_compensation=True))


async def _parked(world: World) -> tuple[Handle, Order]:
    world.backends.fault("payment", error_rate=1.0, paths=["/payment/refunds"])
    placed = order([(world.stocked(), 1, 1000)], postal_code="00000")
    handle = await world.start(placed)
    await world.until(handle, OrderStatus.NEEDS_ATTENTION)
    world.backends.clear_faults()
    return handle, placed


async def needs_attention_then_retried(world: World) -> Handle:
    """The refund keeps failing: parked for a person, who retries once it works again."""
    handle, _ = await _parked(world)
    await handle.execute_update(
        OrderFulfillment.resolve, ResolveInput(action="retry_compensation", operator="ops")
    )
    assert (await handle.result()).status == OrderStatus.COMPENSATED
    return handle


async def needs_attention_then_marked_resolved(world: World) -> Handle:
    """Parked; a person refunds by hand and closes the order with a note."""
    handle, _ = await _parked(world)
    await handle.execute_update(
        OrderFulfillment.resolve,
        ResolveInput(action="mark_resolved", operator="ops", note="refunded by bank transfer"),
    )
    assert (await handle.result()).status == OrderStatus.RESOLVED
    return handle


async def large_order_approved(world: World) -> Handle:
    """Above the threshold: the charge is refused until the approval child says yes."""
    placed = order([(world.stocked(), 2, 60_000)])
    handle = await world.start(placed)
    await world.decide(placed, "approve")
    assert (await handle.result()).status == OrderStatus.FULFILLED
    return handle


async def large_order_rejected(world: World) -> Handle:
    """Above the threshold, and the approver says no: charge and reservation undone."""
    placed = order([(world.stocked(), 2, 60_000)])
    handle = await world.start(placed)
    await world.decide(placed, "reject", "too much")
    return await _compensated(world, handle)


async def cancelled_while_waiting(world: World) -> Handle:
    """Cancelled while the approval is pending: the child is cancelled, the order undone."""
    placed = order([(world.stocked(), 1, 150_000)])
    handle = await world.start(placed)
    await world.until(handle, OrderStatus.AWAITING_APPROVAL)
    await handle.cancel()
    return await _compensated(world, handle)


async def cancelled_after_shipping(world: World) -> Handle:
    """Cancelled while confirming: the parcel is on its way, the order is fulfilled."""
    world.backends.fault("notification", latency_ms=1500)
    handle = await world.start(order([(world.stocked(), 1, 900)]))
    await world.until(handle, OrderStatus.CONFIRMING)
    await handle.cancel()
    assert (await handle.result()).status == OrderStatus.FULFILLED
    return handle


DEV_SERVER: dict[str, Callable[[World], Awaitable[Handle]]] = {
    "fulfilled": fulfilled,
    "out_of_stock": out_of_stock,
    "card_declined": card_declined,
    "address_rejected": address_rejected,
    "charge_keeps_failing": charge_keeps_failing,
    "parallel_compensation": parallel_compensation,
    "needs_attention_then_retried": needs_attention_then_retried,
    "needs_attention_then_marked_resolved": needs_attention_then_marked_resolved,
    "large_order_approved": large_order_approved,
    "large_order_rejected": large_order_rejected,
    "cancelled_while_waiting": cancelled_while_waiting,
    "cancelled_after_shipping": cancelled_after_shipping,
}


@asynccontextmanager
async def world(client: Client, tmp: Path) -> AsyncIterator[World]:
    """The backends, a fulfillment worker and an approval worker (policy ``large-orders``)."""
    backends = start_backends(tmp)
    task_queue = f"replay-{uuid.uuid4().hex[:8]}"
    approval_queue = f"{task_queue}-approval"
    folder = tmp / "approval"
    folder.mkdir()
    http = httpx.AsyncClient(timeout=2.0)
    activities = FulfillmentActivities(Backends(http, backends.urls()), THRESHOLDS, POLICY)
    try:
        async with (
            setup(folder) as where,
            approval_worker(client, approval_queue, where),
            Worker(
                client,
                task_queue=task_queue,
                workflows=[OrderFulfillment],
                activities=activities.all(),
                workflow_runner=muster_workflow_runner(),
            ),
        ):
            where.write_policy(POLICY, approvers="{users: [alice]}")
            yield World(client, task_queue, approval_queue, backends)
    finally:
        await http.aclose()
        backends.process.stop()


async def record(servers: Servers, names: set[str] | None, refresh: bool) -> None:
    """Record the order paths that ``names``/``refresh`` ask for (see ``wanted``)."""
    paths = wanted(WORKFLOW, DEV_SERVER, names, refresh)
    if not paths:
        return
    folder = servers.tmp / "fulfillment"
    folder.mkdir()
    async with world(await servers.dev(), folder) as here:
        for name, path in paths.items():
            here.backends.clear_faults()
            handle = await path(here)
            save(WORKFLOW, name, await handle.fetch_history())
