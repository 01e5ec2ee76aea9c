"""Shared pieces of the fulfillment tests: the reference backends as a real process, orders,
ledgers, and a stand-in registered under the approval workflow's real name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio import workflow

from muster_api.approval import WORKFLOW as APPROVAL_WORKFLOW
from muster_api.approval import ApprovalRequest, ApprovalResult
from muster_api.common import Money
from muster_api.fulfillment import Address, Order, OrderItem
from muster_dev.process import ManagedProcess
from tests.helpers import free_port, http_get, start_service, wait_until


@dataclass
class BackendsProcess:
    """A running ``python -m muster_backends`` and how to talk to it."""

    process: ManagedProcess
    api: str
    management: str
    data_dir: Path

    def urls_env(self, prefix: str = "MUSTER_FULFILLMENT_BACKENDS__") -> dict[str, str]:
        """Variables pointing a fulfillment worker at these backends."""
        return {f"{prefix}{n.upper()}": f"{self.api}/{n}" for n in BACKEND_NAMES}

    def urls(self) -> dict[str, str]:
        """Base URL per backend."""
        return {n: f"{self.api}/{n}" for n in BACKEND_NAMES}

    def get(self, path: str) -> Any:
        response = httpx.get(self.api + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_stock(self, sku: str, on_hand: int) -> None:
        httpx.put(f"{self.api}/inventory/stock/{sku}", json={"on_hand": on_hand}, timeout=10)

    def stock(self, sku: str) -> int:
        rows = {r["sku"]: r["on_hand"] for r in self.get("/inventory/stock")}
        return int(rows[sku])

    def fault(self, backend: str, **fault: Any) -> None:
        response = httpx.put(f"{self.api}/admin/faults/{backend}", json=fault, timeout=10)
        response.raise_for_status()

    def clear_faults(self) -> None:
        for name in BACKEND_NAMES:
            self.fault(name)


BACKEND_NAMES = ("inventory", "payment", "shipping", "notification")


def start_backends(tmp: Path, extra_env: dict[str, str] | None = None) -> BackendsProcess:
    """Start the reference backends on free ports with a fresh data folder."""
    port, api_port = free_port(), free_port()
    data = tmp / "backends-data"
    env = {
        "MUSTER_BACKENDS_HTTP__HOST": "127.0.0.1",
        "MUSTER_BACKENDS_HTTP__PORT": str(port),
        "MUSTER_BACKENDS_API__HOST": "127.0.0.1",
        "MUSTER_BACKENDS_API__PORT": str(api_port),
        "MUSTER_BACKENDS_DATA_DIR": str(data),
        "MUSTER_BACKENDS_INITIAL_STOCK": "{}",
        **(extra_env or {}),
    }
    process = start_service("muster_backends", env, tmp / "backends.log")
    management = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.running(), process.tail()
        try:
            return http_get(management + "/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    wait_until(ready, what="backends ready", timeout=60)
    return BackendsProcess(process, f"http://127.0.0.1:{api_port}", management, data)


def sku() -> str:
    """A SKU no other test uses."""
    return f"T-{uuid.uuid4().hex[:10].upper()}"


def order(
    items: list[tuple[str, int, int]],
    *,
    token: str = "tok_visa",
    postal_code: str = "10115",
    country: str = "DE",
    currency: str = "EUR",
) -> Order:
    """An order of ``(sku, quantity, unit price in cents)`` lines."""
    return Order(
        order_id=f"o-{uuid.uuid4().hex[:12]}",
        customer_id="cust-1",
        customer_email="buyer@example.com",
        items=[
            OrderItem(sku=s, quantity=q, unit_price=Money(amount_minor=p, currency=currency))
            for s, q, p in items
        ],
        shipping_address=Address(
            name="Grace Hopper", line1="1 Compiler St", city="Berlin", postal_code=postal_code,
            country=country,
        ),
        payment_token=token,
    )  # fmt: skip


@workflow.defn(name=APPROVAL_WORKFLOW, sandboxed=False)
class ApprovalStandIn:
    """Registered under the approval workflow's real name until the approval worker exists:
    waits for a ``decide`` signal (approve or reject with a reason)."""

    def __init__(self) -> None:
        self.decision: tuple[bool, str] | None = None

    @workflow.signal
    def decide(self, approved: bool, reason: str) -> None:
        self.decision = (approved, reason)

    @workflow.run
    async def run(self, request: ApprovalRequest) -> ApprovalResult:
        await workflow.wait_condition(lambda: self.decision is not None)
        assert self.decision is not None
        approved, reason = self.decision
        return ApprovalResult(
            request_id=request.request_id,
            approved=approved,
            status="approved" if approved else "rejected",
            decided_by=["boss"],
            reason=reason or None,
        )


def undo_sequence(steps: list[Any]) -> list[str]:
    """The compensations that succeeded, in the order they ran."""
    return [s.step for s in steps if s.phase == "undo" and s.outcome == "succeeded"]


def iter_lines(text: str) -> Iterator[str]:
    yield from (line for line in text.splitlines() if line.strip())
