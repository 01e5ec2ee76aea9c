"""The approval rules, on their own: who may decide a request now and why not, what the
decisions add up to, who is still awaited, and what each level of the escalation chain asks.

Pure functions over plain values: no Temporal, no I/O, no clock. The ``Approval`` workflow
keeps the request's state and calls these; the unit tests call them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal, Protocol

from muster_api.approval import ApprovalStatus, PolicySnapshot, Verdict
from muster_api.common import Money
from muster_api.v1alpha1 import ApprovalPolicySpec, ApproverSet

__all__ = [
    "Ballot",
    "Level",
    "Outcome",
    "Refusal",
    "RefusalKind",
    "Vote",
    "approved_by",
    "awaited",
    "decision_of",
    "eligible",
    "level",
    "not_governed",
    "on_timeout",
    "outcome",
    "refusal",
    "rejected_by",
]

Veto = Literal["AnyReject", "Quorum"]


class Vote(Protocol):
    """A decision, new or recorded (``Decision`` and ``DecisionRecord`` both are one)."""

    @property
    def approver(self) -> str: ...

    @property
    def verdict(self) -> Verdict: ...

    @property
    def reason(self) -> str | None: ...


@dataclass(frozen=True)
class Ballot:
    """A request as the rules see it at one moment.

    ``named`` is everyone the levels reached so far name, groups expanded through the
    directory (escalation adds people, it never removes them); ``required`` is the quorum
    of the current level; ``ready`` is false until the policy is pinned and the first
    level's approvers are asked.
    """

    request_id: str
    requester: str
    policy: str
    allow_self_approval: bool = False
    veto: Veto = "AnyReject"
    status: ApprovalStatus = ApprovalStatus.PENDING
    level: int = 0
    required: int = 1
    named: Sequence[str] = ()
    decisions: Sequence[Vote] = ()
    ready: bool = True


class RefusalKind(StrEnum):
    """Why a decision does not count (the error type a caller of ``decide`` sees)."""

    ALREADY_DECIDED = "AlreadyDecided"
    NOT_READY = "NotReady"
    NOT_AN_APPROVER = "NotAnApprover"
    SELF_APPROVAL = "SelfApproval"
    REASON_REQUIRED = "ReasonRequired"
    DECISION_CHANGED = "DecisionChanged"


@dataclass(frozen=True)
class Refusal:
    """A decision that must not count, and a message for the person who made it."""

    kind: RefusalKind
    message: str


@dataclass(frozen=True)
class Outcome:
    """Where a request stands: still pending, or how it ended and why."""

    status: ApprovalStatus
    reason: str | None = None


@dataclass(frozen=True)
class Level:
    """One level of a policy's chain: 0 is its approvers, 1 the first escalation, ..."""

    number: int
    approvers: ApproverSet
    timeout: timedelta
    required: int


# -- who ------------------------------------------------------------------------------------


def decision_of(decisions: Sequence[Vote], approver: str) -> Vote | None:
    """The decision ``approver`` already made, if any (one per person)."""
    return next((d for d in decisions if d.approver == approver), None)


def _may_decide_own(ballot: Ballot, person: str) -> bool:
    return person != ballot.requester or ballot.allow_self_approval


def eligible(ballot: Ballot) -> list[str]:
    """Who may decide at this level: the named people, less a requester who may not
    approve their own request (whether or not they have decided already)."""
    return [p for p in ballot.named if _may_decide_own(ballot, p)]


def awaited(ballot: Ballot, among: Sequence[str] | None = None) -> list[str]:
    """Who may decide and has not yet, in the order of ``among`` (default: everyone named)."""
    decided = {d.approver for d in ballot.decisions}
    people = ballot.named if among is None else among
    return [p for p in people if p not in decided and _may_decide_own(ballot, p)]


def approved_by(decisions: Sequence[Vote]) -> list[str]:
    """Who approved, in the order they did."""
    return [d.approver for d in decisions if d.verdict == "approve"]


def rejected_by(decisions: Sequence[Vote]) -> list[str]:
    """Who rejected, in the order they did."""
    return [d.approver for d in decisions if d.verdict == "reject"]


# -- may this person decide now --------------------------------------------------------------


