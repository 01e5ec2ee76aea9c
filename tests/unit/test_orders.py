"""Order contracts validated at the edge: money in integer minor units, one currency per
order, unique SKUs, and clear messages for what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from muster_api.common import Money
from muster_api.fulfillment import Order
from tests.fulfillment_support import order


def test_total_in_minor_units() -> None:
    placed = order([("WIDGET-1", 2, 1999), ("GADGET-2", 1, 4950)])
    assert placed.total == Money(amount_minor=8948, currency="EUR")
    assert str(placed.total) == "89.48 EUR"


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (19.99, "not a float"),
        (-1, "greater than or equal to 0"),
    ],
)
def test_money_refuses_floats_and_negatives(amount: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Money.model_validate({"amount_minor": amount, "currency": "EUR"})


def test_currency_is_iso_4217() -> None:
    with pytest.raises(ValidationError, match="three-letter ISO 4217"):
        Money(amount_minor=1, currency="euro")
    with pytest.raises(ValueError, match="cannot add USD to EUR"):
        _ = Money(amount_minor=1, currency="EUR") + Money(amount_minor=1, currency="USD")


def test_one_currency_per_order() -> None:
    good = order([("A-1", 1, 100)]).model_dump()
    good["items"].append(
        {"sku": "B-2", "quantity": 1, "unit_price": {"amount_minor": 1, "currency": "USD"}}
    )
    with pytest.raises(ValidationError, match="one currency"):
        Order.model_validate(good)


def test_repeated_sku_is_refused() -> None:
    data = order([("A-1", 1, 100)]).model_dump()
    data["items"].append(dict(data["items"][0]))
    with pytest.raises(ValidationError, match="repeated: A-1"):
        Order.model_validate(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("order_id", "has spaces", "should match pattern"),
        ("customer_email", "not-an-email", "should match pattern"),
        ("payment_token", "4111111111111111", "should match pattern"),
        ("items", [], "at least 1 item"),
    ],
)
def test_bad_fields_name_the_field(field: str, value: object, message: str) -> None:
    data = order([("A-1", 1, 100)]).model_dump()
    data[field] = value
    with pytest.raises(ValidationError) as exc:
        Order.model_validate(data)
    assert field in str(exc.value)
    assert message in str(exc.value)


def test_unknown_fields_are_refused() -> None:
    data = order([("A-1", 1, 100)]).model_dump()
    data["coupon"] = "FREE"
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Order.model_validate(data)
