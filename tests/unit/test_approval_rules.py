"""The approval rules on their own, one table row per case: who may decide a request now and
why not (group membership, escalation levels, self-approval allowed and forbidden, the
requester who is also an approver, a second different decision, the same decision repeated,
a reject without a reason, decisions after the outcome), what the decisions add up to
(quorum, AnyReject and Quorum vetoes, each level's own quorum), who is still awaited, and
what each level of a policy's chain asks.

Ballots are built the way the workflow builds them: the policy's levels resolved through a
real directory, the quorum of the level reached.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
import yaml

from muster_api.approval import ApprovalStatus, Decision, PolicySnapshot
from muster_api.common import Money
from muster_api.v1alpha1 import ApprovalPolicySpec, ApproverSet
from muster_approval import rules
from muster_approval.rules import Ballot, RefusalKind
from muster_runtime.policies import Directory

DIRECTORY = Directory.model_validate(
    yaml.safe_load(
        """
        users:
          alice: {email: alice@example.com, groups: [finance, team-leads]}
          bob: {email: bob@example.com, groups: [finance]}
          carol: {email: carol@example.com, groups: [managers]}
          dave: {email: dave@example.com, groups: [engineering]}
          erin: {email: erin@example.com, groups: [engineering, managers]}
          frank: {email: frank@example.com, groups: [board]}
        """
    )
)


def _spec(**spec: Any) -> ApprovalPolicySpec:
    return ApprovalPolicySpec.model_validate(spec)


POLICIES = {
    # alice and bob (finance), one approval, AnyReject, no self-approval.
    "fin": _spec(approvers={"groups": ["finance"]}),
    "trio": _spec(approvers={"users": ["alice", "bob", "carol"]}, requiredApprovals=2),
    "trioQ": _spec(
        approvers={"users": ["alice", "bob", "carol"]}, requiredApprovals=2, veto="Quorum"
    ),
    "trioQS": _spec(
        approvers={"users": ["alice", "bob", "carol"]},
        requiredApprovals=2,
        veto="Quorum",
        allowSelfApproval=True,
    ),
    "pairQ": _spec(approvers={"users": ["alice", "bob"]}, requiredApprovals=2, veto="Quorum"),
    "self": _spec(approvers={"users": ["alice", "bob"]}, allowSelfApproval=True),
    # finance needs two; then managers (carol, erin) join and one will do; then frank.
    "chain": _spec(
        approvers={"groups": ["finance"]},
        requiredApprovals=2,
        timeout="7d",
        escalations=[
            {"to": {"groups": ["managers"]}, "timeout": "3d", "requiredApprovals": 1},
            {"to": {"users": ["frank"]}, "timeout": "1d"},
        ],
    ),
    # finance needs one; when managers join, three are needed.
    "raise": _spec(
        approvers={"groups": ["finance"]},
        escalations=[{"to": {"groups": ["managers"]}, "timeout": "1d", "requiredApprovals": 3}],
    ),
}


def table(*rows: tuple[Any, ...]) -> list[Any]:
    """One case a row; the first column is its name."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def votes(text: str) -> list[Decision]:
    """``"alice+, bob-too dear, erin-"``: alice approved, bob rejected saying "too dear",
    erin rejected without a reason."""
    found = []
    for vote in filter(None, (v.lstrip() for v in text.split(","))):
        if vote.endswith("+"):
            found.append(Decision(approver=vote[:-1], verdict="approve"))
            continue
        name, dash, reason = vote.partition("-")
        assert dash, f"{vote!r}: write name+ or name-reason"
        found.append(Decision(approver=name, verdict="reject", reason=reason or None))
    return found


def ballot(
    policy: str,
    *,
    requester: str = "dave",
    level: int = 0,
    decided: str = "",
    status: ApprovalStatus = ApprovalStatus.PENDING,
    ready: bool = True,
) -> Ballot:
    """A request under ``policy`` at ``level``, as the workflow would see it."""
    spec = POLICIES[policy]
    levels = [rules.level(spec, n) for n in range(level + 1)]
    assert all(levels), f"{policy} has no level {level}"
    named = sorted({p for lv in levels if lv for p in DIRECTORY.members(lv.approvers)})
    current = levels[-1]
    assert current is not None
    return Ballot(
        request_id="r-1",
        requester=requester,
        policy=policy,
        allow_self_approval=spec.allow_self_approval,
        veto=spec.veto,
        status=status,
        level=level,
        required=current.required,
        named=named,
        decisions=votes(decided),
        ready=ready,
    )


P, A, R = ApprovalStatus.PENDING, ApprovalStatus.APPROVED, ApprovalStatus.REJECTED
AT, RT = ApprovalStatus.APPROVED_ON_TIMEOUT, ApprovalStatus.REJECTED_ON_TIMEOUT
C = ApprovalStatus.CANCELLED
S = "starting"  # pending, policy not pinned yet
K = RefusalKind

