"""Records histories of the scheduled workflows and the canary for the replay gate.

Run by ``make histories`` (``tests/replay/record.py``), never during a test run. Every
scheduled workflow is started the way production starts it: by a real Temporal schedule
(triggered, or backfilled for a given time), so its history carries the scheduled start
time the workflow reads. They run on a real dev server with the real scheduling worker's
workflows and activities against the real reference backends; the reminder round reaches
a pending request of the real approval workflow. The canary runs as ``muster ping`` starts
it. Each history lands in ``tests/replay/histories/<workflow type>/<name>.json``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from muster_api import search_attributes as sa
from muster_api.approval import WORKFLOW as APPROVAL_WORKFLOW
from muster_api.scheduling import (
    APPROVAL_REMINDERS,
    DAILY_REPORT,
    DATA_SYNC,
    HEALTH_CHECK,
    DailyReportInput,
    DataSyncInput,
    HealthCheckInput,
    RemindersInput,
)
from muster_approval.workflows import Approval
from muster_runtime.canary import TASK_QUEUE as CANARY_QUEUE
from muster_runtime.canary.activities import CanaryActivities
from muster_runtime.canary.models import PingInput
from muster_runtime.canary.workflows import CanaryPing
from muster_runtime.sandbox import muster_workflow_runner
from muster_scheduling.activities import SchedulingActivities
from muster_scheduling.workflows import WORKFLOWS
from tests.approval_support import Setup, approval_worker, request, setup
from tests.fulfillment_support import BackendsProcess, sku, start_backends
from tests.replay.recording import IDENTITY, Servers, save, wanted

Handle = WorkflowHandle[Any, Any]


@dataclass
class World:
    """A scheduling worker, an approval worker and the backends."""

    client: Client
    task_queue: str
    approval_queue: str
    backends: BackendsProcess
    where: Setup

    async def scheduled(
        self, workflow_type: str, argument: Any, at: datetime | None = None
    ) -> Handle:
        """One run of a real schedule: triggered now, or backfilled for ``at``."""
        schedule_id = f"replay-{uuid.uuid4().hex[:10]}"
        schedule = await self.client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    workflow_type, argument, id=schedule_id, task_queue=self.task_queue
                ),
                spec=ScheduleSpec(cron_expressions=["0 0 * * *"]),
            ),
        )
        try:
            if at is None:
                await schedule.trigger()
            else:
                await schedule.backfill(
                    ScheduleBackfill(
                        start_at=at - timedelta(seconds=1),
                        end_at=at + timedelta(seconds=1),
                        overlap=ScheduleOverlapPolicy.ALLOW_ALL,
                    )
                )
            for _ in range(300):
                actions = (await schedule.describe()).info.recent_actions
                if actions:
                    action: Any = actions[0].action
                    handle = self.client.get_workflow_handle(
                        action.workflow_id, run_id=action.first_execution_run_id
                    )
                    with suppress(WorkflowFailureError):
                        await handle.result()
                    return handle
                await asyncio.sleep(0.1)
            raise AssertionError(f"schedule {schedule_id} started no run in 30 s")
        finally:
            await schedule.delete()

    def charge(self, amount: int, currency: str = "EUR") -> None:
        order_id = f"o-{uuid.uuid4().hex[:10]}"
        response = httpx.post(
            f"{self.backends.api}/payment/charges",
            json={
                "order_id": order_id,
                "amount": {"amount_minor": amount, "currency": currency},
                "payment_token": "tok_visa",
            },
            headers={"Idempotency-Key": f"{order_id}-payment"},
            timeout=10,
        )
        assert response.status_code == 201, response.text


async def daily_report(world: World) -> Handle:
    """Backfilled for the midnight that starts the day of today's charges."""
    world.charge(150_00)
    world.charge(9_99, currency="USD")
    midnight = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
    return await world.scheduled(DAILY_REPORT, DailyReportInput(days_back=0), at=midnight)


async def data_sync(world: World) -> Handle:
    """Three batches of two inventory moves, the last one short."""
    for count in (5, 3, 8, 2, 1):
        world.backends.set_stock(sku(), count)
    return await world.scheduled(DATA_SYNC, DataSyncInput(batch_size=2))


