"""Rollouts and crashes lose nothing. While orders keep arriving at the gateway (100 in
all, each held a few seconds by the backends' injected latency, so some are always in
flight) and 50 approval requests wait for people: a rolling restart of the fulfillment and
approval Deployments; then ``kubectl delete pod --force --grace-period=0`` of a fulfillment
pod that is running an activity; then a restart of the node's containerd (``muster
cluster restart containerd``; the containers keep running).

Afterwards every order is fulfilled or compensated, the payment ledger holds exactly one
charge per fulfilled order and nothing left charged for a compensated one, and every
approval request can still be decided. Graceful shutdown (SIGTERM, the worker draining
in-flight activities within ``terminationGracePeriodSeconds``) is proven by Temporal's
histories: no activity of the orders and approvals ran a second attempt that began before
the forced delete could have caused it, and the forced delete did cause retries (so the
check sees them when they happen)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from muster_api import approval as approval_api
from muster_api import fulfillment as fulfillment_api
from tests.cluster.release import RELEASE, Release
from tests.cluster.support import ClusterHandle, apply, http_from, muster_command
from tests.helpers import async_wait_until, wait_until
from tests.platform_support import TOKENS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ORDERS = 100
APPROVALS = 50
ORDER_INTERVAL = 1.5
"""Seconds between orders: 100 of them span the three disruptions."""
LATENCY_MS = {"inventory": 300, "payment": 4000, "shipping": 300}
STEP_TIMEOUT = fulfillment_api.FulfillmentOptions().step_timeout_seconds
FORCED_PAYMENT_MS = int(STEP_TIMEOUT * 1000 * 2 / 3)
"""The payments' latency around the forced delete. A pod deleted with ``--grace-period=0``
still gets SIGTERM and about two seconds before SIGKILL, in which its worker drains: a 4 s
payment picked mid-way can finish there, and then the delete causes no retry (seen once, in
a run beside the other tiers). A 20 s one cannot, and still ends well inside the steps'
start-to-close timeout, so no other activity times out."""
SEPARATION = STEP_TIMEOUT + 15
"""Seconds from the end of the rolling restarts to the forced delete: an activity that a
planned restart cut off would have been retried (after its start-to-close timeout) before
then, so a retry cannot be blamed on the wrong disruption."""
POLICY = {
    "apiVersion": "muster.io/v1alpha1",
    "kind": "ApprovalPolicy",
    "metadata": {"name": "rollout-purchases"},
    "spec": {
        "appliesTo": {"kinds": ["rollout-purchase"]},
        "approvers": {"users": ["alice", "bob"]},
        "requiredApprovals": 1,
        "timeout": "7d",
        "onTimeout": "Reject",
        "notifications": {"email": {"enabled": True, "notifyRequester": True}},
    },
}


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[user]}"}


@dataclass
class Placed:
    """An order sent to the gateway, and how it should end."""

    order_id: str
    outcome: str  # fulfilled | compensated
    total_minor: int


@dataclass
class Feed:
    """The orders placed so far, and the moments of each disruption (UTC wall clock)."""

    orders: list[Placed] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, what: str) -> None:
        self.marks[what] = time.time()


def order_body(order_id: str, sku: str, kind: int) -> tuple[dict[str, Any], Placed]:
    """Every tenth order has a declined card (compensated before any charge), every tenth
    after that an address no carrier serves (charged, then refunded); the rest ship."""
    token, country, outcome = "tok_visa", "DE", "fulfilled"
    if kind % 10 == 3:
        token, outcome = "tok_declined", "compensated"
    elif kind % 10 == 7:
        country, outcome = "AQ", "compensated"
    body = {
        "order_id": order_id,
        "customer_id": "cust-rollout",
        "customer_email": "rollout@example.com",
        "items": [{"sku": sku, "name": "Rollout part", "quantity": 2,
                   "unit_price": {"amount_minor": 1250, "currency": "EUR"}}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical Way",
                             "city": "Somewhere", "postal_code": "12345", "country": country},
        "payment_token": token,
    }  # fmt: skip
    return body, Placed(order_id, outcome, 2500)


async def feed_orders(api: httpx.AsyncClient, feed: Feed, sku: str) -> None:
    for n in range(ORDERS):
        order_id = f"roll-{uuid.uuid4().hex[:10]}"
        body, placed = order_body(order_id, sku, n)
        answer = await api.post(
            "/v1/orders", json=body, headers={**auth("shop"), "Idempotency-Key": order_id}
        )
        assert answer.status_code == 201, answer.text
        feed.orders.append(placed)
        await asyncio.sleep(ORDER_INTERVAL)  # the pace of arriving orders, not a wait


async def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = await asyncio.to_thread(
        subprocess.run, list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stdout}{result.stderr}"
    return result


async def set_latency(admin: httpx.AsyncClient, **latency_ms: int) -> None:
    """Make the backends named answer after this many milliseconds."""
    for backend, latency in latency_ms.items():
        fault = await admin.put(f"/admin/faults/{backend}", json={"latency_ms": latency})
        assert fault.status_code == 200, fault.text


def busy_fulfillment_pod(release: Release, not_before: float) -> str:
    """A fulfillment pod that is running an activity now and was at the sample before (its
    metrics say so), counting only samples from ``not_before`` (a ``time.monotonic()``): once
    the payments started before the latency went up are over, a pod busy twice in a row is
    in the middle of a long payment."""
    seen: set[str] = set()

    def busy() -> str | None:
        if time.monotonic() < not_before:
            return None
        now = set()
        for pod in release.pods("fulfillment"):
            name = str(pod["metadata"]["name"])
            metrics = http_from(release.kubectl, release.namespace, name,
                                "http://127.0.0.1:9090/metrics", timeout=5)  # fmt: skip
            for line in metrics.get("body", "").splitlines():
                if line.startswith("temporal_worker_task_slots_used{") and (
                    'worker_type="ActivityWorker"' in line and float(line.split()[-1]) > 0
                ):
                    now.add(name)
        found = sorted(now & seen)
        seen.clear()
        seen.update(now)
        return found[0] if found else None

    return wait_until(busy, what="a fulfillment pod in a long payment", timeout=90, interval=1)


@dataclass(frozen=True)
class Retry:
    workflow_id: str
    activity: str
    attempt: int
    scheduled: float
    failure: str


async def retries(client: Client, workflow_ids: list[str]) -> list[Retry]:
    """Every activity of these workflows that needed more than one attempt."""
    found = []
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        scheduled = {}
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = (
                    attrs.activity_type.name,
                    event.event_time.ToDatetime(dt.UTC).timestamp(),
                )
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                if started.attempt > 1:
                    activity, at = scheduled[started.scheduled_event_id]
                    found.append(Retry(workflow_id, activity, started.attempt, at,
                                       started.last_failure.message))  # fmt: skip
    return found


async def test_rollouts_and_crashes_lose_nothing(release: Release, cluster: ClusterHandle) -> None:
    ns, kubectl = release.namespace, release.kubectl
    apply(kubectl, ns, POLICY)
    release.wait_policy(ns, "rollout-purchases")
    sku = f"ROLL-{uuid.uuid4().hex[:8].upper()}"
    with release.forward("backends", 8100) as backends:
        async with httpx.AsyncClient(base_url=f"http://{backends}", timeout=30) as admin:
            stock = await admin.put(f"/inventory/stock/{sku}", json={"on_hand": 1000})
            assert stock.status_code == 200, stock.text
            await set_latency(admin, **LATENCY_MS)

    feed = Feed()
    requests: list[str] = []
    async with httpx.AsyncClient(base_url=release.gateway_url, timeout=60) as api:
        for n in range(APPROVALS):
            asked = await api.post("/v1/approvals", headers=auth("dave"), json={
                "kind": "rollout-purchase", "title": f"Rollout purchase {n}",
                "amount": {"amount_minor": 10_000 + n, "currency": "EUR"},
            })  # fmt: skip
            assert asked.status_code == 201, asked.text
            requests.append(asked.json()["request"]["request_id"])

        feeder = asyncio.create_task(feed_orders(api, feed, sku))

        async def started() -> bool:
            return len(feed.orders) >= 8

        await async_wait_until(started, what="the first orders", timeout=60)

        # Planned: a rolling restart of both workers; their pods drain on SIGTERM.
        feed.mark("planned-start")
        workers = [f"deployment/{RELEASE}-fulfillment", f"deployment/{RELEASE}-approval"]
        await asyncio.to_thread(kubectl, "rollout", "restart", "-n", ns, *workers)
        for deployment in workers:
            await asyncio.to_thread(kubectl, "rollout", "status", "-n", ns, deployment,
                                    "--timeout=300s", timeout=320)  # fmt: skip
        feed.mark("planned-end")
        await asyncio.sleep(SEPARATION)  # the spacing the attribution needs (see SEPARATION)

        # Forced: a pod gone without a chance to drain; its activities time out and retry.
        with release.forward("backends", 8100) as backends:
            async with httpx.AsyncClient(base_url=f"http://{backends}", timeout=30) as admin:
                await set_latency(admin, payment=FORCED_PAYMENT_MS)
                settled = time.monotonic() + LATENCY_MS["payment"] / 1000 + 2
                victim = await asyncio.to_thread(busy_fulfillment_pod, release, settled)
                feed.mark("forced-start")
                await asyncio.to_thread(kubectl, "delete", "pod", "-n", ns, victim, "--force",
                                        "--grace-period=0")  # fmt: skip
                await set_latency(admin, payment=LATENCY_MS["payment"])
        await asyncio.to_thread(release.wait_available, 300)
        restarted = await run(*muster_command("cluster", "restart", "containerd"), timeout=200)
        assert "containerd restarted" in restarted.stdout, restarted.stdout
        await asyncio.to_thread(release.wait_available, 300)
        feed.mark("forced-end")
        await feeder
        assert len(feed.orders) == ORDERS

        # Every order ends, as its kind says.
        ended: dict[str, str] = {}

        async def all_ended() -> bool:
            for placed in feed.orders:
                if placed.order_id in ended:
                    continue
                state = await api.get(f"/v1/orders/{placed.order_id}", headers=auth("shop"))
                if state.status_code == 200 and state.json()["status"] in (
                    "fulfilled",
                    "compensated",
                    "needs_attention",
                ):
                    ended[placed.order_id] = state.json()["status"]
            return len(ended) == ORDERS

        await async_wait_until(all_ended, what="every order to end", timeout=600, interval=2)
        assert {p.order_id: p.outcome for p in feed.orders} == ended

        # Every approval request is still decidable, and ends as decided.
        for n, request_id in enumerate(requests):
            path = f"/v1/approvals/{request_id}"
            if n % 2:
                decided = await api.post(
                    f"{path}/reject", headers=auth("bob"), json={"reason": "not now"}
                )
            else:
                decided = await api.post(f"{path}/approve", headers=auth("alice"))
            assert decided.status_code == 200, decided.text
            assert decided.json()["status"] == ("rejected" if n % 2 else "approved")

    # The ledger: one charge per fulfilled order, nothing kept for a compensated one.
    with release.forward("backends", 8100) as backends:
        async with httpx.AsyncClient(base_url=f"http://{backends}", timeout=60) as admin:
            for backend in LATENCY_MS:
                await admin.put(f"/admin/faults/{backend}", json={})
            ledger = (await admin.get("/payment/ledger")).json()
    ours = {p.order_id: p for p in feed.orders}
    charges: dict[str, list[dict[str, Any]]] = {}
    for charge in ledger["charges"]:
        if charge["order_id"] in ours:
            charges.setdefault(charge["order_id"], []).append(charge)
    refunded = {
        r["order_id"]: r["amount_minor"] for r in ledger["refunds"] if r["order_id"] in ours
    }
    problems = []
    for order_id, placed in ours.items():
        made = charges.get(order_id, [])
        kept = sum(c["amount_minor"] for c in made) - refunded.get(order_id, 0)
        if placed.outcome == "fulfilled" and (len(made) != 1 or kept != placed.total_minor):
            problems.append(
                f"{order_id} fulfilled: charges {made}, refunded {refunded.get(order_id)}"
            )
        if placed.outcome == "compensated" and (len(made) > 1 or kept != 0):
            problems.append(
                f"{order_id} compensated: charges {made}, refunded {refunded.get(order_id)}"
            )
    assert not problems, "\n".join(problems)

    # Retries: none that a planned restart could have caused; some from the forced delete.
    ids = [fulfillment_api.workflow_id(p.order_id) for p in feed.orders]
    ids += [approval_api.workflow_id(r) for r in requests]
    with release.forward("temporal", 7233) as address:
        client = await Client.connect(address)
        found = await retries(client, ids)
    window = feed.marks["forced-start"] - SEPARATION + 5
    planned = [r for r in found if r.scheduled < window]
    forced = [r for r in found if r.scheduled >= window]
    assert feed.marks["planned-end"] < window
    assert not planned, "retries from the planned restarts:\n" + "\n".join(map(str, planned))
    assert forced, f"the forced delete of {victim} caused no retry: is the check blind?"
    print(json.dumps({"marks": feed.marks, "forced_retries": len(forced)}, indent=1))
