"""The fulfillment activities: calls to the inventory, payment, shipping and notification
backends, each carrying an idempotency key, with business failures made non-retryable.

:class:`FulfillmentActivities` holds the HTTP client and the backend URLs; the worker
registers its bound methods. A business failure (out of stock, card declined, address
rejected, the step already compensated) is an ``ApplicationError`` with
``non_retryable=True`` so the saga compensates at once; network errors, timeouts and 5xx
responses propagate and are retried with backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import httpx
from opentelemetry import propagate, trace
from pydantic import BaseModel, ConfigDict
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from muster_api.common import Money
from muster_api.fulfillment import Address, OrderItem
from muster_fulfillment.models import ApprovalRequirement

tracer = trace.get_tracer("muster.fulfillment")

# Problem types (RFC 9457 "type") the backends use for failures no retry can fix.
BUSINESS_FAILURES = {
    "urn:muster:problem:out-of-stock": "OutOfStock",
    "urn:muster:problem:unknown-sku": "UnknownSku",
    "urn:muster:problem:card-declined": "CardDeclined",
    "urn:muster:problem:address-rejected": "AddressRejected",
    "urn:muster:problem:compensated": "AlreadyCompensated",
}

APPROVAL_REQUIRED = "ApprovalRequired"
"""Error type of a charge refused for want of an approval; its one detail is the
:class:`ApprovalRequirement` (which policy decides, from which threshold)."""


class ReserveInput(BaseModel):
    """Reserve an order's items under the step's key (``<order_id>-reserve``)."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    items: list[OrderItem]
    idempotency_key: str


class ChargeInput(BaseModel):
    """Charge an order's total to its payment token.

    A total at or above the approval threshold of its currency is charged only with
    ``approval`` set (the approval request that granted it); without it the step refuses
    with :data:`APPROVAL_REQUIRED` before it calls the payment backend.
    """

    model_config = ConfigDict(frozen=True)

    order_id: str
    amount: Money
    payment_token: str
    idempotency_key: str
    approval: str | None = None


class ShipInput(BaseModel):
    """Book the shipment of an order's items to its address."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    address: Address
    items: list[OrderItem]
    idempotency_key: str


class UndoInput(BaseModel):
    """A compensation: the key of the step it undoes and its own (``<...>-undo``) key."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    idempotency_key: str
    step_key: str


class ReserveResult(BaseModel):
    """The inventory's reservation."""

    reservation_id: str


class ChargeResult(BaseModel):
    """The payment's charge."""

    charge_id: str
    amount: Money


class ShipResult(BaseModel):
    """The shipment and its tracking number."""

    shipment_id: str
    tracking_number: str


class UndoResult(BaseModel):
    """Whether there was something to undo (there may not be: the step may never have run)."""

    undone: bool
    detail: str = ""


