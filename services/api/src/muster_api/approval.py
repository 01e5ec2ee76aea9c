"""Contracts of the approval pattern: what a client sends an ``Approval`` workflow and
what it gets back, importable without the worker.

Another workflow (the order fulfillment saga, say) starts an approval as a child with an
:class:`ApprovalRequest` and gets an :class:`ApprovalResult`; the gateway and the CLIs send
:class:`Decision` updates and read :class:`ApprovalState`. A request pins the
:class:`PolicySnapshot` it started with.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from muster_api.common import FreeText, Identifier, Money, OneLine
from muster_api.v1alpha1 import REMINDERS_ANNOTATION, ApprovalPolicy, ApprovalPolicySpec

WORKFLOW = "Approval"
"""Workflow type of the approval pattern."""
TASK_QUEUE = "muster-approval"
"""Task queue the approval worker polls."""
DECIDE_UPDATE = "decide"
"""Update that records a decision (validated: a refused one leaves no history)."""
DECIDE_SIGNAL = "submit_decision"
"""Signal that records a decision (an invalid one is recorded as ignored)."""
STATE_QUERY = "state"
"""Query that returns the :class:`ApprovalState`."""
REMIND_SIGNAL = "remind"
"""Signal a policy's reminder schedule sends to each of its pending requests."""


def workflow_id(request_id: str) -> str:
    """The workflow id of an approval request: one workflow per request id."""
    return f"approval-{request_id}"


class ApprovalRequest(BaseModel):
    """What a caller (a person through the gateway, or another workflow) asks to approve."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    request_id: Identifier
    kind: OneLine = Field(min_length=1, max_length=64, description="e.g. purchase, vacation, order")
    requester: OneLine = Field(min_length=1, max_length=256, description="who asks (a user id)")
    title: OneLine = Field(min_length=1, max_length=200)
    description: FreeText = Field(default="", max_length=4000)
    amount: Money | None = None
    policy: OneLine = Field(min_length=1, max_length=253, description="ApprovalPolicy name")
    subject: OneLine | None = Field(
        default=None, max_length=256, description="what it concerns, e.g. an order id"
    )
    context: dict[OneLine, OneLine] = Field(default_factory=dict, description="shown to approvers")


class AuditEntry(BaseModel):
    """One line of an audit trail: when, who (a user, or ``muster``), what."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    actor: str
    event: str
    detail: str = ""


class ApprovalResult(BaseModel):
    """How an approval request ended, with its audit trail."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    approved: bool
    status: str = Field(description="approved, rejected, or how a timeout ended")
    decided_by: list[str] = Field(default_factory=list)
    reason: str | None = None
    policy: str | None = None
    policy_sha256: str | None = None
    audit: list[AuditEntry] = Field(default_factory=list)


class RemindRequest(BaseModel):
    """One reminder round; ``key`` (from the schedule's time) makes a repeat a no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    key: Identifier


Verdict = Literal["approve", "reject"]


class ApprovalStatus(StrEnum):
    """Where a request is. Only ``pending`` waits; the rest are how it ended."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    APPROVED_ON_TIMEOUT = "approved_on_timeout"
    REJECTED_ON_TIMEOUT = "rejected_on_timeout"
    CANCELLED = "cancelled"

    @property
    def approved(self) -> bool:
        """Whether the outcome lets the requester go ahead."""
        return self in (ApprovalStatus.APPROVED, ApprovalStatus.APPROVED_ON_TIMEOUT)


class Decision(BaseModel):
    """One person's decision (the ``decide`` update and the ``submit_decision`` signal).

    ``approver`` is the authenticated user: the gateway sets it from the caller's identity.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    approver: OneLine = Field(min_length=1, max_length=256)
    verdict: Verdict
    reason: FreeText | None = Field(default=None, max_length=2000)
    via: Literal["api", "web", "cli", "signal"] = "api"


class DecisionRecord(BaseModel):
    """A decision as the request recorded it."""

    model_config = ConfigDict(frozen=True)

    approver: str
    verdict: Verdict
    reason: str | None
    at: datetime
    level: int
    via: str


class ApprovalState(BaseModel):
    """What the ``state`` query returns."""

    request: ApprovalRequest
    policy: str
    policy_sha256: str
    status: ApprovalStatus
    level: int = Field(description="0 before any escalation, 1 after the first, ...")
    required_approvals: int
    approvers: list[str] = Field(description="who may decide now")
    approvals: list[str]
    decisions: list[DecisionRecord]
    deadline: datetime | None
    next_reminder: datetime | None
    audit: list[AuditEntry]


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
