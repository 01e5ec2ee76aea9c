"""Inventory: stock on hand, all-or-nothing reservations, and a ledger of every stock move."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping

from muster_backends.models import ReleaseRequest, ReserveRequest
from muster_backends.store import Outcome, compensated_problem, is_voided, now, problem, void

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
    sku TEXT PRIMARY KEY,
    on_hand INTEGER NOT NULL CHECK (on_hand >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    key TEXT PRIMARY KEY,
    reservation_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    items TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('reserved', 'released')),
    created_at TEXT NOT NULL,
    released_at TEXT
);
CREATE TABLE IF NOT EXISTS moves (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sku TEXT NOT NULL,
    delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    reservation_key TEXT,
    order_id TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_by_order ON reservations (order_id);
"""


def seed(conn: sqlite3.Connection, initial: Mapping[str, int]) -> None:
    """Put the initial stock in place the first time (an empty stock table)."""
    if conn.execute("SELECT COUNT(*) FROM stock").fetchone()[0]:
        return
    for sku, on_hand in initial.items():
        conn.execute("INSERT INTO stock (sku, on_hand) VALUES (?, ?)", (sku, on_hand))
        conn.execute(
            "INSERT INTO moves (sku, delta, reason, at) VALUES (?, ?, 'initial', ?)",
            (sku, on_hand, now()),
        )


def reserve(conn: sqlite3.Connection, key: str, request: ReserveRequest) -> Outcome:
    """Take every item out of stock, or none of them."""
    if is_voided(conn, key):
        return compensated_problem(key)
    unknown = []
    short = []
    for line in request.items:
        row = conn.execute("SELECT on_hand FROM stock WHERE sku = ?", (line.sku,)).fetchone()
        if row is None:
            unknown.append(line.sku)
        elif row["on_hand"] < line.quantity:
            short.append(f"{line.sku} (wanted {line.quantity}, on hand {row['on_hand']})")
    if unknown:
        return problem(
            422, "unknown-sku", "Unknown SKU", f"not in the catalogue: {', '.join(unknown)}"
        )
    if short:
        return problem(409, "out-of-stock", "Out of stock", f"not enough stock: {'; '.join(short)}")
    at = now()
    for line in request.items:
        conn.execute(
            "UPDATE stock SET on_hand = on_hand - ? WHERE sku = ?", (line.quantity, line.sku)
        )
        conn.execute(
            "INSERT INTO moves (sku, delta, reason, reservation_key, order_id, at) "
            "VALUES (?, ?, 'reserve', ?, ?, ?)",
            (line.sku, -line.quantity, key, request.order_id, at),
        )
    reservation_id = f"res_{uuid.uuid4().hex[:16]}"
    items = [line.model_dump() for line in request.items]
    conn.execute(
        "INSERT INTO reservations (key, reservation_id, order_id, items, status, created_at) "
        "VALUES (?, ?, ?, ?, 'reserved', ?)",
        (key, reservation_id, request.order_id, json.dumps(items), at),
    )
    return Outcome(
        201,
        {
            "reservation_id": reservation_id,
            "order_id": request.order_id,
            "items": items,
            "status": "reserved",
        },
    )


def release(conn: sqlite3.Connection, key: str, request: ReleaseRequest) -> Outcome:
    """Put reserved stock back; void the reservation key if nothing was reserved under it."""
    row = conn.execute(
        "SELECT * FROM reservations WHERE key = ?", (request.reservation_key,)
    ).fetchone()
    if row is None:
        void(conn, request.reservation_key, request.order_id, key)
        return Outcome(
            200,
            {
                "released": False,
                "detail": "nothing was reserved under that key; it is voided now",
            },
        )
    if row["order_id"] != request.order_id:
        return problem(
            422,
            "order-mismatch",
            "Reservation belongs to another order",
            f"reservation {request.reservation_key!r} belongs to order {row['order_id']!r}",
        )
    if row["status"] == "released":
        return Outcome(200, {"released": False, "detail": "already released"})
    at = now()
    for line in json.loads(row["items"]):
        conn.execute(
            "UPDATE stock SET on_hand = on_hand + ? WHERE sku = ?", (line["quantity"], line["sku"])
        )
        conn.execute(
            "INSERT INTO moves (sku, delta, reason, reservation_key, order_id, at) "
            "VALUES (?, ?, 'release', ?, ?, ?)",
            (line["sku"], line["quantity"], request.reservation_key, request.order_id, at),
        )
    conn.execute(
        "UPDATE reservations SET status = 'released', released_at = ? WHERE key = ?",
        (at, request.reservation_key),
    )
    return Outcome(
        200, {"released": True, "reservation_id": row["reservation_id"], "detail": "released"}
    )


def set_stock(conn: sqlite3.Connection, sku: str, on_hand: int) -> Outcome:
    """An inventory count: set on-hand stock, recording the difference as a move."""
    row = conn.execute("SELECT on_hand FROM stock WHERE sku = ?", (sku,)).fetchone()
    before = 0 if row is None else int(row["on_hand"])
    conn.execute(
        "INSERT INTO stock (sku, on_hand) VALUES (?, ?) "
        "ON CONFLICT (sku) DO UPDATE SET on_hand = excluded.on_hand",
        (sku, on_hand),
    )
    if on_hand != before:
        conn.execute(
            "INSERT INTO moves (sku, delta, reason, at) VALUES (?, ?, 'count', ?)",
            (sku, on_hand - before, now()),
        )
    return Outcome(200, {"sku": sku, "on_hand": on_hand})