MAY_DECIDE = table(
    # name, policy, requester, level, decided before, status, the decision -> refusal
    ("group-member-approves", "fin", "dave", 0, "", P, "alice+", None),
    ("group-member-rejects", "fin", "dave", 0, "", P, "bob-too dear", None),
    ("not-in-the-group", "fin", "dave", 0, "", P, "erin+", K.NOT_AN_APPROVER),
    ("not-in-the-directory", "fin", "dave", 0, "", P, "zoe+", K.NOT_AN_APPROVER),
    ("outsider-before-reason", "fin", "dave", 0, "", P, "erin-", K.NOT_AN_APPROVER),
    ("requester-not-named", "fin", "dave", 0, "", P, "dave+", K.NOT_AN_APPROVER),
    ("manager-before-escalation", "chain", "dave", 0, "", P, "carol+", K.NOT_AN_APPROVER),
    ("manager-after-escalation", "chain", "dave", 1, "", P, "carol+", None),
    ("second-group-member", "chain", "dave", 1, "", P, "erin+", None),
    ("earlier-level-keeps-its-say", "chain", "dave", 1, "", P, "alice+", None),
    ("next-level-not-yet", "chain", "dave", 1, "", P, "frank+", K.NOT_AN_APPROVER),
    ("last-level-user", "chain", "dave", 2, "", P, "frank+", None),
    ("self-approval-forbidden", "fin", "alice", 0, "", P, "alice+", K.SELF_APPROVAL),
    ("self-reject-forbidden", "fin", "alice", 0, "", P, "alice-mine", K.SELF_APPROVAL),
    ("self-before-reason", "fin", "alice", 0, "", P, "alice-", K.SELF_APPROVAL),
    ("requester-named-by-escalation", "chain", "erin", 1, "", P, "erin+", K.SELF_APPROVAL),
    ("other-approver-of-requester", "fin", "alice", 0, "", P, "bob+", None),
    ("self-approval-allowed", "self", "alice", 0, "", P, "alice+", None),
    ("self-reject-allowed", "self", "alice", 0, "", P, "alice-on reflection", None),
    ("reject-without-reason", "fin", "dave", 0, "", P, "bob-", K.REASON_REQUIRED),
    ("reject-with-blank-reason", "fin", "dave", 0, "", P, "bob-   ", K.REASON_REQUIRED),
    ("same-approval-repeated", "trio", "dave", 0, "alice+", P, "alice+", None),
    ("same-reject-repeated", "trioQ", "dave", 0, "bob-no", P, "bob-still no", None),
    ("approve-then-reject", "trio", "dave", 0, "alice+", P, "alice-oops", K.DECISION_CHANGED),
    ("reject-then-approve", "trioQ", "dave", 0, "bob-no", P, "bob+", K.DECISION_CHANGED),
    ("changed-without-reason", "trio", "dave", 0, "alice+", P, "alice-", K.REASON_REQUIRED),
    ("approve-after-approved", "fin", "dave", 0, "alice+", A, "bob+", K.ALREADY_DECIDED),
    ("repeat-after-it-decided", "fin", "dave", 0, "alice+", A, "alice+", None),
    ("change-after-outcome", "fin", "dave", 0, "alice+", A, "alice-late", K.ALREADY_DECIDED),
    ("approve-after-rejected", "fin", "dave", 0, "bob-no", R, "alice+", K.ALREADY_DECIDED),
    ("after-cancelled", "fin", "dave", 0, "", C, "bob+", K.ALREADY_DECIDED),
    ("after-approved-on-timeout", "fin", "dave", 0, "", AT, "bob+", K.ALREADY_DECIDED),
    ("outsider-after-outcome", "fin", "dave", 0, "", RT, "erin+", K.ALREADY_DECIDED),
    ("policy-not-pinned-yet", "fin", "dave", 0, "", S, "alice+", K.NOT_READY),
)


@pytest.mark.parametrize(
    ("policy", "requester", "level", "decided", "status", "decision", "refused"), MAY_DECIDE
)
def test_may_decide(
    policy: str,
    requester: str,
    level: int,
    decided: str,
    status: ApprovalStatus | str,
    decision: str,
    refused: RefusalKind | None,
) -> None:
    now = ballot(
        policy,
        requester=requester,
        level=level,
        decided=decided,
        status=P if status == S else ApprovalStatus(status),
        ready=status != S,
    )
    (new,) = votes(decision)
    verdict = rules.refusal(now, new)
    assert (verdict.kind if verdict else None) == refused, verdict


