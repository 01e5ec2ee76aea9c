"""Muster's custom resources, ``muster.io/v1alpha1``: ``Schedule``, ``ApprovalPolicy`` and
``WorkerDeployment``.

These pydantic models are the single source of truth: ``make generate`` turns them into the
CRD YAML in ``charts/muster/files/crds`` (see :mod:`muster_operator.crdgen`), the operator
validates every resource with them before it touches Temporal (and its admission webhook
refuses, at ``kubectl apply``, what they refuse), and the approval worker and the gateway
read published policies with them. Rules exist twice on purpose: as pydantic validators
(for the webhook, the reconciler and ``muster apply``) and, wherever CEL can express them,
as CEL rules (``x-kubernetes-validations``) that the API server enforces even while the
operator is down. Cron expressions follow :mod:`muster_api.cron`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from muster_api import cron as cron_dialect
from muster_api.common import Money

GROUP = "muster.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
REMINDERS_ANNOTATION = "muster.io/reminders"
"""``schedule`` on a published policy: its reminder schedule sends reminders, not requests."""

CEL = "x-kubernetes-validations"

# -- durations ------------------------------------------------------------------------------

MAX_DURATION = timedelta(days=36_500)
"""Longest duration any field takes (100 years): far beyond any use, and inside what
Python's timedelta, protobuf's Duration and Go's time.Duration can hold."""
DURATION_SYNTAX = "is not a duration like 7d, 72h, 1h30m or 90s (at most 36500d)"
DURATION_RANGE = "must be longer than zero and at most 36500d (100 years)"
# Digits per unit are bounded so that no string the pattern admits overflows anything.
_DURATION_BODY = r"([0-9]{1,5}d)?([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,9}s)?"
DURATION_PATTERN = rf"^{_DURATION_BODY}$"
_DURATION = re.compile(
    r"^(?:(?P<d>[0-9]{1,5})d)?(?:(?P<h>[0-9]{1,6})h)?(?:(?P<m>[0-9]{1,7})m)?(?:(?P<s>[0-9]{1,9})s)?$"
)


def parse_duration(value: Any) -> timedelta:
    """``7d``, ``72h``, ``1h30m``, ``90s`` (or a timedelta/seconds) to a timedelta longer
    than zero and at most :data:`MAX_DURATION`."""
    text = value if isinstance(value, str) else None
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match or not value.strip():
            raise ValueError(f"'{value}' {DURATION_SYNTAX}")
        parts = {k: int(v) for k, v in match.groupdict().items() if v}
        result = timedelta(
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    else:
        # pydantic reports a ValueError as a validation error (a TypeError would escape).
        raise ValueError(f"{value!r} {DURATION_SYNTAX}")  # noqa: TRY004
    if not timedelta(0) < result <= MAX_DURATION:
        raise ValueError(
            f"'{text if text is not None else format_duration(result)}' {DURATION_RANGE}"
        )
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


def cel_seconds(path: str) -> str:
    """A CEL expression for the seconds in the duration string at ``path``."""
    terms = [
        f"({path}.matches('[0-9]+{unit}') ? "
        f"int({path}.find('[0-9]+{unit}').replace('{unit}', '')) * {factor} : 0)"
        for unit, factor in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
    ]
    return "(" + " + ".join(terms) + ")"


def _quoted(path: str) -> str:
    """A CEL message fragment: the value at ``path`` in single quotes."""
    return f'"\'" + {path} + "\'"'


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    # What the CRD schema says (the API server checks it on kubectl apply).
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 2,
            "maxLength": 32,
            CEL: [
                {
                    "rule": f"self.matches('{DURATION_PATTERN}')",
                    "messageExpression": f'{_quoted("self")} + " {DURATION_SYNTAX}"',
                },
                {
                    "rule": f"!self.matches('{DURATION_PATTERN}') || "
                    f"({cel_seconds('self')} > 0 && "
                    f"{cel_seconds('self')} <= {int(MAX_DURATION.total_seconds())})",
                    "messageExpression": f'{_quoted("self")} + " {DURATION_RANGE}"',
                },
            ],
        }
    ),
]
"""A duration as people write it: ``7d``, ``72h``, ``1h30m``, ``90s``."""


# -- time zones -----------------------------------------------------------------------------

_ZONE_NAME = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
# Names the tz database files carry that are not places (Go reads "Local" as the server's
# own zone; the others are artefacts of the database's layout).
_NOT_ZONES = ("Local", "localtime", "posixrules", "Factory")
ZONE_MESSAGE = (
    "is not an IANA time zone like UTC or Europe/Berlin (a UTC offset like +05:00 or the "
    "server's Local zone is not one)"
)


def check_zone(value: str) -> str:
    """``value`` if it names a tz database zone (not an offset, not ``Local``)."""
    if not re.fullmatch(_ZONE_NAME, value) or value in _NOT_ZONES:
        raise ValueError(f"'{value}' {ZONE_MESSAGE}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{value}' {ZONE_MESSAGE}") from None
    return value


TimeZone = Annotated[
    str,
    AfterValidator(check_zone),
    Field(
        min_length=1,
        max_length=64,
        json_schema_extra={
            CEL: [
                {
                    "rule": f"self.matches('{_ZONE_NAME}') && !(self in "
                    f"[{', '.join(repr(z) for z in _NOT_ZONES)}]) && (self == 'UTC' || "
                    "timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0)",
                    "messageExpression": f'{_quoted("self")} + " {ZONE_MESSAGE}"',
                }
            ]
        },
    ),
]
"""A time zone as the tz database names it; the API server checks it with CEL too."""