async def health_check_healthy(world: World) -> Handle:
    """Every backend answers."""
    return await world.scheduled(HEALTH_CHECK, HealthCheckInput())


async def health_check_unhealthy(world: World) -> Handle:
    """A service the backends do not have: the run fails, visible in the schedule."""
    return await world.scheduled(HEALTH_CHECK, HealthCheckInput(services=["payment", "warehouse"]))


async def reminder_round(world: World) -> Handle:
    """A policy's reminder round reaches its one pending request."""
    policy = world.where.write_policy(f"remind-{uuid.uuid4().hex[:6]}")
    pending = await world.client.start_workflow(
        APPROVAL_WORKFLOW,
        request(policy),
        id=f"replay-{uuid.uuid4().hex[:12]}",
        task_queue=world.approval_queue,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(sa.PATTERN, "approval"), SearchAttributePair(sa.POLICY, policy)]
        ),
    )
    for _ in range(300):
        found = await world.client.count_workflows(
            f"MusterPattern = 'approval' AND MusterPolicy = '{policy}' "
            "AND ExecutionStatus = 'Running'"
        )
        if found.count == 1 and (await pending.query(Approval.state)).deadline is not None:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the pending request never showed in visibility")
    handle = await world.scheduled(APPROVAL_REMINDERS, RemindersInput(policy=policy))
    await pending.terminate("recorded")
    return handle


async def canary(world: World) -> Handle:
    """``muster ping``: one echo through the canary's activity."""
    async with Worker(
        world.client,
        task_queue=f"{CANARY_QUEUE}-{uuid.uuid4().hex[:6]}",
        workflows=[CanaryPing],
        activities=[CanaryActivities(IDENTITY).echo],
        workflow_runner=muster_workflow_runner(),
    ) as worker:
        handle = await world.client.start_workflow(
            CanaryPing.run,
            PingInput(message="muster ping"),
            id=f"canary-{uuid.uuid4().hex[:12]}",
            task_queue=worker.task_queue,
        )
        await handle.result()
        return handle


PATHS: dict[str, dict[str, Callable[[World], Awaitable[Handle]]]] = {
    DAILY_REPORT: {"backfilled": daily_report},
    DATA_SYNC: {"three_batches": data_sync},
    HEALTH_CHECK: {"healthy": health_check_healthy, "unhealthy": health_check_unhealthy},
    APPROVAL_REMINDERS: {"one_pending_request": reminder_round},
    "CanaryPing": {"ping": canary},
}


@asynccontextmanager
async def world(client: Client, tmp: Path) -> AsyncIterator[World]:
    """The backends, a scheduling worker and an approval worker."""
    backends = start_backends(tmp)
    task_queue = f"replay-{uuid.uuid4().hex[:8]}"
    approval_queue = f"{task_queue}-approval"
    folder = tmp / "approval"
    folder.mkdir()
    http = httpx.AsyncClient(timeout=5)
    activities = SchedulingActivities(
        http, backends.api, tmp / "reports", tmp / "warehouse.db", client
    )
    try:
        async with (
            setup(folder) as where,
            approval_worker(client, approval_queue, where),
            Worker(
                client,
                task_queue=task_queue,
                workflows=list(WORKFLOWS),
                activities=activities.all(),
                workflow_runner=muster_workflow_runner(),
            ),
        ):
            yield World(client, task_queue, approval_queue, backends, where)
    finally:
        await http.aclose()
        backends.process.stop()


async def record(servers: Servers, names: set[str] | None, refresh: bool) -> None:
    """Record the scheduled and canary paths that ``names``/``refresh`` ask for."""
    todo = {
        workflow_type: wanted(workflow_type, paths, names, refresh)
        for workflow_type, paths in PATHS.items()
    }
    if not any(todo.values()):
        return
    folder = servers.tmp / "scheduling"
    folder.mkdir()
    async with world(await servers.dev(), folder) as here:
        for workflow_type, paths in todo.items():
            for name, path in paths.items():
                handle = await path(here)
                save(workflow_type, name, await handle.fetch_history())
