"""The ``Schedule`` and ``ApprovalPolicy`` custom resources, as pydantic models.

These models are the single source of truth: ``make generate`` turns them into the CRD YAML
in ``charts/muster/files/crds`` (see :mod:`muster_operator.crdgen`), and the reconciler validates
every resource with them before it touches Temporal. Cross-field rules exist twice on
purpose: as pydantic validators (for ``muster apply`` without Kubernetes) and as CEL rules
(``x-kubernetes-validations``) that the API server enforces on ``kubectl apply``.

``ApprovalPolicy``'s spec lives in :mod:`muster_runtime.policies`, because the approval
worker and the gateway read published policies without depending on this package.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from muster_runtime.policies import (
    API_VERSION,
    ApprovalPolicy,
    ApprovalPolicySpec,
    Duration,
    Metadata,
    format_duration,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "ApprovalPolicy",
    "ApprovalPolicySpec",
    "CalendarSpec",
    "Interval",
    "Metadata",
    "RetryPolicySpec",
    "Schedule",
    "SchedulePolicy",
    "ScheduleSpec",
    "TemporalTarget",
    "WorkflowAction",
    "format_duration",
]

GROUP = "muster.io"
VERSION = "v1alpha1"

# One field of a calendar: "*", "5", "1-5", "*/15", "0-30/10", lists of those; months and
# days of the week may also be named ("MON-FRI", "JAN,JUL").
_NUMBER_ITEM = r"(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?"
_NAMED_ITEM = r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
CALENDAR_FIELD = rf"^{_NUMBER_ITEM}(,{_NUMBER_ITEM})*$"
NAMED_CALENDAR_FIELD = rf"^{_NAMED_ITEM}(,{_NAMED_ITEM})*$"
_CALENDAR_FIELD_RE = re.compile(NAMED_CALENDAR_FIELD)

# Kubernetes object names a schedule id is made of, and Temporal's own id limits.
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

CEL = "x-kubernetes-validations"


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    return {CEL: [{"rule": rule, "message": message} for rule, message in rules]}


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone like Europe/Berlin") from None
    return value


TIME_ZONE_RULE = (
    "self == 'UTC' || timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",
    "must be an IANA time zone like UTC or Europe/Berlin",
)

TimeZone = Annotated[
    str,
    Field(min_length=1, max_length=64, json_schema_extra=_cel(TIME_ZONE_RULE)),
]


class _Spec(BaseModel):
    """camelCase in documents, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Interval(_Spec):
    """Every ``every``, shifted by ``offset`` (``every: 1h, offset: 15m`` is hh:15)."""

    every: Duration
    offset: Duration | None = None

    @model_validator(mode="after")
    def _offset_below_every(self) -> Self:
        if self.offset is not None and self.offset >= self.every:
            raise ValueError("offset must be shorter than every")
        return self


def _calendar_field(default: str, description: str, *, named: bool = False) -> Any:
    return Field(
        default=default,
        pattern=NAMED_CALENDAR_FIELD if named else CALENDAR_FIELD,
        max_length=200,
        description=description,
    )


class CalendarSpec(_Spec):
    """Matching times, field by field, in cron syntax (``*``, ``5``, ``1-5``, ``*/15``)."""

    second: str = _calendar_field("0", "seconds 0-59")
    minute: str = _calendar_field("0", "minutes 0-59")
    hour: str = _calendar_field("0", "hours 0-23")
    day_of_month: str = _calendar_field("*", "days of the month 1-31")
    month: str = _calendar_field("*", "months 1-12 or JAN-DEC", named=True)
    day_of_week: str = _calendar_field(
        "*", "days of the week 0-6 (0 is Sunday) or SUN-SAT", named=True
    )
    year: str = _calendar_field("*", "years, e.g. 2027 or 2027-2030")
    comment: str | None = Field(default=None, max_length=200)