DST = (
    "Daylight saving time, as Temporal handles it: a time that does not exist on the day "
    "clocks go forward is not run that day (a 02:30 job in Europe/Berlin has no run on the "
    "last Sunday of March); on the day clocks go back, a time inside the repeated hour runs "
    "once, and further times inside that hour may run an hour late. Use UTC for jobs that "
    "must run exactly once per period."
)

# -- cron expressions -------------------------------------------------------------------------


def _cron(value: str) -> str:
    try:
        cron_dialect.parse_cron(value)
    except cron_dialect.CronError as exc:
        raise ValueError(str(exc)) from None
    return value


CRON_DESCRIPTION = (
    "A five-field cron expression, 'minute hour day-of-month month day-of-week', read as "
    "Temporal reads it: values like '*', '5', '1-5', '*/15', '10-50/20' and lists like "
    "'0,30'; months 1-12 or JAN-DEC, days of the week 0-7 (0 and 7 are Sunday) or SUN-SAT; "
    "or @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually). Refused because "
    "Temporal would read them differently from standard cron: six or seven fields (Temporal "
    "reads a sixth field as a year: Quartz's '0 0 6 * * *' would run on the 6th of each "
    "month), '#' (a comment to Temporal: '0 9 * * 1#2' would run every Monday), a day of "
    "the month together with a day of the week (Temporal runs only when both match, cron "
    "when either does), '1-7' as days of the week (Temporal drops Sunday), '@every' (use "
    "intervals) and a TZ= prefix (use timeZone). " + DST
)

CronString = Annotated[
    str,
    AfterValidator(_cron),
    Field(min_length=1, max_length=200, json_schema_extra={CEL: cron_dialect.cel_cron_rules()}),
]

