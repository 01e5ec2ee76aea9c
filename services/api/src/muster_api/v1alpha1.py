"""Muster's custom resources, ``muster.io/v1alpha1``: ``Schedule`` and ``ApprovalPolicy``.

These pydantic models are the single source of truth: ``make generate`` turns them into the
CRD YAML in ``charts/muster/files/crds`` (see :mod:`muster_operator.crdgen`), the operator
validates every resource with them before it touches Temporal, and the approval worker and
the gateway read published policies with them. Cross-field rules exist twice on purpose: as
pydantic validators (for ``muster apply`` without Kubernetes) and as CEL rules
(``x-kubernetes-validations``) that the API server enforces on ``kubectl apply``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from muster_api.common import Money

GROUP = "muster.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
REMINDERS_ANNOTATION = "muster.io/reminders"
"""``schedule`` on a published policy: its reminder schedule sends reminders, not requests."""

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def parse_duration(value: Any) -> timedelta:
    """``7d``, ``72h``, ``1h30m``, ``90s`` (or a timedelta/seconds) to a positive timedelta."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match or not value.strip():
            raise ValueError(f"{value!r} is not a duration like 7d, 72h, 1h30m or 90s")
        parts = {k: int(v) for k, v in match.groupdict().items() if v}
        result = timedelta(
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    else:
        # pydantic reports a ValueError as a validation error (a TypeError would escape).
        raise ValueError(f"{value!r} is not a duration like 7d, 72h, 1h30m or 90s")  # noqa: TRY004
    if result <= timedelta(0):
        raise ValueError("must be longer than zero")
    return result


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration` (``7d``, ``3d12h``)."""
    seconds = int(value.total_seconds())
    days, seconds = divmod(seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    text = "".join(
        f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n
    )
    return text or "0s"


DURATION_PATTERN = r"^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$"

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    # What the CRD schema says (the API server checks it on kubectl apply).
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "minLength": 2,
            "maxLength": 32,
            "x-kubernetes-validations": [
                {
                    "rule": "self.matches('[1-9]')",
                    "message": "must be a duration longer than zero like 7d, 72h, 1h30m or 90s",
                }
            ],
        }
    ),
]


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
    AfterValidator(_zone),
    Field(
        min_length=1,
        max_length=64,
        json_schema_extra=_cel(TIME_ZONE_RULE),
        description="an IANA time zone (tz database name) like UTC or Europe/Berlin",
    ),
]
"""A time zone as the tz database names it; the API server checks it with CEL too."""

OverlapPolicy = Literal[
    "Skip", "BufferOne", "BufferAll", "CancelOther", "TerminateOther", "AllowAll"
]
"""What Temporal does when a run is due while another still runs."""


class _Spec(BaseModel):
    """camelCase in documents, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ApproverSet(_Spec):
    """People, by user id and by group."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.users) && size(self.users) > 0) || "
                    "(has(self.groups) && size(self.groups) > 0)",
                    "message": "name at least one user or group",
                }
            ]
        }
    )

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if not self.users and not self.groups:
            raise ValueError("name at least one user or group")
        return self


class Amount(_Spec):
    """An amount in minor units (``amountMinor: 100000, currency: EUR`` is 1,000.00 EUR)."""

    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    def money(self) -> Money:
        """As the Money every other contract uses."""
        return Money(amount_minor=self.amount_minor, currency=self.currency)


class AppliesTo(_Spec):
    """Which requests a policy governs (used to pick a policy when none is named)."""

    kinds: list[str] = Field(default_factory=list, description="request kinds; empty: any")
    min_amount: Amount | None = Field(default=None, description="from this amount on")


class EscalationStep(_Spec):
    """When the current level times out: who else may decide, and for how long."""

    to: ApproverSet
    timeout: Duration
    required_approvals: int | None = Field(default=None, ge=1)


class Reminders(_Spec):
    """Remind approvers who have not decided yet, on a cron cadence."""

    cron: str = Field(
        description="five-field cron expression, e.g. '0 9 * * 1-5'",
        min_length=9,
        max_length=200,
        pattern=r"^\S+\s+\S+\s+\S+\s+\S+\s+\S+$",
    )
    time_zone: TimeZone = "UTC"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        message = f"{value!r} is not a five-field cron expression like '0 9 * * 1-5'"
        if len(value.split()) != 5:
            raise ValueError(message)
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError:
            raise ValueError(message) from None
        return value

    def next_after(self, moment: datetime) -> datetime:
        """The first reminder time strictly after ``moment`` (aware), in UTC."""
        local = moment.astimezone(ZoneInfo(self.time_zone))
        upcoming = next(iter(CronSim(self.cron, local)))
        return upcoming.astimezone(UTC)


class SecretRef(_Spec):
    """A key of a Kubernetes Secret; workers read it from ``<secrets dir>/<name>/<key>``."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class EmailChannel(_Spec):
    """E-mail to approvers (and the requester, about the outcome)."""

    enabled: bool = True
    notify_requester: bool = True


class WebhookChannel(_Spec):
    """A Slack-compatible JSON webhook; its URL is a secret."""

    url_secret_ref: SecretRef


class Notifications(_Spec):
    """Where notifications go."""

    email: EmailChannel | None = EmailChannel()
    webhook: WebhookChannel | None = None


class ApprovalPolicySpec(_Spec):
    """Who may approve what, and what happens when nobody does."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.approvers.groups) && size(self.approvers.groups) > 0) || "
                    "!has(self.requiredApprovals) || self.requiredApprovals <= "
                    "(has(self.approvers.users) ? size(self.approvers.users) : 0)",
                    "message": "requiredApprovals must not exceed the number of approvers "
                    "named in approvers.users (or name a group)",
                }
            ]
        }
    )

    applies_to: AppliesTo = AppliesTo()
    approvers: ApproverSet
    required_approvals: int = Field(default=1, ge=1, le=100)
    allow_self_approval: bool = False
    veto: Literal["AnyReject", "Quorum"] = Field(
        default="AnyReject",
        description="AnyReject: one rejection decides; Quorum: rejected once the quorum "
        "can no longer be reached",
    )
    timeout: Duration = timedelta(days=7)
    escalations: list[EscalationStep] = Field(default_factory=list, max_length=10)
    on_timeout: Literal["Reject", "Approve"] = "Reject"
    reminders: Reminders | None = None
    notifications: Notifications = Notifications()

    @model_validator(mode="after")
    def _reachable_quorum(self) -> Self:
        if not self.approvers.groups and self.required_approvals > len(self.approvers.users):
            raise ValueError(
                f"requiredApprovals is {self.required_approvals} but only "
                f"{len(self.approvers.users)} approver(s) are named and no group"
            )
        return self


class Metadata(BaseModel):
    """The part of Kubernetes object metadata a policy uses."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    namespace: str = "default"
    generation: int = 1
    annotations: dict[str, str] = Field(default_factory=dict)


class ApprovalPolicy(BaseModel):
    """An ``ApprovalPolicy`` document."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Literal["muster.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ApprovalPolicy"]
    metadata: Metadata
    spec: ApprovalPolicySpec


# One field of a calendar: "*", "5", "1-5", "*/15", "0-30/10", lists of those; months and
# days of the week may also be named ("MON-FRI", "JAN,JUL").
_NUMBER_ITEM = r"(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?"
_NAMED_ITEM = r"(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?"
CALENDAR_FIELD = rf"^{_NUMBER_ITEM}(,{_NUMBER_ITEM})*$"
NAMED_CALENDAR_FIELD = rf"^{_NAMED_ITEM}(,{_NAMED_ITEM})*$"
_CALENDAR_FIELD_RE = re.compile(NAMED_CALENDAR_FIELD)


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

    overlap: OverlapPolicy = Field(
        default="Skip", description="what to do when a run is due while one still runs"
    )
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
