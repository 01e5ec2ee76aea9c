"""What the approver page says, in words for people: statuses, amounts with thousands
grouped, order lines, audit trails and order steps.

Pure functions over the contracts' types (no I/O), so every wording has a unit test. The
workflows record terse machine events ("policy pinned", "reserve"/"undo"); the page never
shows those, nor hashes or Python reprs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from muster_api.approval import AuditEntry, DecisionRecord
from muster_api.common import Money
from muster_api.fulfillment import Address, Order, OrderItem, StepRecord

__all__ = [
    "APPROVAL_STATUS",
    "ORDER_STATUS",
    "Line",
    "address_lines",
    "audit_line",
    "decision_line",
    "money",
    "order_lines",
    "plain",
    "status_words",
    "step_line",
]

APPROVAL_STATUS = {
    "pending": "pending",
    "approved": "approved",
    "rejected": "rejected",
    "approved_on_timeout": "approved on timeout",
    "rejected_on_timeout": "rejected on timeout",
    "cancelled": "withdrawn",
}
ORDER_STATUS = {
    "received": "received",
    "reserving": "reserving stock",
    "awaiting_approval": "awaiting approval",
    "charging": "charging the payment",
    "shipping": "shipping",
    "confirming": "confirming to the customer",
    "compensating": "undoing what was done",
    "fulfilled": "fulfilled",
    "compensated": "compensated",
    "needs_attention": "needs attention",
    "resolved": "resolved by a person",
}

# (step, phase) of the saga -> what a person calls it.
_STEPS = {
    ("reserve", "do"): "Reserve stock",
    ("reserve", "undo"): "Release the stock",
    ("approval", "do"): "Approval",
    ("charge", "do"): "Charge the payment",
    ("charge", "undo"): "Refund the payment",
    ("ship", "do"): "Book the shipment",
    ("ship", "undo"): "Cancel the shipment",
    ("confirm", "do"): "Confirm to the customer",
    ("failure-notice", "do"): "Tell the customer it failed",
    ("cancel", "do"): "Cancellation",
    ("resolve", "undo"): "Resolution by a person",
}
_OUTCOMES = {"started": "started", "succeeded": "done", "failed": "failed", "skipped": "paused"}

# What a notification was about, by the event the workflow names it with.
_ABOUT = {
    "requested": "about the request",
    "reminder": "with a reminder",
    "escalated": "about the escalation",
    "decided": "about the outcome",
    "expired": "about the outcome",
    "withdrawn": "that it was withdrawn",
}
_LIST_REPR = re.compile(r"\[((?:'[^']*'(?:, )?)*)\]")
_ERROR_TYPE = re.compile(r"^(?:[A-Z][a-z]+){2,}: ")
_QUOTED = re.compile(r"'([^'\s]+)'")


def status_words(status: str, *, order: bool = False) -> str:
    """An approval's (or with ``order`` an order's) status as words."""
    table = ORDER_STATUS if order else APPROVAL_STATUS
    return table.get(status, status.replace("_", " "))


def money(amount: Money | None) -> str:
    """``1,237.50 EUR``; a dash for no amount."""
    return amount.display() if amount is not None else "—"


@dataclass(frozen=True)
class Line:
    """One order line as the page shows it."""

    sku: str
    name: str
    quantity: str
    unit_price: str
    total: str


def order_lines(order: Order) -> list[Line]:
    """The order's lines with their totals."""

    def line(item: OrderItem) -> Line:
        return Line(
            sku=item.sku,
            name=item.name or "—",
            quantity=f"{item.quantity:,}",
            unit_price=money(item.unit_price),
            total=money(item.unit_price.times(item.quantity)),
        )

    return [line(item) for item in order.items]


def address_lines(address: Address) -> list[str]:
    """A postal address, one line each."""
    lines = [address.name, address.line1]
    if address.line2:
        lines.append(address.line2)
    lines.append(f"{address.postal_code} {address.city}")
    lines.append(address.country)
    return lines


