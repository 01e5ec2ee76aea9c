"""The approval worker's own types: activity inputs and results (never seen by clients).

What clients send and read is the contract in :mod:`muster_api.approval`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from muster_api.approval import ApprovalRequest, PolicySnapshot
from muster_api.v1alpha1 import Reminders

UNDELIVERABLE = "NotificationUndeliverable"
"""Error type of a notification no retry can deliver (bad address, permanent refusal)."""


class NotifyInput(BaseModel):
    """A notification about one request event to some people (and the policy's webhook)."""

    model_config = ConfigDict(frozen=True)

    request: ApprovalRequest
    policy: PolicySnapshot
    event: Literal["requested", "reminder", "escalated", "decided", "expired", "withdrawn"]
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
