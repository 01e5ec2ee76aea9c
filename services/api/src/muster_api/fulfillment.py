"""Contracts of the order fulfillment saga: orders, steps, results, resolutions, and the
names and ids a client needs to start and talk to an ``OrderFulfillment`` workflow.

Everything that crosses a boundary (the HTTP edge, the workflow, an activity, a backend)
is one of these models, validated where it enters. Amounts are :class:`Money` (integer
minor units), never floats.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from muster_api import search_attributes as sa
from muster_api.approval import TASK_QUEUE as APPROVAL_TASK_QUEUE
from muster_api.common import FreeText, Identifier, Money, OneLine

__all__ = [
    "Address",
    "AttentionInfo",
    "FulfillmentInput",
    "FulfillmentOptions",
    "Identifier",
    "Money",
    "Order",
    "OrderItem",
    "OrderResult",
    "OrderState",
    "OrderStatus",
    "ResolveInput",
    "StepRecord",
    "start_attributes",
]

TASK_QUEUE = "muster-fulfillment"
"""Task queue the fulfillment worker polls."""
WORKFLOW = "OrderFulfillment"
"""Workflow type of the saga."""
STATE_QUERY = "state"
"""Query that returns the :class:`OrderState`."""
RESOLVE_UPDATE = "resolve"
"""Update with which a person resolves an order that needs attention (:class:`ResolveInput`)."""


def workflow_id(order_id: str) -> str:
    """The workflow id of an order: one workflow per order id, ever."""
    return f"order-{order_id}"


Sku = str


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    sku: Sku = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$", description="stock keeping unit")
    # Left out of the serialized form when unset, so orders without names travel exactly
    # as before (workflow inputs and activity arguments are part of recorded histories).
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="what the shop calls the item (approvers see it)",
        exclude_if=lambda value: value is None,
    )
    quantity: int = Field(ge=1, le=1000)
    unit_price: Money

    @field_validator("unit_price")
    @classmethod
    def _priced(cls, value: Money) -> Money:
        if value.amount_minor == 0:
            raise ValueError("an item's unit price must be more than zero")
        return value


class Address(BaseModel):
    """Where the parcel goes."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: OneLine = Field(min_length=1, max_length=100)
    line1: OneLine = Field(min_length=1, max_length=200)
    line2: OneLine | None = Field(default=None, max_length=200)
    city: OneLine = Field(min_length=1, max_length=100)
    postal_code: OneLine = Field(min_length=2, max_length=16)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


MAX_TOTAL_MINOR = 10**13
"""The largest order total, in minor units (what :class:`Money` carries)."""


class Order(BaseModel):
    """An order as the shop submits it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    order_id: Identifier
    customer_id: OneLine = Field(min_length=1, max_length=128)
    customer_email: OneLine = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    items: list[OrderItem] = Field(min_length=1, max_length=100)
    shipping_address: Address
    payment_token: str = Field(pattern=r"^tok_[A-Za-z0-9_]{1,64}$")

    @model_validator(mode="after")
    def _one_currency_and_unique_skus(self) -> Self:
        currencies = {item.unit_price.currency for item in self.items}
        if len(currencies) > 1:
            raise ValueError(f"all items must use one currency, got {sorted(currencies)}")
        skus = [item.sku for item in self.items]
        duplicates = sorted({s for s in skus if skus.count(s) > 1})
        if duplicates:
            raise ValueError(f"each SKU may appear once; repeated: {', '.join(duplicates)}")
        total = sum(item.unit_price.amount_minor * item.quantity for item in self.items)
        if total > MAX_TOTAL_MINOR:
            raise ValueError(
                f"the order's total ({total} minor units) is more than {MAX_TOTAL_MINOR}"
            )
        return self

    @property
    def total(self) -> Money:
        """Sum of quantity x unit price."""
        total = Money.zero(self.items[0].unit_price.currency)
        for item in self.items:
            total = total + item.unit_price.times(item.quantity)
        return total


class FulfillmentOptions(BaseModel):
    """Per-order knobs with production defaults; tests shorten the timings."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    step_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    step_max_attempts: int = Field(default=10, ge=1, le=100)
    retry_initial_seconds: float = Field(default=1.0, gt=0)
    retry_max_interval_seconds: float = Field(default=30.0, gt=0)
    compensation_max_attempts: int = Field(default=10, ge=1, le=1000)
    parallel_compensation: bool = False
    approval_task_queue: str = APPROVAL_TASK_QUEUE


class FulfillmentInput(BaseModel):
    """The workflow's one input."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    order: Order
    options: FulfillmentOptions = FulfillmentOptions()


class OrderStatus(StrEnum):
    """Where an order is; the last four are where it ends (or waits for a person)."""

    RECEIVED = "received"
    RESERVING = "reserving"
    AWAITING_APPROVAL = "awaiting_approval"
    CHARGING = "charging"
    SHIPPING = "shipping"
    CONFIRMING = "confirming"
    COMPENSATING = "compensating"
    FULFILLED = "fulfilled"
    COMPENSATED = "compensated"
    NEEDS_ATTENTION = "needs_attention"
    RESOLVED = "resolved"


StepName = Literal["reserve", "approval", "charge", "ship", "confirm", "failure-notice"]


Phase = Literal["do", "undo"]
Outcome = Literal["started", "succeeded", "failed", "skipped"]


class StepRecord(BaseModel):
    """One entry of the order's step history (forward steps and compensations)."""

    model_config = ConfigDict(frozen=True)

    step: str
    phase: Phase
    outcome: Outcome
    at: datetime
    detail: str = ""


class AttentionInfo(BaseModel):
    """Why an order waits for a person, and which compensations are still owed."""

    model_config = ConfigDict(frozen=True)

    reason: str
    failed_compensations: list[str]
    since: datetime


class ResolveInput(BaseModel):
    """A person's resolution of an order that needs attention (the ``resolve`` update)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    action: Literal["retry_compensation", "mark_resolved"]
    operator: OneLine = Field(min_length=1, max_length=128, description="who resolves it")
    note: FreeText = Field(default="", max_length=2000)


class OrderState(BaseModel):
    """What the ``status`` query returns."""

    order_id: str
    status: OrderStatus
    total: Money
    steps: list[StepRecord]
    failure: str | None = None
    attention: AttentionInfo | None = None
    reservation_id: str | None = None
    charge_id: str | None = None
    shipment_id: str | None = None
    tracking_number: str | None = None
    approval: str | None = None
    resolution_note: str | None = None


class OrderResult(BaseModel):
    """How the order ended: fulfilled, compensated or resolved by a person."""

    order_id: str
    status: OrderStatus
    total: Money
    failure: str | None = None
    charge_id: str | None = None
    shipment_id: str | None = None
    tracking_number: str | None = None
    resolution_note: str | None = None
    steps: list[StepRecord]


def start_attributes(order: Order) -> TypedSearchAttributes:
    """Search attributes to start an order's workflow with (saves the workflow an upsert)."""
    total = order.total
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.PATTERN, "fulfillment"),
            SearchAttributePair(sa.STATUS, "in_progress"),
            SearchAttributePair(sa.BUSINESS_KEY, order.order_id),
            SearchAttributePair(sa.REQUESTER, order.customer_id),
            SearchAttributePair(sa.AMOUNT_MINOR, total.amount_minor),
            SearchAttributePair(sa.CURRENCY, total.currency),
            SearchAttributePair(sa.NEEDS_ATTENTION, False),
        ]
    )


def approval_request_id(order_id: str) -> str:
    """The approval request a large order waits on (its approvers may view the order)."""
    return f"order-{order_id}"