# -- names and ids ------------------------------------------------------------------------------

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Kubernetes object name: lower-case letters, digits, '-' and '.', at most 253."""
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"

MAX_SCHEDULE_ID = 232
"""Longest Temporal schedule id Muster creates. Temporal runs a schedule as the workflow
``temporal-sys-scheduler:<id>`` (23 characters more), and its SQL visibility stores
workflow ids and keyword search attributes in 255-character columns."""
MAX_KEYWORD = 255
"""Longest keyword search attribute value (Temporal's SQL visibility columns)."""


def _schedule_id_problem(schedule_id: str, how: str) -> str | None:
    if len(schedule_id) <= MAX_SCHEDULE_ID:
        return None
    return (
        f"the Temporal schedule id {how} would be {len(schedule_id)} characters; Temporal "
        f"keeps it, prefixed with 'temporal-sys-scheduler:', in 255-character columns, so it "
        f"may have at most {MAX_SCHEDULE_ID}"
    )


# -- ApprovalPolicy -----------------------------------------------------------------------------


def _cel(*rules: tuple[str, str]) -> dict[str, Any]:
    return {CEL: [{"rule": rule, "message": message} for rule, message in rules]}


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
    """People, by user id and by group (at least one of either)."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "(has(self.users) && size(self.users) > 0) || "
                "(has(self.groups) && size(self.groups) > 0)",
                "name at least one user or group",
            )
        )
    )

    users: list[str] = Field(
        default_factory=list, description="User ids (as the directory names them)."
    )
    groups: list[str] = Field(
        default_factory=list, description="Groups; every member of each may decide."
    )

    @model_validator(mode="after")
    def _someone(self) -> Self:
        if not self.users and not self.groups:
            raise ValueError("name at least one user or group")
        return self


class Amount(_Spec):
    """An amount in minor units (``amountMinor: 100000, currency: EUR`` is 1,000.00 EUR)."""

    amount_minor: int = Field(ge=0, description="The amount in minor units (cents).")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, like EUR.")

    def money(self) -> Money:
        """As the Money every other contract uses."""
        return Money(amount_minor=self.amount_minor, currency=self.currency)


class AppliesTo(_Spec):
    """Which requests a policy governs (used to pick a policy when none is named)."""

    kinds: list[str] = Field(
        default_factory=list, description="Request kinds it governs; empty: any kind."
    )
    min_amount: Amount | None = Field(
        default=None,
        description="Requests from this amount on (same currency); unset: any amount.",
    )


class EscalationStep(_Spec):
    """When the current level times out: who else may decide, and for how long."""

    to: ApproverSet = Field(description="Who may decide from this step on.")
    timeout: Duration = Field(description="How long this step waits for a decision.")
    required_approvals: int | None = Field(
        default=None,
        ge=1,
        description="Approvals needed at this step; unset: the policy's requiredApprovals.",
    )


class Reminders(_Spec):
    """Remind approvers who have not decided yet, on a cron cadence."""

    cron: CronString = Field(description="When reminders go out. " + CRON_DESCRIPTION)
    time_zone: TimeZone = Field(
        default="UTC", description="The IANA time zone cron is evaluated in, like Europe/Berlin."
    )

    def next_after(self, moment: datetime) -> datetime:
        """The first reminder time strictly after ``moment`` (aware), in UTC, as Temporal's
        reminder schedule would send it."""
        found = cron_dialect.parse_cron(self.cron).next_after(moment, self.time_zone)
        if found is None:
            raise ValueError(f"'{self.cron}' has no reminder time after {moment} before 2101")
        return found


class SecretRef(_Spec):
    """A key of a Kubernetes Secret; workers read it from ``<secrets dir>/<name>/<key>``."""

    name: str = Field(min_length=1, description="The Secret's name (in the release namespace).")
    key: str = Field(min_length=1, description="The key inside the Secret.")


class EmailChannel(_Spec):
    """E-mail to approvers (and the requester, about the outcome)."""

    enabled: bool = Field(default=True, description="Send e-mail at all.")
    notify_requester: bool = Field(
        default=True, description="Tell the requester the outcome by e-mail."
    )


class WebhookChannel(_Spec):
    """A Slack-compatible JSON webhook; its URL is a secret."""

    url_secret_ref: SecretRef = Field(description="The Secret key that holds the webhook URL.")


class Notifications(_Spec):
    """Where notifications go."""

    email: EmailChannel | None = Field(
        default=EmailChannel(),
        description="E-mail to approvers (and to the requester, about the outcome); null "
        "turns e-mail off.",
    )
    webhook: WebhookChannel | None = Field(default=None, description="A chat webhook; unset: none.")


class ApprovalPolicySpec(_Spec):
    """Who may approve what, and what happens when nobody does."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "(has(self.approvers.groups) && size(self.approvers.groups) > 0) || "
                "!has(self.requiredApprovals) || self.requiredApprovals <= "
                "(has(self.approvers.users) ? size(self.approvers.users) : 0)",
                "requiredApprovals must not exceed the number of approvers "
                "named in approvers.users (or name a group)",
            )
        )
    )

    applies_to: AppliesTo = Field(
        default=AppliesTo(), description="Which requests the policy governs."
    )
    approvers: ApproverSet = Field(description="Who may decide.")
    required_approvals: int = Field(
        default=1, ge=1, le=100, description="Approvals needed (the quorum)."
    )
    allow_self_approval: bool = Field(
        default=False, description="Whether a requester may approve their own request."
    )
    veto: Literal["AnyReject", "Quorum"] = Field(
        default="AnyReject",
        description="AnyReject: one rejection decides; Quorum: rejected once the quorum "
        "can no longer be reached.",
    )
    timeout: Duration = Field(
        default=timedelta(days=7),
        description="How long a request waits for a decision before it escalates (or, "
        "without escalations, ends as onTimeout says).",
    )
    escalations: list[EscalationStep] = Field(
        default_factory=list,
        max_length=10,
        description="Who decides next when a level times out, in order.",
    )
    on_timeout: Literal["Reject", "Approve"] = Field(
        default="Reject", description="The outcome when the last level times out."
    )
    reminders: Reminders | None = Field(
        default=None,
        description="Reminders to approvers who have not decided; unset: no reminders.",
    )
    notifications: Notifications = Field(
        default=Notifications(), description="Where notifications go."
    )

    @model_validator(mode="after")
    def _reachable_quorum(self) -> Self:
        if not self.approvers.groups and self.required_approvals > len(self.approvers.users):
            raise ValueError(
                f"requiredApprovals is {self.required_approvals} but only "
                f"{len(self.approvers.users)} approver(s) are named and no group"
            )
        return self


class Metadata(BaseModel):
    """The part of Kubernetes object metadata Muster uses."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)
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

    @model_validator(mode="after")
    def _ids_fit(self) -> Self:
        reminders = f"{self.metadata.namespace}.{self.metadata.name}.reminders"
        problem = _schedule_id_problem(reminders, f"of the reminders, '{reminders}',")
        if problem:
            raise ValueError(
                f"metadata.name: {problem}: the namespace and name together may have at "
                f"most {MAX_SCHEDULE_ID - len('..reminders')} characters; use a shorter name"
            )
        return self


# -- Schedule -----------------------------------------------------------------------------------


class Interval(_Spec):
    """Every ``every``, shifted by ``offset`` from the Unix epoch (``every: 1h, offset: 15m``
    runs at hh:15 UTC; time zones do not apply to intervals)."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.offset) || !self.offset.matches('" + DURATION_PATTERN + "') || "
                "!self.every.matches('" + DURATION_PATTERN + "') || "
                f"{cel_seconds('self.offset')} < {cel_seconds('self.every')}",
                "offset must be shorter than every",
            )
        )
    )

    every: Duration = Field(description="How often, at least 1s.")
    offset: Duration | None = Field(
        default=None, description="Shift of each run, shorter than every; unset: none."
    )

    @model_validator(mode="after")
    def _offset_below_every(self) -> Self:
        if self.offset is not None and self.offset >= self.every:
            raise ValueError("offset must be shorter than every")
        return self


def _valid(field: cron_dialect.Field) -> AfterValidator:
    def check(value: str) -> str:
        try:
            cron_dialect.field_items(value, field)
        except cron_dialect.CronError as exc:
            raise ValueError(str(exc)) from None
        return value

    return AfterValidator(check)


_FIELD_SYNTAX = "'*', '5', '1-5', '*/15', '10-50/20' or lists like '0,30'"