class SchedulePolicy(_Spec):
    """What happens when runs overlap, are missed, or fail."""

    overlap: Literal[
        "Skip", "BufferOne", "BufferAll", "CancelOther", "TerminateOther", "AllowAll"
    ] = Field(default="Skip", description="what to do when a run is due while one still runs")
    catchup_window: Duration | None = Field(
        default=None,
        description="how far back missed runs are still taken after an outage (Temporal: 1y)",
    )
    pause_on_failure: bool = False


class RetryPolicySpec(_Spec):
    """Retries of the started workflow (Temporal's RetryPolicy)."""

    initial_interval: Duration | None = None
    backoff_coefficient: float | None = Field(default=None, ge=1, le=100)
    maximum_interval: Duration | None = None
    maximum_attempts: int | None = Field(default=None, ge=0, le=1000)
    non_retryable_error_types: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=50
    )


class WorkflowAction(_Spec):
    """The workflow each action starts."""

    type: str = Field(min_length=1, max_length=200, description="workflow type name")
    task_queue: str = Field(min_length=1, max_length=200)
    id: str | None = Field(
        default=None,
        pattern=_ID,
        max_length=200,
        description="base workflow id (Temporal appends the scheduled time); default the "
        "schedule id",
    )
    args: list[Any] = Field(default_factory=list, max_length=20, description="JSON arguments")
    execution_timeout: Duration | None = None
    run_timeout: Duration | None = None
    task_timeout: Duration | None = None
    retry_policy: RetryPolicySpec | None = None
    memo: dict[str, Any] = Field(default_factory=dict)
    search_attributes: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict,
        description="Keyword search attributes (registered in the namespace) on every run",
    )


class TemporalTarget(_Spec):
    """Where the schedule lives in Temporal."""

    namespace: str | None = Field(
        default=None, min_length=1, max_length=200, description="default: the operator's"
    )
    schedule_id: str | None = Field(
        default=None,
        pattern=_ID,
        max_length=200,
        description="default <kubernetes-namespace>.<name>",
    )


class ScheduleSpec(_Spec):
    """A Temporal schedule, in Kubernetes idiom."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "(has(self.cron) && size(self.cron) > 0) || "
                "(has(self.intervals) && size(self.intervals) > 0) || "
                "(has(self.calendars) && size(self.calendars) > 0)",
                "give at least one of cron, intervals or calendars",
            ),
            (
                "!has(self.startAt) || !has(self.endAt) || self.endAt > self.startAt",
                "endAt must be after startAt",
            ),
        )
    )

    suspend: bool = Field(default=False, description="pause the schedule (no new runs)")
    cron: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=20,
        description="cron expressions ('0 6 * * *', '@hourly'); evaluated in timeZone",
    )
    intervals: list[Interval] = Field(default_factory=list, max_length=20)
    calendars: list[CalendarSpec] = Field(default_factory=list, max_length=20)
    skip: list[CalendarSpec] = Field(
        default_factory=list, max_length=20, description="times that never run"
    )
    time_zone: TimeZone = "UTC"
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    jitter: Duration | None = None
    policy: SchedulePolicy = SchedulePolicy()
    remaining_actions: int | None = Field(
        default=None, ge=0, description="stop after this many more runs (unset: unlimited)"
    )
    workflow: WorkflowAction
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        default="Delete",
        description="Delete: deleting the resource deletes the Temporal schedule; Orphan: keeps it",
    )
    temporal: TemporalTarget = TemporalTarget()
    note: str | None = Field(default=None, max_length=500, description="shown in Temporal")

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str) -> str:
        return _zone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: list[str]) -> list[str]:
        for expression in value:
            fields = expression.split()
            if not (expression.startswith("@") and len(fields) == 1) and not 5 <= len(fields) <= 7:
                raise ValueError(
                    f"{expression!r} is not a cron expression ('0 6 * * *' or '@daily')"
                )
        return value

    @model_validator(mode="after")
    def _rules(self) -> Self:
        if not (self.cron or self.intervals or self.calendars):
            raise ValueError("give at least one of cron, intervals or calendars")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("endAt must be after startAt")
        return self

    def when(self) -> str:
        """One line for people: what the schedule's times are."""
        parts = list(self.cron)
        parts += [
            f"every {_short(i.every)}" + (f"+{_short(i.offset)}" if i.offset else "")
            for i in self.intervals
        ]
        parts += [c.comment or _calendar_text(c) for c in self.calendars]
        return "; ".join(parts)