OUTCOMES = table(
    # name, policy, requester, level, decisions, status before -> status after, reason
    ("nobody-decided", "fin", "dave", 0, "", P, P, None),
    ("one-of-one", "fin", "dave", 0, "alice+", P, A, None),
    ("one-of-two", "trio", "dave", 0, "alice+", P, P, None),
    ("quorum-of-two", "trio", "dave", 0, "alice+, bob+", P, A, None),
    ("one-person-counts-once", "trio", "dave", 0, "alice+, alice+", P, P, None),
    ("any-reject-vetoes", "trio", "dave", 0, "alice-no budget", P, R, "no budget"),
    ("any-reject-after-approval", "trio", "dave", 0, "alice+, bob-no", P, R, "no"),
    ("any-reject-first-reason", "trio", "dave", 0, "alice-first, bob-second", P, R, "first"),
    ("quorum-still-reachable", "trioQ", "dave", 0, "alice-too dear", P, P, None),
    ("quorum-out-of-reach", "trioQ", "dave", 0, "alice-dear, bob-agree", P, R, "dear; agree"),
    ("quorum-one-each", "trioQ", "dave", 0, "alice-x, carol+", P, P, None),
    ("quorum-despite-a-reject", "trioQ", "dave", 0, "alice-x, carol+, bob+", P, A, None),
    ("requester-approver-not-counted", "trioQ", "carol", 0, "alice-no", P, R, "no"),
    ("requester-approver-counted", "trioQS", "carol", 0, "alice-no", P, P, None),
    ("requester-approves-own", "trioQS", "carol", 0, "alice-no, carol+, bob+", P, A, None),
    ("unreachable-quorum-waits", "pairQ", "alice", 0, "", P, P, None),
    ("unreachable-quorum-still-waits", "pairQ", "alice", 0, "bob+", P, P, None),
    ("unreachable-quorum-a-reject", "pairQ", "alice", 0, "bob-no", P, R, "no"),
    ("level-0-needs-two", "chain", "dave", 0, "alice+", P, P, None),
    ("escalation-lowers-quorum", "chain", "dave", 1, "alice+", P, A, None),
    ("last-level-nobody", "chain", "dave", 2, "", P, P, None),
    ("last-level-keeps-quorum", "chain", "dave", 2, "frank+", P, A, None),
    ("level-0-needs-one", "raise", "dave", 0, "alice+", P, A, None),
    ("escalation-raises-quorum", "raise", "dave", 1, "alice+, bob+", P, P, None),
    ("raised-quorum-met", "raise", "dave", 1, "alice+, bob+, erin+", P, A, None),
    ("settled-stays-settled", "fin", "dave", 0, "alice+", R, R, None),
    ("cancelled-stays-cancelled", "fin", "dave", 0, "", C, C, None),
)


@pytest.mark.parametrize(
    ("policy", "requester", "level", "decided", "before", "after", "reason"), OUTCOMES
)
def test_outcome(
    policy: str,
    requester: str,
    level: int,
    decided: str,
    before: ApprovalStatus,
    after: ApprovalStatus,
    reason: str | None,
) -> None:
    now = ballot(policy, requester=requester, level=level, decided=decided, status=before)
    assert rules.outcome(now) == rules.Outcome(after, reason)


WHO = table(
    # name, policy, requester, level, decisions -> who may decide, who is still awaited
    ("group-expanded", "fin", "dave", 0, "", "alice bob", "alice bob"),
    ("decided-not-awaited", "fin", "dave", 0, "alice+", "alice bob", "bob"),
    ("requester-left-out", "fin", "alice", 0, "", "bob", "bob"),
    ("requester-allowed-listed", "self", "alice", 0, "", "alice bob", "alice bob"),
    ("escalation-adds", "chain", "dave", 1, "alice+", "alice bob carol erin", "bob carol erin"),
    ("requester-named-later", "chain", "erin", 1, "", "alice bob carol", "alice bob carol"),
    ("everyone-decided", "trio", "dave", 0, "alice+, bob-no, carol+", "alice bob carol", ""),
)


@pytest.mark.parametrize(("policy", "requester", "level", "decided", "may", "awaited"), WHO)
def test_who_may_decide_and_who_is_awaited(
    policy: str, requester: str, level: int, decided: str, may: str, awaited: str
) -> None:
    now = ballot(policy, requester=requester, level=level, decided=decided)
    assert rules.eligible(now) == may.split()
    assert rules.awaited(now) == awaited.split()


def test_awaited_among_one_levels_members_keeps_their_order() -> None:
    now = ballot("chain", requester="erin", level=1, decided="carol+")
    assert rules.awaited(now, among=["erin", "carol", "alice"]) == ["alice"]


