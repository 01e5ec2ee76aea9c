"""Request and response models of the reference backends (their public HTTP contract)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header
from pydantic import BaseModel, ConfigDict, Field

from muster_api.common import Identifier, Money

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Same key + same request = same answer; same key + other request = 422",
    ),
]

Sku = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]


class Strict(BaseModel):
    """JSON types as documented, no coercion ("2" is not 2, true is not 1); unknown fields
    are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ItemLine(Strict):
    """A quantity of one SKU."""

    sku: Sku
    quantity: int = Field(ge=1, le=1000)


class ReserveRequest(Strict):
    """Reserve all items of an order, or none."""

    order_id: Identifier
    items: list[ItemLine] = Field(min_length=1, max_length=100)


class ReleaseRequest(Strict):
    """Give back what was reserved under ``reservation_key`` (or void it if nothing was)."""

    order_id: Identifier
    reservation_key: str = Field(min_length=1, max_length=255)


class StockLevel(Strict):
    """Set the stock on hand of a SKU (an inventory count)."""

    on_hand: int = Field(ge=0, le=10**9)


class ChargeRequest(Strict):
    """Charge an amount to a payment token."""

    order_id: Identifier
    amount: Money
    payment_token: str = Field(pattern=r"^tok_[A-Za-z0-9_]{1,64}$")


class RefundRequest(Strict):
    """Refund (in full) the charge made under ``charge_key`` (or void it if none was)."""

    order_id: Identifier
    charge_key: str = Field(min_length=1, max_length=255)


class ShippingAddress(Strict):
    """Where a parcel goes."""

    name: str = Field(min_length=1, max_length=100)
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=2, max_length=16)
    country: str = Field(pattern=r"^[A-Z]{2}$")


class ShipmentRequest(Strict):
    """Book a shipment."""

    order_id: Identifier
    address: ShippingAddress
    items: list[ItemLine] = Field(min_length=1, max_length=100)


class CancelShipmentRequest(Strict):
    """Cancel the shipment booked under ``shipment_key`` (or void it if none was)."""

    order_id: Identifier
    shipment_key: str = Field(min_length=1, max_length=255)


class MessageRequest(Strict):
    """Send a templated message to a customer."""

    order_id: Identifier
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    template: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    data: dict[str, str] = Field(default_factory=dict)


class Fault(Strict):
    """Fault injection for one backend (applies to its POST operations)."""

    error_rate: float = Field(default=0.0, ge=0, le=1, description="503 before doing anything")
    latency_ms: int = Field(default=0, ge=0, le=60_000, description="added before answering")
    lost_response_rate: float = Field(
        default=0.0, ge=0, le=1, description="do the work, then answer too late for the caller"
    )
    lost_response_delay_seconds: float = Field(default=30.0, ge=0, le=600)
    paths: list[str] | None = Field(
        default=None,
        description="only these POST paths (e.g. /payment/refunds); all of the backend if unset",
    )