def _calendar_field(field: cron_dialect.Field, default: str, what: str) -> Any:
    return Field(
        default=default,
        min_length=1,
        max_length=200,
        description=f"{what}: {_FIELD_SYNTAX}.",
        json_schema_extra={CEL: cron_dialect.cel_field_rules(field)},
    )


class CalendarSpec(_Spec):
    """Matching times, field by field: a time matches when every field matches (the day of
    the month *and* the day of the week, unlike cron). Unset fields default to second 0,
    minute 0, hour 0 and every day, month and year, so an entry that sets only dayOfWeek
    matches 00:00:00 on those days, nothing else (set hour and minute to '*' to mean whole
    days, for example in skip)."""

    second: Annotated[str, _valid(cron_dialect.SECOND)] = _calendar_field(
        cron_dialect.SECOND, "0", "Seconds 0-59"
    )
    minute: Annotated[str, _valid(cron_dialect.MINUTE)] = _calendar_field(
        cron_dialect.MINUTE, "0", "Minutes 0-59"
    )
    hour: Annotated[str, _valid(cron_dialect.HOUR)] = _calendar_field(
        cron_dialect.HOUR, "0", "Hours 0-23"
    )
    day_of_month: Annotated[str, _valid(cron_dialect.DAY_OF_MONTH)] = _calendar_field(
        cron_dialect.DAY_OF_MONTH, "*", "Days of the month 1-31"
    )
    month: Annotated[str, _valid(cron_dialect.MONTH)] = _calendar_field(
        cron_dialect.MONTH, "*", "Months 1-12 or JAN-DEC"
    )
    day_of_week: Annotated[str, _valid(cron_dialect.DAY_OF_WEEK)] = _calendar_field(
        cron_dialect.DAY_OF_WEEK, "*", "Days of the week 0-7 (0 and 7 are Sunday) or SUN-SAT"
    )
    year: Annotated[str, _valid(cron_dialect.YEAR)] = _calendar_field(
        cron_dialect.YEAR, "*", f"Years {cron_dialect.MIN_YEAR}-{cron_dialect.MAX_YEAR}"
    )
    comment: str | None = Field(
        default=None, max_length=200, description="Shown in Temporal; unset: none."
    )


class SchedulePolicy(_Spec):
    """What happens when runs overlap, are missed, or fail."""

    overlap: OverlapPolicy = Field(
        default="Skip",
        description="What to do when a run is due while one still runs: Skip it, BufferOne "
        "(run it after), BufferAll, CancelOther, TerminateOther or AllowAll.",
    )
    catchup_window: Duration | None = Field(
        default=None,
        description="How far back missed runs are still taken after an outage; unset: "
        "Temporal's default (1 year).",
    )
    pause_on_failure: bool = Field(
        default=False, description="Pause the schedule when a run fails."
    )


class RetryPolicySpec(_Spec):
    """Retries of the started workflow (Temporal's RetryPolicy)."""

    initial_interval: Duration | None = Field(
        default=None, description="Wait before the first retry; unset: Temporal's 1s."
    )
    backoff_coefficient: float | None = Field(
        default=None, ge=1, le=100, description="Growth of the wait per retry; unset: 2."
    )
    maximum_interval: Duration | None = Field(
        default=None, description="Longest wait; unset: 100 times initialInterval."
    )
    maximum_attempts: int | None = Field(
        default=None, ge=0, le=1000, description="Attempts in all; unset or 0: unlimited."
    )
    non_retryable_error_types: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list,
        max_length=50,
        description="Error types that are not retried.",
    )


