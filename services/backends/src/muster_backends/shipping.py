"""Shipping: shipments with tracking numbers, cancellations, and their ledger."""

from __future__ import annotations

import json
import secrets
import sqlite3
import uuid
from collections.abc import Collection

from muster_backends.models import CancelShipmentRequest, ShipmentRequest
from muster_backends.store import Outcome, compensated_problem, is_voided, now, problem, void

SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    key TEXT PRIMARY KEY,
    shipment_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    tracking_number TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    items TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked', 'cancelled')),
    created_at TEXT NOT NULL,
    cancelled_at TEXT
);
CREATE INDEX IF NOT EXISTS shipments_by_order ON shipments (order_id);
"""

# A postal code carriers refuse, to exercise the "address rejected" path on purpose.
UNDELIVERABLE_POSTAL_CODE = "00000"


def create(
    conn: sqlite3.Connection, key: str, request: ShipmentRequest, countries: Collection[str]
) -> Outcome:
    """Book a shipment, unless the address cannot be served."""
    if is_voided(conn, key):
        return compensated_problem(key)
    address = request.address
    if address.country not in countries:
        return problem(
            422,
            "address-rejected",
            "Address rejected",
            f"no carrier delivers to {address.country}; served: {', '.join(sorted(countries))}",
        )
    if address.postal_code == UNDELIVERABLE_POSTAL_CODE:
        return problem(
            422,
            "address-rejected",
            "Address rejected",
            f"postal code {address.postal_code} is not deliverable",
        )
    shipment_id = f"shp_{uuid.uuid4().hex[:16]}"
    tracking = f"MU{secrets.token_hex(6).upper()}"
    conn.execute(
        "INSERT INTO shipments (key, shipment_id, order_id, tracking_number, address, items, "
        "status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'booked', ?)",
        (
            key,
            shipment_id,
            request.order_id,
            tracking,
            json.dumps(address.model_dump()),
            json.dumps([i.model_dump() for i in request.items]),
            now(),
        ),
    )
    return Outcome(
        201,
        {
            "shipment_id": shipment_id,
            "order_id": request.order_id,
            "tracking_number": tracking,
            "status": "booked",
        },
    )


def cancel(conn: sqlite3.Connection, key: str, request: CancelShipmentRequest) -> Outcome:
    """Cancel a booked shipment; void the key if nothing was booked under it."""
    row = conn.execute("SELECT * FROM shipments WHERE key = ?", (request.shipment_key,)).fetchone()
    if row is None:
        void(conn, request.shipment_key, request.order_id, key)
        return Outcome(
            200,
            {"cancelled": False, "detail": "nothing was booked under that key; it is voided now"},
        )
    if row["order_id"] != request.order_id:
        return problem(
            422,
            "order-mismatch",
            "Shipment belongs to another order",
            f"shipment {request.shipment_key!r} belongs to order {row['order_id']!r}",
        )
    if row["status"] == "cancelled":
        return Outcome(200, {"cancelled": False, "detail": "already cancelled"})
    conn.execute(
        "UPDATE shipments SET status = 'cancelled', cancelled_at = ? WHERE key = ?",
        (now(), request.shipment_key),
    )
    return Outcome(
        200, {"cancelled": True, "shipment_id": row["shipment_id"], "detail": "cancelled"}
    )
