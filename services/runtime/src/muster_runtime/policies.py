"""The ``ApprovalPolicy`` format and the people it names.

An approval policy says who may approve what, how many approvals it takes, and what
happens when nobody decides (escalation, then ``onTimeout``). It is written as a
Kubernetes-style resource (``apiVersion: muster.io/v1alpha1``, ``kind: ApprovalPolicy``);
the same document is a custom resource for the operator and a file for the local stack.
Workers and the gateway read it from here, so they never depend on the operator package.

The :class:`Directory` maps user ids to e-mail addresses and groups; policies name users
and groups, and a request's approvers are the policy's users plus the members of its groups.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from muster_runtime.contracts import Money

API_VERSION = "muster.io/v1alpha1"
REMINDERS_ANNOTATION = "muster.io/reminders"
"""``schedule`` on a published policy: its reminder schedule sends reminders, not requests."""

T = TypeVar("T")

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
    time_zone: str = Field(
        default="UTC",
        max_length=64,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self == 'UTC' || "
                    "timestamp('2000-01-01T00:00:00Z').getHours(self) >= 0",
                    "message": "must be an IANA time zone like UTC or Europe/Berlin",
                }
            ]
        },
    )

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

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like Europe/Berlin") from None
        return value


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


class PolicySnapshot(BaseModel):
    """A policy as a request pins it: what it said, where it came from, and its hash."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    generation: int
    spec: ApprovalPolicySpec
    sha256: str
    reminders_by_schedule: bool = False

    @classmethod
    def of(cls, policy: ApprovalPolicy) -> Self:
        """Snapshot a policy document."""
        canonical = json.dumps(policy.spec.model_dump(mode="json", by_alias=True), sort_keys=True)
        return cls(
            name=policy.metadata.name,
            namespace=policy.metadata.namespace,
            generation=policy.metadata.generation,
            spec=policy.spec,
            sha256=hashlib.sha256(canonical.encode()).hexdigest(),
            reminders_by_schedule=policy.metadata.annotations.get(REMINDERS_ANNOTATION)
            == "schedule",
        )

    def applies(self, kind: str, amount: Money | None) -> str | None:
        """Why this policy does not govern such a request (None when it does)."""
        applies = self.spec.applies_to
        if applies.kinds and kind not in applies.kinds:
            return f"policy {self.name} governs kinds {applies.kinds}, not {kind!r}"
        minimum = applies.min_amount.money() if applies.min_amount else None
        if minimum is not None:
            if amount is None:
                return f"policy {self.name} governs amounts from {minimum}; the request has none"
            if amount.currency != minimum.currency or amount.amount_minor < minimum.amount_minor:
                return f"policy {self.name} governs amounts from {minimum}, not {amount}"
        return None


class PolicyError(ValueError):
    """A policy document is invalid; the message names the file and the field."""


def _describe_validation(source: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return f"{source}: " + "; ".join(problems)


def parse_policies(text: str, source: str = "<policy>") -> list[ApprovalPolicy]:
    """Every ApprovalPolicy in a (multi-document) YAML text; other kinds are skipped."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    policies = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "ApprovalPolicy":
            continue
        try:
            policies.append(ApprovalPolicy.model_validate(document))
        except ValidationError as exc:
            raise PolicyError(_describe_validation(source, exc)) from None
    return policies


def load_policy_dir(directory: Path) -> dict[str, PolicySnapshot]:
    """All policies in ``*.yaml``/``*.yml`` files of a folder, by name (and namespace/name)."""
    if not directory.is_dir():
        raise PolicyError(f"policy folder {directory} does not exist")
    found: dict[str, PolicySnapshot] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        for policy in parse_policies(path.read_text(), str(path)):
            snapshot = PolicySnapshot.of(policy)
            qualified = f"{snapshot.namespace}/{snapshot.name}"
            if qualified in found:
                raise PolicyError(f"{path}: policy {qualified} is defined twice")
            found[qualified] = snapshot
            found.setdefault(snapshot.name, snapshot)
    return found


class Person(BaseModel):
    """Someone who may request or approve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = ""
    groups: list[str] = Field(default_factory=list)


class Directory(BaseModel):
    """People by user id (a ConfigMap in Kubernetes, a file locally)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[str, Person] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a directory file (YAML or JSON)."""
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"directory {path}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(_describe_validation(str(path), exc)) from None

    def members(self, approvers: ApproverSet) -> list[str]:
        """The user ids a set names: its users and every member of its groups, sorted."""
        people = set(approvers.users)
        wanted = set(approvers.groups)
        people |= {uid for uid, person in self.users.items() if wanted & set(person.groups)}
        return sorted(people)

    def email(self, user: str) -> str | None:
        """A user's address, if known."""
        person = self.users.get(user)
        return person.email if person else None


def cached_by_mtime(paths: Callable[[], list[Path]], load: Callable[[], T]) -> Callable[[], T]:
    """``load()`` again only when one of the files changed (policies are edited live)."""
    state: dict[str, object] = {}

    def get() -> T:
        stamp = tuple((str(p), p.stat().st_mtime_ns) for p in paths() if p.exists())
        if state.get("stamp") != stamp:
            state["value"] = load()
            state["stamp"] = stamp
        return state["value"]  # type: ignore[return-value]

    return get
