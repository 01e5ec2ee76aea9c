"""Notification: templated messages to customers, each sent once per idempotency key."""

from __future__ import annotations

import json
import sqlite3
import uuid

from muster_backends.models import MessageRequest
from muster_backends.store import Outcome, now

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    data TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_order ON messages (order_id);
"""


def send(conn: sqlite3.Connection, key: str, request: MessageRequest) -> Outcome:
    """Record (and, in this reference backend, deliver to the ledger) one message."""
    message_id = f"msg_{uuid.uuid4().hex[:16]}"
    conn.execute(
        "INSERT INTO messages (key, message_id, order_id, recipient, template, data, at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            message_id,
            request.order_id,
            request.to,
            request.template,
            json.dumps(request.data, sort_keys=True),
            now(),
        ),
    )
    return Outcome(202, {"message_id": message_id, "order_id": request.order_id, "status": "sent"})