class NoticeInput(BaseModel):
    """A message to the customer about their order."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    email: str
    template: Literal["order_confirmed", "order_failed"]
    idempotency_key: str
    reason: str | None = None
    tracking_number: str | None = None


class BackendError(Exception):
    """A backend answered with something this client cannot use."""


class Backends:
    """HTTP access to the four backends with idempotency keys and trace propagation."""

    def __init__(self, client: httpx.AsyncClient, urls: dict[str, str]) -> None:
        self.client = client
        self.urls = urls

    async def post(self, backend: str, path: str, key: str, body: dict[str, Any]) -> Any:
        """POST with ``Idempotency-Key``; business problems become non-retryable errors."""
        url = self.urls[backend].rstrip("/") + path
        with tracer.start_as_current_span(
            f"POST {backend}{path}",
            kind=trace.SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "url.full": url, "muster.backend": backend},
        ) as span:
            headers = {"Idempotency-Key": key}
            propagate.inject(headers)
            response = await self.client.post(url, json=body, headers=headers)
            span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code < 300:
            return response.json()
        problem = _problem(response)
        kind = BUSINESS_FAILURES.get(str(problem.get("type", "")))
        what = problem.get("detail") or problem.get("title") or response.text[:200]
        message = f"{backend} refused ({response.status_code}): {what}"
        if kind is not None:
            # Expected (a declined card, an empty shelf): one line in the log, no traceback
            # (the SDK logs a benign failure's traceback at DEBUG only), and no retries.
            activity.logger.info("%s: %s; the order is compensated", kind, message)
            raise ApplicationError(
                message,
                problem,
                type=kind,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            )
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            # A contract violation (or a reused idempotency key): retrying cannot help.
            raise ApplicationError(message, problem, type="BackendRejected", non_retryable=True)
        raise BackendError(message)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class FulfillmentActivities:
    """The activities, bound to one HTTP client and one configuration."""

    def __init__(
        self, backends: Backends, approval_thresholds: dict[str, int], policy: str
    ) -> None:
        self.backends = backends
        self.approval_thresholds = approval_thresholds
        self.approval_policy = policy

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, bound to this instance: what a fulfillment worker registers."""
        return [
            self.reserve_inventory, self.release_inventory, self.charge_payment,
            self.refund_payment, self.create_shipment, self.cancel_shipment,
            self.send_notification,
        ]  # fmt: skip

    def approval_requirement(self, amount: Money) -> ApprovalRequirement | None:
        """The approval a charge of ``amount`` needs: from the threshold of its currency on."""
        threshold = self.approval_thresholds.get(amount.currency)
        if threshold is None or amount.amount_minor < threshold:
            return None
        return ApprovalRequirement(
            policy=self.approval_policy,
            threshold=Money(amount_minor=threshold, currency=amount.currency),
        )

    @activity.defn(name="fulfillment.reserve_inventory")
    async def reserve_inventory(self, request: ReserveInput) -> ReserveResult:
        """Reserve every item, all or nothing."""
        body = {
            "order_id": request.order_id,
            "items": [{"sku": i.sku, "quantity": i.quantity} for i in request.items],
        }
        data = await self.backends.post("inventory", "/reservations", request.idempotency_key, body)
        return ReserveResult(reservation_id=str(data["reservation_id"]))

    @activity.defn(name="fulfillment.release_inventory")
    async def release_inventory(self, request: UndoInput) -> UndoResult:
        """Compensation: give the reserved stock back (or void a reservation never made)."""
        body = {"order_id": request.order_id, "reservation_key": request.step_key}
        data = await self.backends.post(
            "inventory", "/reservations/release", request.idempotency_key, body
        )
        return UndoResult(undone=bool(data["released"]), detail=str(data.get("detail", "")))

    @activity.defn(name="fulfillment.charge_payment")
    async def charge_payment(self, request: ChargeInput) -> ChargeResult:
        """Charge the order's total to its payment token, if it needs no approval or has one.

        The threshold is this worker's configuration, so the step that moves the money
        enforces it; the refusal (before any backend call) is recorded in the workflow's
        history, and the workflow asks for the approval and charges again.
        """
        requirement = self.approval_requirement(request.amount)
        if requirement is not None and not request.approval:
            activity.logger.info(
                "%s needs an approval under policy %s; the order waits for it",
                request.amount,
                requirement.policy,
            )
            raise ApplicationError(
                f"a charge of {request.amount.display()} needs an approval under policy "
                f"{requirement.policy} (from {requirement.threshold.display()} on)",
                requirement,
                type=APPROVAL_REQUIRED,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            )
        body = {
            "order_id": request.order_id,
            "amount": request.amount.model_dump(),
            "payment_token": request.payment_token,
        }
        data = await self.backends.post("payment", "/charges", request.idempotency_key, body)
        return ChargeResult(charge_id=str(data["charge_id"]), amount=Money(**data["amount"]))

    @activity.defn(name="fulfillment.refund_payment")
    async def refund_payment(self, request: UndoInput) -> UndoResult:
        """Compensation: refund the charge in full (or void a charge never made)."""
        body = {"order_id": request.order_id, "charge_key": request.step_key}
        data = await self.backends.post("payment", "/refunds", request.idempotency_key, body)
        return UndoResult(undone=bool(data["refunded"]), detail=str(data.get("detail", "")))

    @activity.defn(name="fulfillment.create_shipment")
    async def create_shipment(self, request: ShipInput) -> ShipResult:
        """Book the shipment to the order's address."""
        body = {
            "order_id": request.order_id,
            "address": request.address.model_dump(),
            "items": [{"sku": i.sku, "quantity": i.quantity} for i in request.items],
        }
        data = await self.backends.post("shipping", "/shipments", request.idempotency_key, body)
        return ShipResult(
            shipment_id=str(data["shipment_id"]), tracking_number=str(data["tracking_number"])
        )

    @activity.defn(name="fulfillment.cancel_shipment")
    async def cancel_shipment(self, request: UndoInput) -> UndoResult:
        """Compensation: cancel the shipment (or void one never booked)."""
        body = {"order_id": request.order_id, "shipment_key": request.step_key}
        data = await self.backends.post(
            "shipping", "/shipments/cancel", request.idempotency_key, body
        )
        return UndoResult(undone=bool(data["cancelled"]), detail=str(data.get("detail", "")))

    @activity.defn(name="fulfillment.send_notification")
    async def send_notification(self, request: NoticeInput) -> str:
        """Tell the customer (once per order and event: the key makes it so)."""
        data: dict[str, str] = {"order_id": request.order_id}
        if request.reason:
            data["reason"] = request.reason
        if request.tracking_number:
            data["tracking_number"] = request.tracking_number
        body = {
            "order_id": request.order_id,
            "to": request.email,
            "template": request.template,
            "data": data,
        }
        result = await self.backends.post(
            "notification", "/messages", request.idempotency_key, body
        )
        return str(result["message_id"])