def _unrepr(text: str) -> str:
    """``['alice', 'bob']`` (how older workflows wrote a list) as ``alice, bob``."""
    return _LIST_REPR.sub(lambda m: m.group(1).replace("'", ""), text)


def plain(text: str) -> str:
    """A recorded message without the error type in front (``CardDeclined: ...``) and
    without Python's quotes around single words or lists."""
    return _QUOTED.sub(r"\1", _unrepr(_ERROR_TYPE.sub("", text)))


def _who(actor: str, names: Mapping[str, str]) -> str:
    return "Muster" if actor == "muster" else names.get(actor, actor)


def _split(detail: str) -> tuple[str, str]:
    """``"requested: alice, bob"`` -> ``("requested", "alice, bob")``."""
    head, _, rest = detail.partition(": ")
    return head, rest


def audit_line(entry: AuditEntry, names: Mapping[str, str] | None = None) -> str:
    """One entry of an approval's audit trail as a sentence."""
    names = names or {}
    who = _who(entry.actor, names)
    event, detail = entry.event, plain(entry.detail)
    if event == "requested":
        return f"{who} asked for approval"
    if event == "policy pinned":
        return f"Policy {detail.split(' sha256:')[0]} applies"
    if event in ("approvers asked", "escalated"):
        _, people = _split(detail)
        verb = "Asked" if event == "approvers asked" else "Escalated to"
        return f"{verb} {people or 'nobody'}" + (" to decide" if verb == "Asked" else "")
    if event in ("approved", "rejected", "rejectd") and entry.actor != "muster":
        verb = "rejected" if event.startswith("reject") else "approved"
        return f"{who} {verb}" + (f": {detail}" if detail.strip() else "")
    if event == "cancelled":
        return "The request was withdrawn"
    if entry.actor == "muster" and event in APPROVAL_STATUS:
        outcome = f"The request is {status_words(event)}"
        return outcome + (f": {detail}" if detail else "")
    if event == "timed out":
        return f"Time ran out: {detail}"
    if event == "reminder":
        return f"Reminded {detail}"
    if event in ("notified", "notification failed", "notification abandoned"):
        kind, rest = _split(detail)
        about = _ABOUT.get(kind, f"({kind})")
        if event == "notified":
            webhook = rest.endswith(" and webhook")
            people = rest.removesuffix(" and webhook")
            told = (
                f"No one to e-mail {about}"
                if people == "no e-mail"
                else f"E-mailed {people} {about}"
            )
            return told + (" (and posted to the webhook)" if webhook else "")
        if event == "notification failed":
            return f"Could not tell people {about}: {rest}"
        return f"Gave up telling people {about}: {rest}"
    if event == "decision ignored":
        return f"Ignored a decision by {who}: {detail}"
    return f"{who}: {event}" + (f" ({detail})" if detail else "")


def decision_line(decision: DecisionRecord, names: Mapping[str, str] | None = None) -> str:
    """``Alice Approver approved: fine`` (the reason, if any, after a colon)."""
    who = (names or {}).get(decision.approver, decision.approver)
    verb = "approved" if decision.verdict == "approve" else "rejected"
    return f"{who} {verb}" + (f": {decision.reason}" if decision.reason else "")


def step_line(step: StepRecord) -> str:
    """One entry of an order's step history as words."""
    what = _STEPS.get((step.step, step.phase))
    if what is None:
        what = step.step.replace("-", " ").replace("_", " ").capitalize()
        if step.phase == "undo":
            what = f"Undo: {what.lower()}"
    outcome = _OUTCOMES.get(step.outcome, step.outcome)
    detail = plain(step.detail)
    if step.step == "approval" and step.outcome == "started":
        detail = detail.replace("policy ", "under policy ")
    return f"{what}: {outcome}" + (f" ({detail})" if detail else "")