def _short(value: timedelta) -> str:
    return format_duration(value)


def _calendar_text(calendar: CalendarSpec) -> str:
    return (
        f"{calendar.second} {calendar.minute} {calendar.hour} {calendar.day_of_month} "
        f"{calendar.month} {calendar.day_of_week}"
    )


class Schedule(BaseModel):
    """A ``Schedule`` document (``kubectl apply`` or ``muster apply``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Literal["muster.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Schedule"]
    metadata: Metadata
    spec: ScheduleSpec


def check_calendar_field(value: str) -> bool:
    """Whether a calendar field has the allowed syntax (the CRD's pattern)."""
    return bool(_CALENDAR_FIELD_RE.match(value))


def utc(value: datetime | None) -> datetime | None:
    """An aware datetime in UTC (None stays None)."""
    return value.astimezone(UTC) if value else None


# -- status (written by the operator only) ---------------------------------------------


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


KOPF_STATUS_DESCRIPTION = (
    "The operator's bookkeeping (kopf): the spec it last handled and the progress of "
    "handlers being retried. Kept in status, not annotations, so a reconcile is one status "
    "write; do not edit."
)


class Condition(_Status):
    """A Kubernetes-style condition (``metav1.Condition``)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: datetime
    observed_generation: int | None = None


class ActionRef(_Status):
    """One workflow a schedule started."""

    workflow_id: str
    run_id: str | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None


class ActionCounters(_Status):
    """Temporal's counters of a schedule."""

    taken: int = 0
    missed_catchup_window: int = 0
    skipped_overlap: int = 0


class ScheduleStatus(_Status):
    """What the operator last saw and did."""

    kopf: dict[str, Any] | None = Field(default=None, description=KOPF_STATUS_DESCRIPTION)
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    schedule_id: str | None = None
    temporal_namespace: str | None = None
    summary: str | None = Field(default=None, description="the schedule's times, for people")
    next_action_times: list[datetime] = Field(default_factory=list)
    last_action_time: datetime | None = None
    recent_actions: list[ActionRef] = Field(default_factory=list)
    running_workflows: list[ActionRef] = Field(default_factory=list)
    actions: ActionCounters | None = None
    last_handled_trigger: str | None = Field(
        default=None, description="the muster.io/trigger token acted on last"
    )
    last_handled_backfill: str | None = Field(
        default=None, description="the token of the muster.io/backfill request acted on last"
    )
    synced_fingerprint: str | None = Field(
        default=None, description="hash of Temporal's schedule as the operator last wrote it"
    )
    last_sync_time: datetime | None = Field(
        default=None,
        description="when the operator last wrote the Temporal schedule (a resync that finds "
        "nothing to change leaves it)",
    )


class ApprovalPolicyStatus(_Status):
    """What the operator last saw and did for a policy."""

    kopf: dict[str, Any] | None = Field(default=None, description=KOPF_STATUS_DESCRIPTION)
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    published_sha256: str | None = Field(
        default=None, description="hash of the policy snapshot requests pin"
    )
    reminder_schedule_id: str | None = None
    reminder_fingerprint: str | None = Field(
        default=None, description="hash of the reminder schedule as the operator last wrote it"
    )
    pending_requests: int | None = Field(
        default=None, description="approval requests of this policy that wait for a decision"
    )
    last_sync_time: datetime | None = None