def test_approved_and_rejected_by_in_the_order_they_decided() -> None:
    decided = votes("carol+, alice-no, bob+")
    assert rules.approved_by(decided) == ["carol", "bob"]
    assert rules.rejected_by(decided) == ["alice"]
    assert rules.decision_of(decided, "alice") == decided[1]
    assert rules.decision_of(decided, "dave") is None


def _message(now: Ballot, decision: str) -> str:
    refused = rules.refusal(now, votes(decision)[0])
    assert refused is not None
    return refused.message


def test_refusals_say_what_is_wrong() -> None:
    assert _message(ballot("chain"), "carol+") == (
        "carol may not decide request r-1: not an approver under policy chain at level 0"
    )
    assert _message(ballot("fin", requester="bob"), "bob+") == (
        "bob requested r-1 and policy fin does not allow approving one's own request"
    )
    assert _message(ballot("fin"), "bob-") == "a rejection needs a reason"
    assert _message(ballot("trio", decided="alice+"), "alice-no") == (
        "alice already approved request r-1; a decision cannot be changed"
    )
    assert _message(ballot("fin", status=A), "bob+") == "request r-1 is already approved"
    assert _message(ballot("fin", ready=False), "bob+") == (
        "request r-1 is still starting; try again in a moment"
    )


LEVELS = table(
    # name, level -> who it adds, for how long, and its quorum
    ("the-policy-itself", 0, ApproverSet(groups=["finance"]), timedelta(days=7), 2),
    ("first-escalation", 1, ApproverSet(groups=["managers"]), timedelta(days=3), 1),
    ("quorum-carried-over", 2, ApproverSet(users=["frank"]), timedelta(days=1), 1),
)


@pytest.mark.parametrize(("number", "approvers", "timeout", "required"), LEVELS)
def test_levels_of_the_chain(
    number: int, approvers: ApproverSet, timeout: timedelta, required: int
) -> None:
    assert rules.level(POLICIES["chain"], number) == rules.Level(
        number, approvers, timeout, required
    )


def test_no_level_past_the_chain() -> None:
    assert rules.level(POLICIES["chain"], 3) is None
    assert rules.level(POLICIES["chain"], -1) is None
    assert rules.level(POLICIES["fin"], 1) is None


def test_on_timeout_the_policy_decides() -> None:
    assert rules.on_timeout(_spec(approvers={"users": ["a"]}, onTimeout="Approve")) == (
        rules.Outcome(AT, "nobody decided in time; the policy says Approve")
    )
    assert rules.on_timeout(POLICIES["fin"]) == rules.Outcome(
        RT, "nobody decided in time; the policy says Reject"
    )


def test_the_rules_need_no_temporal() -> None:
    # A fresh interpreter: this one has Temporal loaded by other tests.
    probe = "import sys, muster_approval.rules; print(*sorted(sys.modules))"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in run.stdout.split()}
    assert "muster_approval" in loaded
    assert "temporalio" not in loaded


def _snapshot(**applies: Any) -> PolicySnapshot:
    spec = _spec(approvers={"groups": ["finance"]}, appliesTo=applies)
    return PolicySnapshot(name="p", namespace="default", generation=1, spec=spec, sha256="0")


def _eur(minor: int) -> Money:
    return Money(amount_minor=minor, currency="EUR")


@pytest.mark.parametrize(
    ("applies", "kind", "amount", "why_not"),
    [
        ({}, "anything", None, None),
        ({"kinds": ["vacation"]}, "vacation", None, None),
        ({"kinds": ["vacation", "leave"]}, "purchase", None,
         "policy p governs requests of kind vacation, leave, not purchase"),
        ({"minAmount": {"amountMinor": 100_000, "currency": "EUR"}}, "order", _eur(100_000), None),
        ({"minAmount": {"amountMinor": 100_000, "currency": "EUR"}}, "order", _eur(99_999),
         "policy p governs amounts from 1,000.00 EUR, not 999.99 EUR"),
        ({"minAmount": {"amountMinor": 100_000, "currency": "EUR"}}, "order", None,
         "policy p governs amounts from 1,000.00 EUR; the request has none"),
        ({"minAmount": {"amountMinor": 100_000, "currency": "EUR"}}, "order",
         Money(amount_minor=500_000, currency="USD"),
         "policy p governs amounts from 1,000.00 EUR, not 5,000.00 USD"),
    ],
)  # fmt: skip
def test_a_policy_that_does_not_govern_says_why_in_words(
    applies: dict[str, Any], kind: str, amount: Money | None, why_not: str | None
) -> None:
    policy = _snapshot(**applies)
    assert rules.not_governed(policy, kind, amount) == why_not
    # The same verdict as the contract's own check, which the gateway uses.
    assert (policy.applies(kind, amount) is None) == (why_not is None)
