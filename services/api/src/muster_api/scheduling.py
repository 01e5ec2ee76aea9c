"""Contracts of the scheduled workflows: their type names, task queue, inputs and results.

Every workflow here takes one optional input object, so a Schedule's ``workflow.args`` can
be empty; what a run is *for* (the business date, the sync window) comes from the time the
schedule meant it to start, ``TemporalScheduledStartTime``, never from the clock.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from muster_api.search_attributes import POLICY_NAME

TASK_QUEUE = "muster-scheduling"
"""Task queue the scheduling worker polls."""
DAILY_REPORT = "DailyReport"
"""Workflow type: the orders ledger of one business day (:class:`DailyReportInput`)."""
DATA_SYNC = "DataSync"
"""Workflow type: copy new inventory moves into the warehouse (:class:`DataSyncInput`)."""
HEALTH_CHECK = "HealthCheck"
"""Workflow type: ask every backend whether it is healthy (:class:`HealthCheckInput`)."""
APPROVAL_REMINDERS = "ApprovalReminders"
"""Workflow type: remind one policy's pending requests (:class:`RemindersInput`); an
ApprovalPolicy's reminder schedule runs it."""


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class DailyReportInput(_Input):
    """Which day to report on: ``days_back`` days before the scheduled date (1: yesterday)."""

    time_zone: str = "UTC"
    days_back: int = Field(default=1, ge=0, le=366)


class CurrencyTotals(BaseModel):
    """Money moved in one currency on the report's day (minor units)."""

    currency: str
    charged_minor: int = 0
    refunded_minor: int = 0
    charges: int = 0
    refunds: int = 0

    @property
    def net_minor(self) -> int:
        """Charged minus refunded."""
        return self.charged_minor - self.refunded_minor


class DailyReport(BaseModel):
    """The orders ledger of one business day."""

    report_id: str
    business_date: date
    time_zone: str
    orders: int
    totals: list[CurrencyTotals]
    path: str | None = None


class DataSyncInput(_Input):
    """Copy new inventory moves into the local warehouse table, in batches."""

    batch_size: int = Field(default=500, ge=1, le=10_000)
    max_batches: int = Field(default=100, ge=1, le=10_000)


class DataSyncResult(BaseModel):
    """What one sync run did."""

    run_key: str
    copied: int
    batches: int
    watermark: int


class HealthCheckInput(_Input):
    """Which backends to check (default: all four)."""

    services: list[str] = Field(
        default_factory=lambda: ["inventory", "payment", "shipping", "notification"]
    )


class ServiceHealth(BaseModel):
    """One backend's answer."""

    service: str
    healthy: bool
    detail: str


class HealthCheckResult(BaseModel):
    """Every backend's answer at the scheduled time."""

    checked_at: datetime
    services: list[ServiceHealth]

    @property
    def healthy(self) -> bool:
        """Whether every backend answered healthy."""
        return all(s.healthy for s in self.services)


class RemindersInput(_Input):
    """Whose pending requests to remind: one ApprovalPolicy."""

    policy: str = Field(pattern=POLICY_NAME, max_length=253)
    namespace: str = "default"


class RemindersResult(BaseModel):
    """How many pending requests were reminded."""

    policy: str
    key: str
    reminded: int
