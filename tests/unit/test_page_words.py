"""What the approver page says: statuses in words, amounts with thousands grouped, order
lines with their totals, and audit trails and order steps as sentences without internal
names, hashes or Python reprs (including what older workflow code recorded)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from muster_api.approval import AuditEntry, DecisionRecord
from muster_api.common import Money
from muster_api.fulfillment import Order, StepRecord
from muster_gateway import view

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NAMES = {"alice": "Alice Approver", "dave": "Dave Developer"}
LARGE = Order.model_validate({
    "order_id": "demo-big-1", "customer_id": "cust-42", "customer_email": "ada@example.com",
    "items": [{"sku": "GADGET-2", "name": "Gadget, model 2", "quantity": 25,
               "unit_price": {"amount_minor": 4950, "currency": "EUR"}},
              {"sku": "WIDGET-1", "quantity": 1_000,
               "unit_price": {"amount_minor": 1999, "currency": "EUR"}}],
    "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical Way",
                         "city": "London", "postal_code": "N1 9GU", "country": "GB"},
    "payment_token": "tok_visa",
})  # fmt: skip


@pytest.mark.parametrize(
    ("minor", "text"),
    [
        (0, "0.00 EUR"),
        (5, "0.05 EUR"),
        (123_750, "1,237.50 EUR"),
        (10**13, "100,000,000,000.00 EUR"),
    ],
)
def test_money_groups_thousands(minor: int, text: str) -> None:
    assert view.money(Money(amount_minor=minor, currency="EUR")) == text


def test_no_amount_is_a_dash() -> None:
    assert view.money(None) == "—"


@pytest.mark.parametrize(
    ("status", "order", "words"),
    [
        ("awaiting_approval", True, "awaiting approval"),
        ("needs_attention", True, "needs attention"),
        ("fulfilled", True, "fulfilled"),
        ("approved_on_timeout", False, "approved on timeout"),
        ("cancelled", False, "withdrawn"),
        ("something_new", False, "something new"),
    ],
)
def test_statuses_are_words(status: str, order: bool, words: str) -> None:
    assert view.status_words(status, order=order) == words


def test_order_lines_and_total() -> None:
    lines = view.order_lines(LARGE)
    assert lines[0] == view.Line("GADGET-2", "Gadget, model 2", "25", "49.50 EUR", "1,237.50 EUR")
    assert lines[1] == view.Line("WIDGET-1", "—", "1,000", "19.99 EUR", "19,990.00 EUR")
    assert view.money(LARGE.total) == "21,227.50 EUR"
    assert view.address_lines(LARGE.shipping_address) == [
        "Ada Lovelace", "12 Analytical Way", "N1 9GU London", "GB"
    ]  # fmt: skip


def test_an_order_without_names_serializes_as_before() -> None:
    plain = {"sku": "WIDGET-1", "quantity": 1, "unit_price": {"amount_minor": 1, "currency": "EUR"}}
    order = LARGE.model_copy(update={"items": [LARGE.items[1].model_validate(plain)]})
    assert "name" not in order.model_dump(mode="json")["items"][0]


def entry(actor: str, event: str, detail: str = "") -> AuditEntry:
    return AuditEntry(at=AT, actor=actor, event=event, detail=detail)


@pytest.mark.parametrize(
    ("recorded", "said"),
    [
        (entry("dave", "requested", "New laptop"), "Dave Developer asked for approval"),
        (entry("muster", "policy pinned", "large-orders sha256:ee46f0d98803"),
         "Policy large-orders applies"),
        (entry("muster", "approvers asked", "level 0: alice, bob"), "Asked alice, bob to decide"),
        (entry("muster", "escalated", "level 1: carol"), "Escalated to carol"),
        (entry("alice", "approved", "fine (via web)"), "Alice Approver approved: fine (via web)"),
        (entry("alice", "approved", ""), "Alice Approver approved"),
        (entry("alice", "rejectd", "no budget"), "Alice Approver rejected: no budget"),
        (entry("alice", "rejected", "no budget"), "Alice Approver rejected: no budget"),
        (entry("muster", "approved", ""), "The request is approved"),
        (entry("muster", "rejected_on_timeout", ""), "The request is rejected on timeout"),
        (entry("muster", "rejected", "policy p governs kinds ['vacation'], not 'purchase'"),
         "The request is rejected: policy p governs kinds vacation, not purchase"),
        (entry("muster", "timed out", "nobody decided in time; the policy says Reject"),
         "Time ran out: nobody decided in time; the policy says Reject"),
        (entry("muster", "reminder", "alice, bob"), "Reminded alice, bob"),
        (entry("muster", "notified", "requested: alice, bob"),
         "E-mailed alice, bob about the request"),
        (entry("muster", "notified", "decided: no e-mail and webhook"),
         "No one to e-mail about the outcome (and posted to the webhook)"),
        (entry("muster", "notification failed", "requested: cannot be delivered: 550 no"),
         "Could not tell people about the request: cannot be delivered: 550 no"),
        (entry("muster", "notification abandoned", "decided: still not delivered"),
         "Gave up telling people about the outcome: still not delivered"),
        (entry("muster", "notified", "withdrawn: dave"),
         "E-mailed dave that it was withdrawn"),
        (entry("erin", "decision ignored", "not an approver"),
         "Ignored a decision by erin: not an approver"),
        (entry("muster", "cancelled", "the request was withdrawn"), "The request was withdrawn"),
    ],
)  # fmt: skip
def test_audit_lines_are_sentences(recorded: AuditEntry, said: str) -> None:
    line = view.audit_line(recorded, NAMES)
    assert line == said
    assert not re.search(r"sha256|\[|_", line)


def test_decisions_are_sentences() -> None:
    record = DecisionRecord(
        approver="alice", verdict="reject", reason="too dear", at=AT, level=0, via="web"
    )
    assert view.decision_line(record, NAMES) == "Alice Approver rejected: too dear"


@pytest.mark.parametrize(
    ("step", "phase", "outcome", "detail", "said"),
    [
        ("reserve", "do", "succeeded", "", "Reserve stock: done"),
        ("reserve", "undo", "succeeded", "released", "Release the stock: done (released)"),
        ("charge", "do", "skipped", "a charge needs an approval",
         "Charge the payment: paused (a charge needs an approval)"),
        ("charge", "do", "skipped",
         "ApprovalRequired: a charge of 1237.50 EUR needs an approval under policy "
         "'large-orders' (threshold 1000.00 EUR)",
         "Charge the payment: paused (a charge of 1237.50 EUR needs an approval under policy "
         "large-orders (threshold 1000.00 EUR))"),
        ("charge", "do", "failed", "CardDeclined: payment refused (402): card declined",
         "Charge the payment: failed (payment refused (402): card declined)"),
        ("approval", "do", "started", "policy large-orders",
         "Approval: started (under policy large-orders)"),
        ("approval", "do", "succeeded", "approved by ['alice']",
         "Approval: done (approved by alice)"),
        ("approval", "do", "succeeded", "approved by alice, bob",
         "Approval: done (approved by alice, bob)"),
        ("failure-notice", "do", "succeeded", "", "Tell the customer it failed: done"),
        ("ship", "undo", "failed", "shipping refused",
         "Cancel the shipment: failed (shipping refused)"),
        ("new-step", "undo", "started", "", "Undo: new step: started"),
    ],
)  # fmt: skip
def test_order_steps_are_words(step: str, phase: str, outcome: str, detail: str, said: str) -> None:
    record = StepRecord.model_validate(
        {"step": step, "phase": phase, "outcome": outcome, "at": AT, "detail": detail}
    )
    assert view.step_line(record) == said
