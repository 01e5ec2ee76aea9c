"""``muster-orders place --wait`` says how an order ended in one line: fulfilled,
compensated with the business reason in words, needs attention with what is owed and the
command that resolves it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from muster_api.fulfillment import OrderState
from muster_fulfillment.cli import failure_words, outcome_line

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def state(status: str, **more: Any) -> OrderState:
    return OrderState.model_validate({
        "order_id": "demo-1", "status": status, "steps": [],
        "total": {"amount_minor": 123_750, "currency": "EUR"}, **more,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        ("CardDeclined: payment refused (402): the card was declined",
         "card declined (payment refused (402): the card was declined)"),
        ("OutOfStock: inventory refused (409): 3 of GADGET-2 wanted, 1 on hand",
         "out of stock (inventory refused (409): 3 of GADGET-2 wanted, 1 on hand)"),
        ("UnknownSku: inventory refused (422): no such SKU",
         "unknown SKU (inventory refused (422): no such SKU)"),
        ("cancelled on request", "cancelled on request"),
        (None, "no reason recorded"),
    ],
)  # fmt: skip
def test_failures_in_words(failure: str | None, words: str) -> None:
    assert failure_words(failure) == words


def test_outcome_lines() -> None:
    assert outcome_line(state("fulfilled", tracking_number="MU1")) == (
        "order demo-1: fulfilled (1,237.50 EUR, tracking number MU1)"
    )
    assert (
        outcome_line(
            state(
                "compensated", failure="CardDeclined: payment refused (402): the card was declined"
            )
        )
        == "order demo-1: compensated: card declined (payment refused (402): the card was declined)"
    )
    attention = {"reason": "AddressRejected: shipping refused (422): no such street",
                 "failed_compensations": ["charge"], "since": AT}  # fmt: skip
    assert outcome_line(state("needs_attention", attention=attention)) == (
        "order demo-1: needs attention: address rejected (shipping refused (422): no such "
        "street); still owed: charge (muster-orders resolve demo-1 --action "
        "retry_compensation|mark_resolved)"
    )
    assert outcome_line(state("resolved", resolution_note="carol: refunded by hand")) == (
        "order demo-1: resolved by a person: carol: refunded by hand"
    )
