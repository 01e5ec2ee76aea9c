"""The scheduling worker against the real reference backends, on the dev server and on the
real server: the daily report dated by the scheduled time (through a real Temporal schedule
and a backfill), the data sync's watermark and idempotent upserts, the health check failing
when a backend is unhealthy, and reminder rounds reaching pending approvals once per
round."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    WorkflowFailureError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from muster_api import search_attributes as sa
from muster_api.approval import WORKFLOW as APPROVAL_WORKFLOW
from muster_api.approval import ApprovalState
from muster_api.scheduling import (
    DailyReport,
    DailyReportInput,
    DataSyncInput,
    DataSyncResult,
    HealthCheckInput,
    HealthCheckResult,
    RemindersInput,
    RemindersResult,
)
from muster_approval.workflows import Approval
from muster_runtime.sandbox import muster_workflow_runner
from muster_scheduling.activities import SchedulingActivities
from muster_scheduling.workflows import WORKFLOWS
from tests.approval_support import approval_worker, request, setup
from tests.fulfillment_support import BackendsProcess, sku, start_backends
from tests.helpers import ON_BOTH_SERVERS, async_wait_until, unique

pytestmark = [pytest.mark.timeout(180), ON_BOTH_SERVERS]


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory, temporal_target: str
) -> Iterator[BackendsProcess]:
    """Backends of their own for each server the module runs on (fresh ledgers)."""
    running = start_backends(tmp_path_factory.mktemp("scheduling"))
    yield running
    running.process.stop()


@dataclass
class SchedulingWorker:
    task_queue: str
    reports: Path
    warehouse: Path


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    client: Client, backends: BackendsProcess, tmp_path: Path, task_queue: str
) -> AsyncIterator[SchedulingWorker]:
    """The real workflows and activities, wired as the scheduling worker wires them."""
    reports, warehouse = tmp_path / "reports", tmp_path / "warehouse.db"
    async with httpx.AsyncClient(timeout=5) as http:
        activities = SchedulingActivities(http, backends.api, reports, warehouse, client)
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=list(WORKFLOWS),
            activities=activities.all(),
            workflow_runner=muster_workflow_runner(),
        ):
            yield SchedulingWorker(task_queue, reports, warehouse)


def post(backends: BackendsProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{backends.api}{path}",
        json=body,
        headers={"Idempotency-Key": f"test-{uuid.uuid4().hex}"},
        timeout=10,
    )
    assert response.status_code < 300, response.text
    result: dict[str, Any] = response.json()
    return result


def charge(backends: BackendsProcess, amount: int, currency: str = "EUR") -> tuple[str, str]:
    """A charge of a fresh order; returns (order id, the charge's idempotency key)."""
    order_id = f"o-{uuid.uuid4().hex[:10]}"
    key = f"{order_id}-payment"
    response = httpx.post(
        f"{backends.api}/payment/charges",
        json={
            "order_id": order_id,
            "amount": {"amount_minor": amount, "currency": currency},
            "payment_token": "tok_visa",
        },
        headers={"Idempotency-Key": key},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return order_id, key


async def test_daily_report_is_dated_by_the_scheduled_time_of_a_backfilled_run(
    client: Client, backends: BackendsProcess, worker: SchedulingWorker
) -> None:
    first, first_key = charge(backends, 150_00)
    charge(backends, 20_00)
    charge(backends, 9_99, currency="USD")
    post(backends, "/payment/refunds", {"order_id": first, "charge_key": first_key})
    ledger = backends.get("/payment/ledger")
    (day,) = {datetime.fromisoformat(c["created_at"]).date() for c in ledger["charges"]}

    # A real schedule at midnight UTC, backfilled for the midnight that starts the day of
    # the charges: the run's business date comes from that scheduled time, not the clock.
    schedule_id = unique("report")
    handle = await client.create_schedule(
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow(
                "DailyReport",
                DailyReportInput(days_back=0),
                id=schedule_id,
                task_queue=worker.task_queue,
            ),
            spec=ScheduleSpec(cron_expressions=["0 0 * * *"]),
        ),
    )
    try:
        midnight = datetime.combine(day, time(0), tzinfo=UTC)
        await handle.backfill(
            ScheduleBackfill(
                start_at=midnight - timedelta(seconds=1),
                end_at=midnight + timedelta(seconds=1),
                overlap=ScheduleOverlapPolicy.ALLOW_ALL,
            )
        )

        async def ran() -> str | None:
            actions = (await handle.describe()).info.recent_actions
            if not actions:
                return None
            action = actions[0].action
            assert actions[0].scheduled_at == midnight
            return getattr(action, "workflow_id", None)

        workflow_id = await async_wait_until(ran, what="the backfilled run", timeout=30)
        report = await client.get_workflow_handle(workflow_id, result_type=DailyReport).result()
    finally:
        await handle.delete()

    assert report.business_date == day
    assert report.report_id == f"daily-report-{day.isoformat()}"
    assert report.orders == 3
    totals = {t.currency: t for t in report.totals}
    assert totals["EUR"].charged_minor == 170_00
    assert totals["EUR"].refunded_minor == 150_00
    assert totals["EUR"].net_minor == 20_00
    assert (totals["EUR"].charges, totals["EUR"].refunds) == (2, 1)
    assert totals["USD"].charged_minor == 9_99
    stored = json.loads((worker.reports / f"{report.report_id}.json").read_text())
    assert stored["orders"] == 3
    assert stored["business_date"] == day.isoformat()

    # The day before has no charges: an empty report under its own id, not a copy.
    earlier = await client.execute_workflow(
        "DailyReport",
        DailyReportInput(days_back=1),
        id=unique("report-now"),
        task_queue=worker.task_queue,
        result_type=DailyReport,
    )
    assert earlier.business_date < datetime.now(UTC).date()
    if earlier.business_date != day:
        assert earlier.orders == 0
        assert earlier.totals == []

    with pytest.raises(WorkflowFailureError) as failed:
        await client.execute_workflow(
            "DailyReport",
            DailyReportInput(time_zone="Mars/Olympus"),
            id=unique("report-bad"),
            task_queue=worker.task_queue,
        )
    assert "'Mars/Olympus' is not an IANA time zone" in causes(failed.value)


def causes(error: BaseException | None) -> str:
    """Every message down a failure's cause chain (workflow → activity → application)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or getattr(error, "cause", None)
    return " <- ".join(messages)


def warehouse_rows(path: Path) -> list[tuple[int, str, int]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT id, sku, delta FROM stock_moves ORDER BY id").fetchall()


async def sync(client: Client, worker: SchedulingWorker, batch_size: int) -> DataSyncResult:
    result: DataSyncResult = await client.execute_workflow(
        "DataSync",
        DataSyncInput(batch_size=batch_size),
        id=unique("sync"),
        task_queue=worker.task_queue,
        result_type=DataSyncResult,
    )
    return result


async def test_data_sync_copies_from_the_watermark_once(
    client: Client, backends: BackendsProcess, worker: SchedulingWorker
) -> None:
    for count in (5, 3, 8):
        backends.set_stock(sku(), count)
    moves = backends.get("/inventory/ledger")
    assert len(moves) >= 3

    first = await sync(client, worker, batch_size=2)
    assert first.copied == len(moves)
    assert first.batches == len(moves) // 2 + 1
    assert first.watermark == max(m["id"] for m in moves)
    assert first.run_key.endswith("Z")
    copied = warehouse_rows(worker.warehouse)
    assert copied == [(m["id"], m["sku"], m["delta"]) for m in moves]

    again = await sync(client, worker, batch_size=2)
    assert (again.copied, again.watermark) == (0, first.watermark)
    assert warehouse_rows(worker.warehouse) == copied

    backends.set_stock(sku(), 4)
    later = await sync(client, worker, batch_size=100)
    assert later.copied == 1
    assert len(warehouse_rows(worker.warehouse)) == len(moves) + 1


async def test_health_check_fails_the_run_when_a_backend_is_unhealthy(
    client: Client, worker: SchedulingWorker
) -> None:
    healthy = await client.execute_workflow(
        "HealthCheck",
        HealthCheckInput(),
        id=unique("health"),
        task_queue=worker.task_queue,
        result_type=HealthCheckResult,
    )
    assert healthy.healthy
    assert [s.service for s in healthy.services] == [
        "inventory",
        "payment",
        "shipping",
        "notification",
    ]

    with pytest.raises(WorkflowFailureError) as failed:
        await client.execute_workflow(
            "HealthCheck",
            HealthCheckInput(services=["payment", "warehouse"]),
            id=unique("health"),
            task_queue=worker.task_queue,
            result_type=HealthCheckResult,
        )
    message = str(failed.value.cause)
    assert message.startswith("unhealthy: warehouse (HTTP 404"), causes(failed.value)
    assert "payment" not in message


async def test_reminder_rounds_reach_pending_requests_once_per_round(
    client: Client, tmp_path: Path, worker: SchedulingWorker
) -> None:
    approvals_queue = unique("approval")
    async with (
        setup(tmp_path) as where,
        approval_worker(client, approvals_queue, where),
    ):
        policy = where.write_policy(unique("remind"))
        other = where.write_policy(unique("other"))
        handles = []
        for policy_name in (policy, policy, other):
            body = request(policy_name)
            handles.append(
                await client.start_workflow(
                    APPROVAL_WORKFLOW,
                    body,
                    id=unique("approval"),
                    task_queue=approvals_queue,
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(sa.PATTERN, "approval"),
                            SearchAttributePair(sa.POLICY, policy_name),
                        ]
                    ),
                )
            )

        async def asked() -> bool:
            states = [await h.query(Approval.state) for h in handles]
            return all(s.deadline is not None for s in states)

        await async_wait_until(asked, what="approvers asked", timeout=30)

        async def counted() -> bool:
            found = await client.count_workflows(
                f"MusterPattern = 'approval' AND MusterPolicy = '{policy}' "
                "AND ExecutionStatus = 'Running'"
            )
            return found.count == 2

        await async_wait_until(counted, what="visibility to list the requests", timeout=30)

        async def reminder_round() -> RemindersResult:
            result: RemindersResult = await client.execute_workflow(
                "ApprovalReminders",
                RemindersInput(policy=policy),
                id=unique("reminders"),
                task_queue=worker.task_queue,
                result_type=RemindersResult,
            )
            return result

        first = await reminder_round()
        assert first.reminded == 2
        assert first.policy == policy

        async def reminded(handle: Any) -> list[Any]:
            state: ApprovalState = await handle.query(Approval.state)
            return [e for e in state.audit if e.event == "reminder"]

        for handle in handles[:2]:
            await async_wait_until(
                partial(reminded, handle), what="the reminder in the audit", timeout=30
            )
        assert await reminded(handles[2]) == []  # another policy's request is left alone

        # Each round has its own key (the scheduled time); a repeated signal of the same
        # round, as a retried activity would send, reminds nobody twice. Signals are
        # handled in order, so once the next round's reminder shows, the repeat is done.
        await handles[0].signal("remind", {"key": first.key})
        await handles[0].signal("remind", {"key": "next-round"})

        async def next_round() -> list[Any] | None:
            found = await reminded(handles[0])
            return found if len(found) >= 2 else None

        assert len(await async_wait_until(next_round, what="the next round", timeout=30)) == 2

        for handle in handles:
            await handle.terminate("test finished")