# Muster sets these on every run a Schedule starts.
RESERVED_SEARCH_ATTRIBUTES = ("MusterPattern", "MusterSchedule")
_SEARCH_ATTRIBUTE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class WorkflowAction(_Spec):
    """The workflow each run starts."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            *[
                (
                    f"!has(self.searchAttributes) || !('{name}' in self.searchAttributes)",
                    f"searchAttributes.{name} is set by Muster on every run (MusterPattern="
                    "schedule, MusterSchedule=<namespace>/<name>); remove it",
                )
                for name in RESERVED_SEARCH_ATTRIBUTES
            ],
            (
                "!has(self.searchAttributes) || self.searchAttributes.all(k, "
                f"k.matches('{_SEARCH_ATTRIBUTE_NAME}'))",
                "searchAttributes names are letters, digits and '_' (registered in Temporal)",
            ),
        )
    )

    type: str = Field(min_length=1, max_length=200, description="The workflow type name.")
    task_queue: str = Field(
        min_length=1, max_length=200, description="The task queue its worker polls."
    )
    id: str | None = Field(
        default=None,
        pattern=_ID,
        max_length=200,
        description="Base workflow id (Temporal appends the scheduled time); unset: the "
        "schedule id.",
    )
    args: list[Any] = Field(
        default_factory=list, max_length=20, description="JSON arguments of the workflow."
    )
    execution_timeout: Duration | None = Field(
        default=None, description="Limit of the whole workflow with retries; unset: none."
    )
    run_timeout: Duration | None = Field(
        default=None, description="Limit of one workflow run; unset: none."
    )
    task_timeout: Duration | None = Field(
        default=None, description="Limit of one workflow task; unset: Temporal's 10s."
    )
    retry_policy: RetryPolicySpec | None = Field(
        default=None, description="Retries of the workflow; unset: no retries."
    )
    memo: dict[str, Any] = Field(
        default_factory=dict, description="Memo fields of every run (JSON values)."
    )
    search_attributes: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict,
        description="Keyword search attributes of every run. Each must be registered in the "
        "Temporal namespace with type Keyword (the admission webhook checks); MusterPattern "
        "and MusterSchedule are Muster's.",
    )

    @model_validator(mode="after")
    def _not_reserved(self) -> Self:
        for name in RESERVED_SEARCH_ATTRIBUTES:
            if name in self.search_attributes:
                raise ValueError(
                    f"searchAttributes.{name} is set by Muster on every run (MusterPattern="
                    "schedule, MusterSchedule=<namespace>/<name>); remove it"
                )
        for name in self.search_attributes:
            if not re.fullmatch(_SEARCH_ATTRIBUTE_NAME, name):
                raise ValueError(
                    "searchAttributes names are letters, digits and '_' (registered in "
                    f"Temporal): {name!r} is not"
                )
        return self


class TemporalTarget(_Spec):
    """Where the schedule lives in Temporal."""

    namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The Temporal namespace (it must exist; the admission webhook checks); "
        "unset: the operator's (TEMPORAL_NAMESPACE).",
    )
    schedule_id: str | None = Field(
        default=None,
        pattern=_ID,
        max_length=200,
        description="The Temporal schedule id; unset: <kubernetes-namespace>.<name>, which "
        f"must then fit in {MAX_SCHEDULE_ID} characters.",
    )


class ScheduleSpec(_Spec):
    """A Temporal schedule, in Kubernetes idiom. Its times are the union of cron, intervals
    and calendars, minus skip, between startAt and endAt."""

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

    suspend: bool = Field(default=False, description="Pause the schedule (no new runs).")
    cron: list[CronString] = Field(
        default_factory=list,
        max_length=20,
        description="Cron expressions, evaluated in timeZone. Each: " + CRON_DESCRIPTION,
    )
    intervals: list[Interval] = Field(
        default_factory=list,
        max_length=20,
        description="Fixed intervals (every, offset), counted from the Unix epoch in UTC.",
    )
    calendars: list[CalendarSpec] = Field(
        default_factory=list,
        max_length=20,
        description="Structured calendars, evaluated in timeZone: a time matches an entry "
        "when all its fields match.",
    )
    skip: list[CalendarSpec] = Field(
        default_factory=list,
        max_length=20,
        description="Times that never run, even when cron, intervals or calendars match. "
        "Mind the defaults: an entry with only dayOfWeek: SAT skips 00:00:00 on Saturdays "
        "and nothing else; add hour: '*' and minute: '*' to skip whole days.",
    )
    time_zone: TimeZone = Field(
        default="UTC",
        description="The IANA time zone (tz database name) cron and calendars are "
        "evaluated in, like Europe/Berlin; not a UTC offset, not Local. " + DST,
    )
    start_at: AwareDatetime | None = Field(
        default=None, description="No runs before this time (RFC 3339); unset: from now."
    )
    end_at: AwareDatetime | None = Field(
        default=None, description="No runs after this time (RFC 3339); unset: no end."
    )
    jitter: Duration | None = Field(
        default=None,
        description="Delay each run by a random amount up to this; Temporal never delays "
        "past the next run and at most about 49 days. Unset: no jitter.",
    )
    policy: SchedulePolicy = Field(
        default=SchedulePolicy(), description="Overlap, catch-up and failure behaviour."
    )
    remaining_actions: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many more runs (at least 1; to stop runs now, set "
        "suspend: true). Unset: unlimited. Changing it resets Temporal's count.",
    )
    workflow: WorkflowAction = Field(description="The workflow each run starts.")
    deletion_policy: Literal["Delete", "Orphan"] = Field(
        default="Delete",
        description="Delete: deleting the resource deletes the Temporal schedule; Orphan: "
        "keeps it.",
    )
    temporal: TemporalTarget = Field(
        default=TemporalTarget(), description="Where the schedule lives in Temporal."
    )
    note: str | None = Field(
        default=None, max_length=500, description="A note shown in Temporal; unset: none."
    )

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

    @model_validator(mode="after")
    def _ids_fit(self) -> Self:
        namespace, name = self.metadata.namespace, self.metadata.name
        if self.spec.temporal.schedule_id is None:
            default = f"{namespace}.{name}"
            problem = _schedule_id_problem(default, f"'{namespace}.<name>'")
            if problem:
                raise ValueError(
                    f"metadata.name: {problem}: the namespace and name together may have at "
                    f"most {MAX_SCHEDULE_ID - 1} characters; use a shorter name or set "
                    "spec.temporal.scheduleId"
                )
        owner = f"{namespace}/{name}"
        if len(owner) > MAX_KEYWORD:
            raise ValueError(
                f"metadata.name: every run carries MusterSchedule={namespace}/<name>, "
                f"{len(owner)} characters; Temporal keeps keyword search attributes in "
                f"{MAX_KEYWORD}-character columns: use a shorter name"
            )
        return self


# -- WorkerDeployment -------------------------------------------------------------------------

ALERTS = ("MusterNonDeterminismError", "MusterWorkflowTaskFailures", "MusterCompensationsFailing")
"""Muster's alerts that carry a worker's build: any of them firing for a new build rolls it
back (``rollout.autoRollback.alerts``)."""
_LABEL_VALUE = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
_WORKFLOW_SPEC = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"


class RolloutStep(_Spec):
    """One step of a progressive rollout: the new build gets ``rampPercentage`` of new
    workflows (and of auto-upgrade workflows at their next task) for ``pause``."""

    ramp_percentage: int = Field(
        ge=1, le=99, description="Percentage of new workflows the new build gets, 1-99."
    )
    pause: Duration = Field(description="How long this step lasts before the next one.")


class ReplayGate(_Spec):
    """Before a new build gets any workflow, the workflows that would move to it are
    replayed on its code, in its own image (a Job running ``python -m
    muster_runtime.replay``): a sample of the running auto-upgrade workflows of the Worker
    Deployment, fetched from Temporal. A build whose code does not replay one of them
    never becomes current. No workflows listed: no gate."""

    workflows: list[Annotated[str, Field(pattern=_WORKFLOW_SPEC, max_length=200)]] = Field(
        default_factory=list,
        max_length=50,
        description="The worker's workflow classes as module:Class (for example "
        "muster_approval.workflows:Approval), imported from the new build's image; empty: "
        "no replay gate.",
    )
    sample_per_type: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Running workflows replayed per workflow type, spread over their start times.",
    )
    timeout: Duration = Field(
        default=timedelta(minutes=10),
        description="How long the gate may take before the rollout stops with ReplayGateTimedOut.",
    )


class AutoRollback(_Spec):
    """Roll a new build back when one of Muster's alerts fires for it (the operator asks
    the Prometheus ``MUSTER_OPERATOR_ROLLOUT__PROMETHEUS_URL`` names; without one there is
    no automatic rollback)."""

    enabled: bool = Field(default=True, description="Watch the alerts and roll back.")
    alerts: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)]] = (
        Field(
            default=list(ALERTS),
            max_length=20,
            description="Alert names that roll a build back when they fire with its "
            "build_id and worker_deployment labels.",
        )
    )
    window: Duration = Field(
        default=timedelta(minutes=15),
        description="How long after becoming current a build is still watched (while it "
        "ramps it always is).",
    )


class Rollout(_Spec):
    """How a new build takes over from the current one."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.strategy) || self.strategy != 'Progressive' || "
                "(has(self.steps) && size(self.steps) > 0)",
                "a Progressive rollout needs steps",
            )
        )
    )

    strategy: Literal["AllAtOnce", "Progressive", "Manual"] = Field(
        default="AllAtOnce",
        description="AllAtOnce: the new build becomes current once its pollers are there "
        "and its replay gate passed; Progressive: it ramps through steps first; Manual: the "
        "operator runs its pods and its gate but leaves routing to people (temporal worker "
        "deployment set-current-version).",
    )
    steps: list[RolloutStep] = Field(
        default_factory=list,
        max_length=20,
        description="Ramp steps of a Progressive rollout, percentages rising; after the "
        "last step's pause the build becomes current.",
    )
    replay_gate: ReplayGate = Field(
        default=ReplayGate(),
        description="The replay gate a new build must pass.",
    )
    auto_rollback: AutoRollback = Field(
        default=AutoRollback(), description="Automatic rollback on Muster's alerts."
    )

    @model_validator(mode="after")
    def _steps(self) -> Self:
        if self.strategy == "Progressive" and not self.steps:
            raise ValueError("a Progressive rollout needs steps")
        percentages = [step.ramp_percentage for step in self.steps]
        if percentages != sorted(set(percentages)):
            raise ValueError(
                f"steps: rampPercentage must rise from step to step, not {percentages}"
            )
        return self


