"""SQLite persistence with idempotency keys: the same key and request get the same answer.

Each backend keeps one database file. A request carrying ``Idempotency-Key`` runs in one
transaction with the record of its answer, so an operation and its idempotency record are
committed together or not at all: a retry after a lost response replays the stored answer
(exactly once), and a key reused for a different request is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROBLEM = "urn:muster:problem:"

_IDEMPOTENCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS voided (
    key TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    voided_by TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


def now() -> str:
    """A UTC timestamp for ledgers."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Outcome:
    """An HTTP answer: status and JSON body (a problem document when status >= 400)."""

    status: int
    body: dict[str, Any]

    @property
    def is_problem(self) -> bool:
        """Whether this is an error answer."""
        return self.status >= 400


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> Outcome:
    """An RFC 9457 problem document with a Muster problem type."""
    return Outcome(
        status,
        {"type": PROBLEM + kind, "title": title, "status": status, "detail": detail, **extra},
    )


class IdempotencyConflict(Exception):
    """The key was already used for a different request."""


def fingerprint(method: str, path: str, body: Any) -> str:
    """What identifies "the same request": method, path and canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


class Store:
    """One backend's database: WAL mode, one writer at a time, durable commits."""

    def __init__(self, path: Path, schema: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(_IDEMPOTENCY_SCHEMA + schema)
        self.lock = asyncio.Lock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    async def idempotent(
        self,
        key: str,
        request_fingerprint: str,
        operation: Callable[[sqlite3.Connection], Outcome],
    ) -> tuple[Outcome, bool]:
        """Run ``operation`` once per key; returns its outcome and whether it was replayed."""
        async with self.lock:
            with self.transaction() as conn:
                row = conn.execute(
                    "SELECT fingerprint, status, body FROM idempotency WHERE key = ?", (key,)
                ).fetchone()
                if row is not None:
                    if row["fingerprint"] != request_fingerprint:
                        raise IdempotencyConflict(key)
                    return Outcome(int(row["status"]), json.loads(row["body"])), True
                outcome = operation(conn)
                conn.execute(
                    "INSERT INTO idempotency (key, fingerprint, status, body, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, request_fingerprint, outcome.status, json.dumps(outcome.body), now()),
                )
                return outcome, False

    async def read(self, query: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query as dicts."""
        async with self.lock:
            return [dict(row) for row in self.conn.execute(query, args).fetchall()]

    def close(self) -> None:
        """Close the database file."""
        self.conn.close()


def is_voided(conn: sqlite3.Connection, key: str) -> bool:
    """Whether a compensation already ran for the operation with this key."""
    return conn.execute("SELECT 1 FROM voided WHERE key = ?", (key,)).fetchone() is not None


def void(conn: sqlite3.Connection, key: str, order_id: str, voided_by: str) -> None:
    """Record that the operation with ``key`` is compensated: it may never happen later."""
    conn.execute(
        "INSERT OR IGNORE INTO voided (key, order_id, voided_by, at) VALUES (?, ?, ?, ?)",
        (key, order_id, voided_by, now()),
    )


def compensated_problem(key: str) -> Outcome:
    """The answer to an operation whose compensation already ran."""
    return problem(
        409,
        "compensated",
        "Operation was compensated",
        f"the operation with Idempotency-Key {key!r} was already compensated (voided) and "
        "cannot happen any more",
    )
