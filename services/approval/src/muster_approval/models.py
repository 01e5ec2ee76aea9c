"""Typed contracts of the approval pattern: decisions, state, audit, notifications.

The request and the result are the shared contract in :mod:`muster_runtime.contracts`
(another workflow can start an approval as a child); everything here is the pattern's own.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from muster_runtime.contracts import (
    APPROVAL_TASK_QUEUE,
    APPROVAL_WORKFLOW,
    ApprovalRequest,
    ApprovalResult,
    AuditEntry,
)
from muster_runtime.policies import PolicySnapshot, Reminders

TASK_QUEUE = APPROVAL_TASK_QUEUE
WORKFLOW = APPROVAL_WORKFLOW
DECIDE_UPDATE = "decide"
DECIDE_SIGNAL = "submit_decision"

__all__ = [
    "DECIDE_SIGNAL",
    "DECIDE_UPDATE",
    "TASK_QUEUE",
    "WORKFLOW",
    "ApprovalRequest",
    "ApprovalResult",
    "ApprovalState",
    "ApprovalStatus",
    "AuditEntry",
    "Decision",
    "DecisionRecord",
    "LoadPolicyInput",
    "NotifyInput",
    "NotifyResult",
    "ReminderInput",
]

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

    model_config = ConfigDict(frozen=True, extra="forbid")

    approver: str = Field(min_length=1, max_length=256)
    verdict: Verdict
    reason: str | None = Field(default=None, max_length=2000)
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


class NotifyInput(BaseModel):
    """A notification about one request event to some people (and the policy's webhook)."""

    model_config = ConfigDict(frozen=True)

    request: ApprovalRequest
    policy: PolicySnapshot
    event: Literal["requested", "reminder", "escalated", "decided", "expired"]
    recipients: list[str] = Field(description="user ids; their e-mail comes from the directory")
    idempotency_key: str
    subject: str
    lines: list[str]
    deadline: datetime | None = None


class NotifyResult(BaseModel):
    """What was sent."""

    emailed: list[str] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list, description="recipients without an address")
    webhook: bool = False


class LoadPolicyInput(BaseModel):
    """Which policy to pin."""

    model_config = ConfigDict(frozen=True)

    name: str


class ReminderInput(BaseModel):
    """When is the next reminder after ``after``."""

    model_config = ConfigDict(frozen=True)

    reminders: Reminders
    after: datetime