class Sunset(_Spec):
    """What happens to a build's pods once no pinned workflow runs on it any more."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.scaledownDelay) || !has(self.deleteDelay) || "
                "!self.scaledownDelay.matches('" + DURATION_PATTERN + "') || "
                "!self.deleteDelay.matches('" + DURATION_PATTERN + "') || "
                f"{cel_seconds('self.deleteDelay')} >= {cel_seconds('self.scaledownDelay')}",
                "deleteDelay must not be shorter than scaledownDelay",
            )
        )
    )

    scaledown_delay: Duration = Field(
        default=timedelta(hours=1),
        description="How long a drained build keeps its pods (for queries of closed "
        "workflows, and a quick rollback) before they are scaled to zero.",
    )
    delete_delay: Duration = Field(
        default=timedelta(hours=24),
        description="How long after it drained a build's Deployment is deleted.",
    )

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.delete_delay < self.scaledown_delay:
            raise ValueError("deleteDelay must not be shorter than scaledownDelay")
        return self


class ContainerTemplate(BaseModel):
    """A container of the pod template (Kubernetes checks the rest of it)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1, max_length=63, description="The container's name.")
    image: str = Field(min_length=1, max_length=1000, description="The container's image.")


class PodSpecTemplate(BaseModel):
    """The pod's spec (a core/v1 PodSpec; Kubernetes checks it when the operator creates a
    build's Deployment)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    containers: list[ContainerTemplate] = Field(
        min_length=1,
        max_length=20,
        description="The pod's containers; one of them runs the worker.",
    )


class PodTemplate(BaseModel):
    """A core/v1 PodTemplateSpec: the pods of every build."""

    model_config = ConfigDict(extra="allow", frozen=True)

    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Labels and annotations of the pods."
    )
    spec: PodSpecTemplate = Field(description="The pods' spec.")


class WorkerDeploymentSpec(_Spec):
    """A Muster worker run as Temporal Worker Deployment versions, one Kubernetes
    Deployment per build."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.container) || self.template.spec.containers.exists(c, "
                "c.name == self.container)",
                "container must name one of template.spec.containers",
            )
        )
    )

    deployment_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^.\s]+$",
        description="The Temporal Worker Deployment (no dots); unset: metadata.name.",
    )
    temporal_namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The Temporal namespace the workers poll; unset: the operator's "
        "(TEMPORAL_NAMESPACE).",
    )
    settings_prefix: str = Field(
        pattern=r"^[A-Z][A-Z0-9_]*_$",
        max_length=100,
        description="The worker's settings prefix, like MUSTER_APPROVAL_: the operator sets "
        "<prefix>WORKER__BUILD_ID, <prefix>WORKER__DEPLOYMENT_NAME and "
        "<prefix>WORKER__PROMOTE=external in the worker container.",
    )
    container: str | None = Field(
        default=None,
        max_length=63,
        description="The container that runs the worker; unset: the first one.",
    )
    build_id: str | None = Field(
        default=None,
        pattern=_LABEL_VALUE,
        description="The build id of the template's code (an image digest from CI, say). "
        "Unset: the worker image's tag and a hash of the whole template, so that any change "
        "is a new build. Set, a changed template with the same build id replaces that "
        "build's pods in place: only safe when the workflow code did not change.",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Pods of the current build (and of a new build while it rolls out); a "
        "HorizontalPodAutoscaler may set it through the scale subresource.",
    )
    template: PodTemplate = Field(description="The pods of every build (a PodTemplateSpec).")
    rollout: Rollout = Field(default=Rollout(), description="How a new build takes over.")
    sunset: Sunset = Field(default=Sunset(), description="When a drained build's pods go.")

    @model_validator(mode="after")
    def _container(self) -> Self:
        names = [c.name for c in self.template.spec.containers]
        if self.container is not None and self.container not in names:
            raise ValueError(f"container {self.container!r} is not one of {names}")
        return self

    def worker_container(self) -> ContainerTemplate:
        """The container that runs the worker."""
        for container in self.template.spec.containers:
            if container.name == (self.container or container.name):
                return container
        raise AssertionError("validated: the container exists")


