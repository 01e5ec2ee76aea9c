"""The scheduling worker's activities: read the backends' ledgers, keep the warehouse copy,
check health, and send reminder rounds. One class holds the clients they use."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from muster_api.approval import REMIND_SIGNAL, RemindRequest
from muster_api.scheduling import CurrencyTotals, DailyReport, RemindersResult, ServiceHealth
from muster_api.search_attributes import pending_approvals_query
from muster_scheduling.models import RemindRound, ReportWindow, SyncBatch

WAREHOUSE_SCHEMA = """
CREATE TABLE IF NOT EXISTS stock_moves (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL,
    delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    order_id TEXT,
    at TEXT NOT NULL,
    synced_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS watermarks (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


def _parse(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def day_bounds(day: Any, zone: str) -> tuple[datetime, datetime]:
    """The UTC start and end of a calendar day in a time zone (DST-aware)."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


class SchedulingActivities:
    """Activities bound to the backends' URL, the report folder, the warehouse and Temporal."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        backends_url: str,
        reports_dir: Path,
        warehouse: Path,
        client: Client,
    ) -> None:
        self.http = http
        self.backends_url = backends_url.rstrip("/")
        self.reports_dir = reports_dir
        self.warehouse = warehouse
        self.client = client

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, bound to this instance: what a scheduling worker registers."""
        return [self.daily_report, self.sync_batch, self.check_service, self.remind_pending]

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self.http.get(f"{self.backends_url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise ApplicationError(f"GET {path} failed: {exc!r}") from None
        if response.status_code >= 500:
            raise ApplicationError(f"GET {path} answered {response.status_code}")
        if response.status_code >= 400:
            raise ApplicationError(
                f"GET {path} answered {response.status_code}: {response.text[:200]}",
                non_retryable=True,
            )
        return response.json()

    @activity.defn(name="scheduling.daily_report")
    async def daily_report(self, window: ReportWindow) -> DailyReport:
        """Sum the payment ledger of one business day and store the report (idempotent)."""
        try:
            zone = ZoneInfo(window.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApplicationError(
                f"time_zone {window.time_zone!r} is not an IANA time zone (like Europe/Berlin)",
                non_retryable=True,
            ) from None
        business_date = window.scheduled_at.astimezone(zone).date() - timedelta(
            days=window.days_back
        )
        report_id = f"daily-report-{business_date.isoformat()}"
        start, end = day_bounds(business_date, window.time_zone)
        ledger = await self._get("/payment/ledger")
        totals: dict[str, CurrencyTotals] = defaultdict(lambda: CurrencyTotals(currency=""))
        orders: set[str] = set()
        for charge in ledger["charges"]:
            if start <= _parse(charge["created_at"]) < end:
                entry = totals[charge["currency"]]
                entry.currency = charge["currency"]
                entry.charged_minor += int(charge["amount_minor"])
                entry.charges += 1
                orders.add(charge["order_id"])
        for refund in ledger["refunds"]:
            if start <= _parse(refund["at"]) < end:
                entry = totals[refund["currency"]]
                entry.currency = refund["currency"]
                entry.refunded_minor += int(refund["amount_minor"])
                entry.refunds += 1
        path = self.reports_dir / f"{report_id}.json"
        report = DailyReport(
            report_id=report_id,
            business_date=business_date,
            time_zone=window.time_zone,
            orders=len(orders),
            totals=sorted(totals.values(), key=lambda t: t.currency),
            path=str(path),
        )
        await asyncio.to_thread(self._write_report, path, report)
        return report

    @staticmethod
    def _write_report(path: Path, report: DailyReport) -> None:
        # Same id, same file: a retried or re-run report replaces itself atomically.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(report.model_dump(mode="json"), indent=2))
        tmp.replace(path)

    @activity.defn(name="scheduling.sync_batch")
    async def sync_batch(self, batch_size: int) -> SyncBatch:
        """Copy the next batch of inventory moves after the watermark (upserts, one txn)."""
        watermark = await asyncio.to_thread(self._watermark)
        rows = await self._get(
            "/inventory/ledger", params={"after_id": watermark, "limit": batch_size}
        )
        if not rows:
            return SyncBatch(copied=0, watermark=watermark)
        new_mark = await asyncio.to_thread(self._upsert, rows)
        return SyncBatch(copied=len(rows), watermark=new_mark)

    def _connect(self) -> sqlite3.Connection:
        self.warehouse.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.warehouse, timeout=30)
        conn.executescript(WAREHOUSE_SCHEMA)
        return conn

    def _watermark(self) -> int:
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM watermarks WHERE name = 'stock_moves'").fetchone()
        return int(row[0]) if row else 0

    def _upsert(self, rows: list[dict[str, Any]]) -> int:
        now = datetime.now(UTC).isoformat()
        top = max(int(r["id"]) for r in rows)
        conn = self._connect()
        try:
            with conn:
                conn.executemany(
                    "INSERT INTO stock_moves (id, sku, delta, reason, order_id, at, synced_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "sku = excluded.sku, delta = excluded.delta, reason = excluded.reason, "
                    "order_id = excluded.order_id, at = excluded.at",
                    [
                        (
                            r["id"],
                            r["sku"],
                            r["delta"],
                            r["reason"],
                            r.get("order_id"),
                            r["at"],
                            now,
                        )
                        for r in rows
                    ],
                )
                # The watermark only moves forward, in the same transaction as the rows.
                conn.execute(
                    "INSERT INTO watermarks (name, value) VALUES ('stock_moves', ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
                    (top,),
                )
                mark = conn.execute(
                    "SELECT value FROM watermarks WHERE name = 'stock_moves'"
                ).fetchone()
        finally:
            conn.close()
        return int(mark[0])

    @activity.defn(name="scheduling.check_service")
    async def check_service(self, service: str) -> ServiceHealth:
        """One backend's health endpoint; an answer of any kind is a result, not an error."""
        try:
            response = await self.http.get(f"{self.backends_url}/{service}/healthz")
        except httpx.HTTPError as exc:
            return ServiceHealth(service=service, healthy=False, detail=f"unreachable: {exc!r}")
        healthy = response.status_code == 200 and bool(response.json().get("ok"))
        detail = "ok" if healthy else f"HTTP {response.status_code}: {response.text[:200]}"
        return ServiceHealth(service=service, healthy=healthy, detail=detail)

    @activity.defn(name="scheduling.remind_pending")
    async def remind_pending(self, round_: RemindRound) -> int:
        """Signal every pending request of a policy; the key makes a repeated round a no-op."""
        reminded = 0
        async for execution in self.client.list_workflows(pending_approvals_query(round_.policy)):
            activity.heartbeat(reminded)
            handle = self.client.get_workflow_handle(execution.id, run_id=execution.run_id)
            await handle.signal(REMIND_SIGNAL, RemindRequest(key=round_.key))
            reminded += 1
        return reminded


__all__ = ["RemindersResult", "SchedulingActivities", "day_bounds"]
