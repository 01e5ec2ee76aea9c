"""Payment: charges to payment tokens, full refunds, and the ledger of both."""

from __future__ import annotations

import sqlite3
import uuid

from muster_backends.models import ChargeRequest, RefundRequest
from muster_backends.store import Outcome, compensated_problem, is_voided, now, problem, void

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    key TEXT PRIMARY KEY,
    charge_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
    currency TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('captured', 'refunded')),
    created_at TEXT NOT NULL,
    refunded_at TEXT
);
CREATE TABLE IF NOT EXISTS refunds (
    refund_id TEXT PRIMARY KEY,
    refund_key TEXT NOT NULL UNIQUE,
    charge_key TEXT NOT NULL REFERENCES charges (key),
    order_id TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_by_order ON charges (order_id);
"""

# Test tokens, in the manner of card processors' sandboxes.
DECLINED = {
    "tok_declined": "the card was declined",
    "tok_insufficient_funds": "insufficient funds",
    "tok_expired": "the card has expired",
}


def charge(conn: sqlite3.Connection, key: str, request: ChargeRequest) -> Outcome:
    """Capture the amount, unless the token is declined."""
    if is_voided(conn, key):
        return compensated_problem(key)
    reason = DECLINED.get(request.payment_token)
    if reason is not None:
        return problem(402, "card-declined", "Card declined", reason)
    charge_id = f"ch_{uuid.uuid4().hex[:16]}"
    conn.execute(
        "INSERT INTO charges (key, charge_id, order_id, amount_minor, currency, status, "
        "created_at) VALUES (?, ?, ?, ?, ?, 'captured', ?)",
        (
            key,
            charge_id,
            request.order_id,
            request.amount.amount_minor,
            request.amount.currency,
            now(),
        ),
    )
    return Outcome(
        201,
        {
            "charge_id": charge_id,
            "order_id": request.order_id,
            "amount": request.amount.model_dump(),
            "status": "captured",
        },
    )


def refund(conn: sqlite3.Connection, key: str, request: RefundRequest) -> Outcome:
    """Refund the whole charge; void the charge key if nothing was charged under it."""
    row = conn.execute("SELECT * FROM charges WHERE key = ?", (request.charge_key,)).fetchone()
    if row is None:
        void(conn, request.charge_key, request.order_id, key)
        return Outcome(
            200,
            {"refunded": False, "detail": "nothing was charged under that key; it is voided now"},
        )
    if row["order_id"] != request.order_id:
        return problem(
            422,
            "order-mismatch",
            "Charge belongs to another order",
            f"charge {request.charge_key!r} belongs to order {row['order_id']!r}",
        )
    if row["status"] == "refunded":
        return Outcome(200, {"refunded": False, "detail": "already refunded"})
    refund_id = f"re_{uuid.uuid4().hex[:16]}"
    at = now()
    conn.execute(
        "INSERT INTO refunds (refund_id, refund_key, charge_key, order_id, amount_minor, "
        "currency, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            refund_id,
            key,
            request.charge_key,
            request.order_id,
            row["amount_minor"],
            row["currency"],
            at,
        ),
    )
    conn.execute(
        "UPDATE charges SET status = 'refunded', refunded_at = ? WHERE key = ?",
        (at, request.charge_key),
    )
    return Outcome(
        200,
        {
            "refunded": True,
            "refund_id": refund_id,
            "amount": {"amount_minor": row["amount_minor"], "currency": row["currency"]},
            "detail": "refunded",
        },
    )