class WorkerDeployment(BaseModel):
    """A ``WorkerDeployment`` document."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: Literal["muster.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["WorkerDeployment"]
    metadata: Metadata
    spec: WorkerDeploymentSpec

    @model_validator(mode="after")
    def _deployment_name(self) -> Self:
        if self.spec.deployment_name is None and "." in self.metadata.name:
            raise ValueError(
                f"metadata.name: '{self.metadata.name}' has dots, which a Temporal Worker "
                "Deployment's name cannot have: set spec.deploymentName"
            )
        return self

    @property
    def deployment_name(self) -> str:
        """The Temporal Worker Deployment's name."""
        return self.spec.deployment_name or self.metadata.name


def utc(value: datetime | None) -> datetime | None:
    """An aware datetime in UTC (None stays None)."""
    return value.astimezone(UTC) if value else None


# -- status (written by the operator only) ---------------------------------------------


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


KOPF_STATUS_DESCRIPTION = (
    "The operator's bookkeeping (kopf): digests of the spec fields it last handled (never a "
    "copy of the spec) and the progress of handlers being retried. Kept in status, not "
    "annotations, so a reconcile is one status write; do not edit."
)


class Condition(_Status):
    """A Kubernetes-style condition (``metav1.Condition``)."""

    type: str = Field(
        description="Ready, Synced, Suspended, WorkerAvailable, Published, Progressing, "
        "RolledBack or AlertsWatched."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Why, in one CamelCase word (InvalidSpec, TemporalUnavailable, ...).",
    )
    message: str = Field(default="", max_length=32768, description="Why, for people.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the condition is about."
    )


class ActionRef(_Status):
    """One workflow a schedule started."""

    workflow_id: str = Field(description="The workflow id.")
    run_id: str | None = Field(default=None, description="Its first run id.")
    scheduled_at: datetime | None = Field(default=None, description="When it was due.")
    started_at: datetime | None = Field(default=None, description="When it started.")


class ActionCounters(_Status):
    """Temporal's counters of a schedule."""

    taken: int = Field(default=0, description="Runs started.")
    missed_catchup_window: int = Field(
        default=0, description="Runs missed because Temporal was down longer than the window."
    )
    skipped_overlap: int = Field(
        default=0, description="Runs skipped because the previous one still ran."
    )


class OwnedSchedule(_Status):
    """A Temporal schedule the operator created for a resource and has not cleaned up."""

    schedule_id: str = Field(description="The Temporal schedule id.")
    namespace: str = Field(description="The Temporal namespace it lives in.")