def refusal(ballot: Ballot, decision: Vote) -> Refusal | None:
    """Why ``decision`` must not count, or None when it may.

    The same decision again is never refused, even after it decided the request: a
    retried call must get the same answer. It counts once (see :func:`decision_of`).
    """
    request_id = ballot.request_id
    earlier = decision_of(ballot.decisions, decision.approver)
    if earlier is not None and earlier.verdict == decision.verdict:
        return None
    if ballot.status != ApprovalStatus.PENDING:
        return Refusal(
            RefusalKind.ALREADY_DECIDED, f"request {request_id} is already {ballot.status.value}"
        )
    if not ballot.ready:
        return Refusal(
            RefusalKind.NOT_READY,
            f"request {request_id} is still starting; try again in a moment",
        )
    if decision.approver not in ballot.named:
        return Refusal(
            RefusalKind.NOT_AN_APPROVER,
            f"{decision.approver} may not decide request {request_id}: not an approver "
            f"under policy {ballot.policy} at level {ballot.level}",
        )
    if not _may_decide_own(ballot, decision.approver):
        return Refusal(
            RefusalKind.SELF_APPROVAL,
            f"{decision.approver} requested {request_id} and policy {ballot.policy} "
            "does not allow approving one's own request",
        )
    if decision.verdict == "reject" and not (decision.reason or "").strip():
        return Refusal(RefusalKind.REASON_REQUIRED, "a rejection needs a reason")
    if earlier is not None:
        return Refusal(
            RefusalKind.DECISION_CHANGED,
            f"{decision.approver} already {earlier.verdict}d request {request_id}; "
            "a decision cannot be changed",
        )
    return None


# -- what the decisions add up to ---------------------------------------------------------------


def outcome(ballot: Ballot) -> Outcome:
    """Where a request stands after its decisions (a settled request stays as it is).

    Approvals count per person toward ``required``. With ``AnyReject`` the first rejection
    decides and its reason is the request's; with ``Quorum`` the request is rejected once
    the eligible people who have not rejected are fewer than ``required``, with every
    rejection's reason. A quorum that was never reachable, without any rejection, leaves the
    request pending: its deadline settles it.
    """
    if ballot.status != ApprovalStatus.PENDING:
        return Outcome(ballot.status)
    rejections = [d for d in ballot.decisions if d.verdict == "reject"]
    if rejections:
        if ballot.veto == "AnyReject":
            return Outcome(ApprovalStatus.REJECTED, rejections[0].reason)
        still_possible = len(eligible(ballot)) - len({d.approver for d in rejections})
        if still_possible < ballot.required:
            reason = "; ".join(d.reason or "" for d in rejections)
            return Outcome(ApprovalStatus.REJECTED, reason)
    if len(set(approved_by(ballot.decisions))) >= ballot.required:
        return Outcome(ApprovalStatus.APPROVED)
    return Outcome(ApprovalStatus.PENDING)


# -- the escalation chain ------------------------------------------------------------------------


def level(spec: ApprovalPolicySpec, number: int) -> Level | None:
    """Level ``number`` of the chain (None past its end): who it adds, for how long, and its
    quorum, which is the last one the chain set up to here (a step without one keeps it)."""
    if number < 0 or number > len(spec.escalations):
        return None
    required = spec.required_approvals
    for step in spec.escalations[:number]:
        if step.required_approvals is not None:
            required = step.required_approvals
    if number == 0:
        return Level(0, spec.approvers, spec.timeout, required)
    step = spec.escalations[number - 1]
    return Level(number, step.to, step.timeout, required)


def on_timeout(spec: ApprovalPolicySpec) -> Outcome:
    """How a request ends when the last level's deadline passes with no outcome."""
    status = (
        ApprovalStatus.APPROVED_ON_TIMEOUT
        if spec.on_timeout == "Approve"
        else ApprovalStatus.REJECTED_ON_TIMEOUT
    )
    return Outcome(status, f"nobody decided in time; the policy says {spec.on_timeout}")


def not_governed(policy: PolicySnapshot, kind: str, amount: Money | None) -> str | None:
    """Why ``policy`` does not govern a request of this kind and amount, in words for
    people (None when it does)."""
    applies = policy.spec.applies_to
    if applies.kinds and kind not in applies.kinds:
        kinds = ", ".join(applies.kinds)
        return f"policy {policy.name} governs requests of kind {kinds}, not {kind}"
    minimum = applies.min_amount.money() if applies.min_amount else None
    if minimum is None:
        return None
    if amount is None:
        return (
            f"policy {policy.name} governs amounts from {minimum.display()}; the request has none"
        )
    if amount.currency != minimum.currency or amount.amount_minor < minimum.amount_minor:
        return (
            f"policy {policy.name} governs amounts from {minimum.display()}, not {amount.display()}"
        )
    return None
