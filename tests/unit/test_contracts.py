"""The contracts' input rules: strict JSON types (no coercion), unknown fields refused,
the one-line and free-text marks that entry points check with ``text_problems``, and the
order rules the schema cannot say (a price above zero, a total within Money's range)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from muster_api.approval import ApprovalRequest, Decision
from muster_api.common import FREE_TEXT, ONE_LINE, Money, text_problems
from muster_api.fulfillment import FulfillmentInput, Order

EXAMPLE = json.loads((Path(__file__).parents[2] / "examples/orders/basic.json").read_text())


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"amount_minor": true, "currency": "EUR"}', "valid integer"),
        ('{"amount_minor": "150000", "currency": "EUR"}', "valid integer"),
        ('{"amount_minor": 1.0, "currency": "EUR"}', "not a float"),
        ('{"amount_minor": 1, "currency": "eur"}', "ISO 4217"),
        ('{"amount_minor": 1, "currency": "EUR", "cents": 1}', "Extra inputs"),
    ],
)
def test_money_takes_json_types_as_documented(raw: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Money.model_validate_json(raw)


def test_an_order_is_strict_and_bounded() -> None:
    assert Order.model_validate(EXAMPLE).total == Money(amount_minor=8948, currency="EUR")
    string_quantity = json.loads(json.dumps(EXAMPLE))
    string_quantity["items"][0]["quantity"] = "2"
    with pytest.raises(ValidationError, match="valid integer"):
        Order.model_validate_json(json.dumps(string_quantity))
    free = json.loads(json.dumps(EXAMPLE))
    free["items"][0]["unit_price"]["amount_minor"] = 0
    with pytest.raises(ValidationError, match="more than zero"):
        Order.model_validate(free)
    huge: dict[str, Any] = json.loads(json.dumps(EXAMPLE))
    huge["items"] = [
        {
            "sku": f"SKU-{n}",
            "quantity": 1000,
            "unit_price": {"amount_minor": 10**12, "currency": "EUR"},
        }
        for n in range(20)
    ]
    with pytest.raises(ValidationError, match="total"):
        Order.model_validate(huge)


def test_a_stored_input_decodes_again() -> None:
    """What the converter wrote (strict JSON of the same model) reads back unchanged."""
    stored = FulfillmentInput(order=Order.model_validate(EXAMPLE))
    assert FulfillmentInput.model_validate_json(stored.model_dump_json()) == stored


@pytest.mark.parametrize(
    ("text", "rule", "problem"),
    [
        ("Line one\nLine two", ONE_LINE, "U+000A (line feed) at position 8"),
        ("a\rb", ONE_LINE, "carriage return"),
        ("\x1b[31m", ONE_LINE, "escape"),
        ("a\u2028b", ONE_LINE, "line separator"),
        ("a\x85", ONE_LINE, "U+0085"),
        ("a\ud800", ONE_LINE, "U+D800"),
        ("bell\x07", FREE_TEXT, "may hold line breaks and tabs"),
        ("nul\x00", FREE_TEXT, "NUL"),
    ],
)
def test_text_rules_name_the_character_and_where(text: str, rule: Any, problem: str) -> None:
    found = rule.problem(text)
    assert found is not None
    assert problem in found


@pytest.mark.parametrize("text", ["Schreibtisch für Ärger 🪑", "", "ünïcödé", "a\u202eb"])
def test_one_line_text_may_be_any_printable_unicode(text: str) -> None:
    assert ONE_LINE.problem(text) is None


def test_a_tab_is_not_one_line_text() -> None:
    assert "tab" in (ONE_LINE.problem("a\tb") or "")


def test_free_text_may_hold_line_breaks_and_tabs() -> None:
    assert FREE_TEXT.problem("first\r\nsecond\tthird") is None


def test_text_problems_walks_models_lists_and_maps() -> None:
    request = ApprovalRequest(
        request_id="r-1", kind="purchase", requester="dave", title="Desk\nBCC: x",
        policy="p", description="fine\nfine", context={"ok": "ok", "bad\n": "v\x00"},
    )  # fmt: skip
    where = [loc for loc, _ in text_problems(request)]
    assert where == [("title",), ("context", "bad\n", "(key)"), ("context", "bad\n")]
    order = Order.model_validate(EXAMPLE)
    broken = order.model_copy(
        update={"shipping_address": order.shipping_address.model_copy(update={"line2": "a\tb"})}
    )
    assert [loc for loc, _ in text_problems(broken)] == [("shipping_address", "line2")]
    decision = Decision(approver="alice", verdict="reject", reason="no\n\tway")
    assert text_problems(decision) == []