class ScheduleStatus(_Status):
    """What the operator last saw and did."""

    kopf: dict[str, Any] | None = Field(default=None, description=KOPF_STATUS_DESCRIPTION)
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the operator last synced."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Synced, Suspended and WorkerAvailable."
    )
    schedule_id: str | None = Field(default=None, description="The Temporal schedule id.")
    temporal_namespace: str | None = Field(
        default=None, description="The Temporal namespace it lives in."
    )
    summary: str | None = Field(
        default=None,
        description="The times of the spec Temporal holds, for people (written once synced).",
    )
    pending_summary: str | None = Field(
        default=None,
        description="The times of a newer spec that is not in Temporal yet (see the Ready "
        "condition for why); unset once synced.",
    )
    owned_schedules: list[OwnedSchedule] = Field(
        default_factory=list,
        description="Every Temporal schedule the operator created for this resource and has "
        "not yet deleted or orphaned (deletionPolicy); a change of scheduleId or namespace, and "
        "the deletion of the resource, act on exactly these.",
    )
    next_action_times: list[datetime] = Field(
        default_factory=list, description="The next runs Temporal has planned."
    )
    last_action_time: datetime | None = Field(default=None, description="When it last ran.")
    recent_actions: list[ActionRef] = Field(
        default_factory=list, description="The latest runs it started."
    )
    running_workflows: list[ActionRef] = Field(
        default_factory=list, description="Its runs that still run."
    )
    actions: ActionCounters | None = Field(default=None, description="Temporal's counters.")
    last_handled_trigger: str | None = Field(
        default=None, description="the muster.io/trigger token acted on last"
    )
    last_handled_backfill: str | None = Field(
        default=None, description="the token of the muster.io/backfill request acted on last"
    )
    rejected_request: str | None = Field(
        default=None,
        description="Digest of the last malformed trigger/backfill annotation (it got one "
        "Warning Event).",
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
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the operator last synced."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Synced and Published."
    )
    published_sha256: str | None = Field(
        default=None, description="hash of the policy snapshot requests pin"
    )
    reminder_schedule_id: str | None = Field(
        default=None, description="The Temporal schedule that sends its reminders."
    )
    reminder_fingerprint: str | None = Field(
        default=None, description="hash of the reminder schedule as the operator last wrote it"
    )
    pending_requests: int | None = Field(
        default=None, description="approval requests of this policy that wait for a decision"
    )
    last_sync_time: datetime | None = Field(
        default=None, description="When the operator last synced it."
    )


class ReplayGateStatus(_Status):
    """The replay gate of one build."""

    state: Literal["Pending", "Running", "Passed", "Failed", "Skipped"] = Field(
        description="Pending (not started), Running, Passed, Failed (the build never gets "
        "work), or Skipped (nothing could move to it, or the gate is off)."
    )
    message: str | None = Field(default=None, description="What it found, for people.")
    replayed: int | None = Field(default=None, description="Histories replayed.")
    job: str | None = Field(default=None, description="The Job that runs it.")


class WorkerVersionStatus(_Status):
    """One build of the worker: its pods and its place in Temporal's routing."""

    build_id: str = Field(description="The build id.")
    state: Literal[
        "Starting", "Inactive", "Ramping", "Current", "Draining", "Drained", "Unknown"
    ] = Field(
        description="Starting (pods, no pollers in Temporal yet), Inactive (polling, no "
        "work routed to it), Ramping, Current, Draining (no new work; pinned workflows "
        "still run on it), Drained (none do), Unknown (Temporal could not be asked)."
    )
    deployment: str | None = Field(default=None, description="Its Kubernetes Deployment.")
    replicas: int | None = Field(default=None, description="Pods it should have.")
    ready_replicas: int | None = Field(default=None, description="Pods that are ready.")
    pollers: int | None = Field(default=None, description="Its pollers Temporal lists.")
    running_workflows: int | None = Field(
        default=None, description="Open workflows whose last task ran on this build."
    )
    pinned_workflows: int | None = Field(
        default=None, description="Of those, the pinned ones (they finish on this build)."
    )
    ramp_percentage: float | None = Field(default=None, description="While it ramps.")
    gate: ReplayGateStatus | None = Field(default=None, description="Its replay gate.")
    rolled_back: str | None = Field(
        default=None, description="Why the operator rolled it back (it never returns by itself)."
    )
    created_at: datetime | None = Field(default=None, description="When its Deployment was made.")
    current_since: datetime | None = Field(default=None, description="When it became current.")
    drained_since: datetime | None = Field(default=None, description="When it drained.")


class WorkerDeploymentStatus(_Status):
    """What the operator last saw and did for a worker."""

    kopf: dict[str, Any] | None = Field(default=None, description=KOPF_STATUS_DESCRIPTION)
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, RolledBack and AlertsWatched."
    )
    deployment_name: str | None = Field(default=None, description="The Temporal Worker Deployment.")
    target_build_id: str | None = Field(
        default=None, description="The build the spec's template makes."
    )
    current_build_id: str | None = Field(
        default=None, description="The build Temporal sends new workflows to."
    )
    ramping_build_id: str | None = Field(default=None, description="The build that ramps.")
    ramp_percentage: float | None = Field(default=None, description="Its share of new work.")
    versions: list[WorkerVersionStatus] = Field(
        default_factory=list, description="Every build with pods, newest first."
    )
    summary: str | None = Field(
        default=None, description="The builds and their states, for kubectl get."
    )
    replicas: int | None = Field(
        default=None, description="Pods of the current build (the scale subresource)."
    )
    selector: str | None = Field(
        default=None, description="Label selector of the current build's pods (for autoscalers)."
    )
