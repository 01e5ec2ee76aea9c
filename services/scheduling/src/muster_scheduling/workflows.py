"""The scheduled workflows. No I/O here; each derives its ids and business dates from
``TemporalScheduledStartTime`` (the time the schedule meant it to run), so a late, retried
or backfilled run does the same work as an on-time one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, VersioningBehavior
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from muster_api.scheduling import (
        APPROVAL_REMINDERS,
        DAILY_REPORT,
        DATA_SYNC,
        HEALTH_CHECK,
        DailyReport,
        DailyReportInput,
        DataSyncInput,
        DataSyncResult,
        HealthCheckInput,
        HealthCheckResult,
        RemindersInput,
        RemindersResult,
    )
    from muster_runtime.versioning import declare
    from muster_scheduling.activities import SchedulingActivities
    from muster_scheduling.models import RemindRound, ReportWindow

SCHEDULED_RUN = (
    "a scheduled run lasts seconds to minutes and the next one starts afresh: it finishes on "
    "the build it started on, and the next run takes the new build."
)
"""Why every scheduled workflow is pinned (Worker Versioning)."""
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
CALL_TIMEOUT = timedelta(minutes=2)
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10)


def scheduled_time() -> datetime:
    """When the schedule meant this run to start (the start time for a manual run)."""
    info = workflow.info()
    return info.typed_search_attributes.get(SCHEDULED_START) or info.start_time


def run_key(moment: datetime) -> str:
    """An id-safe key of a scheduled time: ``20261125T060000Z``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@declare(VersioningBehavior.PINNED, SCHEDULED_RUN)
@workflow.defn(name=DAILY_REPORT)
class DailyReportWorkflow:
    """Yesterday's orders ledger (in the report's time zone), stored once per business day."""

    @workflow.run
    async def run(self, request: DailyReportInput | None = None) -> DailyReport:
        request = request or DailyReportInput()
        # The business day is computed by the activity: time zones are files on disk,
        # which the workflow sandbox keeps out of workflow code.
        return await workflow.execute_activity_method(
            SchedulingActivities.daily_report,
            ReportWindow(
                scheduled_at=scheduled_time(),
                days_back=request.days_back,
                time_zone=request.time_zone,
            ),
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=RETRY,
        )


@declare(VersioningBehavior.PINNED, SCHEDULED_RUN)
@workflow.defn(name=DATA_SYNC)
class DataSyncWorkflow:
    """Copy new inventory moves into the warehouse, batch by batch, from the watermark on."""

    @workflow.run
    async def run(self, request: DataSyncInput | None = None) -> DataSyncResult:
        request = request or DataSyncInput()
        copied = batches = watermark = 0
        for _ in range(request.max_batches):
            batch = await workflow.execute_activity_method(
                SchedulingActivities.sync_batch,
                request.batch_size,
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=RETRY,
            )
            batches += 1
            copied += batch.copied
            watermark = batch.watermark
            if batch.copied < request.batch_size:
                break
        return DataSyncResult(
            run_key=run_key(scheduled_time()), copied=copied, batches=batches, watermark=watermark
        )


@declare(VersioningBehavior.PINNED, SCHEDULED_RUN)
@workflow.defn(name=HEALTH_CHECK)
class HealthCheckWorkflow:
    """Ask every backend; the run fails (visible in the schedule) when one is unhealthy."""

    @workflow.run
    async def run(self, request: HealthCheckInput | None = None) -> HealthCheckResult:
        request = request or HealthCheckInput()
        answers = [
            await workflow.execute_activity_method(
                SchedulingActivities.check_service,
                service,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            for service in request.services
        ]
        result = HealthCheckResult(checked_at=scheduled_time(), services=answers)
        if not result.healthy:
            sick = ", ".join(f"{s.service} ({s.detail})" for s in answers if not s.healthy)
            raise ApplicationError(
                f"unhealthy: {sick}", result.model_dump(mode="json"), non_retryable=True
            )
        return result


@declare(VersioningBehavior.PINNED, SCHEDULED_RUN)
@workflow.defn(name=APPROVAL_REMINDERS)
class ApprovalRemindersWorkflow:
    """One reminder round for a policy's pending requests (a policy's reminder schedule)."""

    @workflow.run
    async def run(self, request: RemindersInput) -> RemindersResult:
        key = run_key(scheduled_time())
        reminded = await workflow.execute_activity_method(
            SchedulingActivities.remind_pending,
            RemindRound(policy=request.policy, key=key),
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        return RemindersResult(policy=request.policy, key=key, reminded=reminded)


WORKFLOWS = [DailyReportWorkflow, DataSyncWorkflow, HealthCheckWorkflow, ApprovalRemindersWorkflow]
