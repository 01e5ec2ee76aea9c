"""Contracts shared between Muster's patterns, importable without heavy dependencies.

``Money`` is how every amount travels (integer minor units and an ISO 4217 currency, never
floats). The approval contract is what another workflow (the order fulfillment saga, say)
sends to the approval pattern as a child workflow and gets back.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

_CURRENCY = re.compile(r"^[A-Z]{3}$")

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
"""A business identifier safe in workflow ids, idempotency keys and URLs."""


class Money(BaseModel):
    """An amount in the currency's minor unit (cents for EUR/USD), with its currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: int = Field(ge=0, le=10**13, description="Amount in minor units, e.g. cents")
    currency: str = Field(description="ISO 4217 code, e.g. EUR")

    @field_validator("amount_minor", mode="before")
    @classmethod
    def _no_floats(cls, value: object) -> object:
        if isinstance(value, float):
            # pydantic turns a ValueError (not a TypeError) into a validation error.
            message = "must be an integer number of minor units (cents), not a float"
            raise ValueError(message)  # noqa: TRY004
        return value

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.match(value):
            raise ValueError("must be a three-letter ISO 4217 code in capitals, e.g. EUR")
        return value

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}")
        return Money(amount_minor=self.amount_minor + other.amount_minor, currency=self.currency)

    def times(self, quantity: int) -> Money:
        """This amount multiplied by a whole quantity."""
        return Money(amount_minor=self.amount_minor * quantity, currency=self.currency)

    @classmethod
    def zero(cls, currency: str) -> Self:
        """Nothing, in a currency."""
        return cls(amount_minor=0, currency=currency)

    def __str__(self) -> str:
        return f"{self.amount_minor / 100:.2f} {self.currency}"


APPROVAL_WORKFLOW = "Approval"
"""Workflow type of the approval pattern."""
APPROVAL_TASK_QUEUE = "muster-approval"
"""Task queue the approval worker polls."""


def approval_workflow_id(request_id: str) -> str:
    """The workflow id of an approval request: one workflow per request id."""
    return f"approval-{request_id}"


class ApprovalRequest(BaseModel):
    """What a caller (a person through the gateway, or another workflow) asks to approve."""

    model_config = ConfigDict(frozen=True)

    request_id: Identifier
    kind: str = Field(min_length=1, max_length=64, description="e.g. purchase, vacation, order")
    requester: str = Field(min_length=1, max_length=256, description="who asks (a user id)")
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    amount: Money | None = None
    policy: str = Field(min_length=1, max_length=253, description="ApprovalPolicy name")
    subject: str | None = Field(
        default=None, max_length=256, description="what it concerns, e.g. an order id"
    )
    context: dict[str, str] = Field(default_factory=dict, description="shown to approvers")


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


APPROVAL_REMIND_SIGNAL = "remind"
"""Signal a policy's reminder schedule sends to each of its pending requests."""


class RemindRequest(BaseModel):
    """One reminder round; ``key`` (from the schedule's time) makes a repeat a no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: Identifier
