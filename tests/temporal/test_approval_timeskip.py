"""The approval workflow over days and weeks, on Temporal's time-skipping test server:
the 7-day timeout, escalation to managers for 3 more days, the on-timeout action,
reminders on their cron cadence, quorum, vetoes, the validator's refusals, and who the state
lists as approvers (the requester only when the policy lets them decide)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from muster_api.approval import (
    DECIDE_SIGNAL,
    WORKFLOW,
    ApprovalResult,
    ApprovalState,
    ApprovalStatus,
    Decision,
)
from muster_api.cron import parse_cron
from muster_approval.workflows import Approval
from tests.approval_support import Setup, approval_worker, request, setup
from tests.conftest import start_time_skipping_env
from tests.helpers import async_wait_until, unique

pytestmark = pytest.mark.timeout(120)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def approval_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own time-skipping server: requests left waiting (their worker gone)
    hold outstanding tasks, and the server does not skip time while any exist, which would
    freeze time for every later test sharing it."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def world(
    approval_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[WorkflowEnvironment, Setup, str]]:
    task_queue = unique("approval")
    async with (
        setup(tmp_path) as where,
        approval_worker(approval_env.client, task_queue, where),
    ):
        yield approval_env, where, task_queue
        # The time-skipping server is shared by the session and does not skip time while
        # any workflow task is outstanding: a request left waiting here (its worker gone)
        # would freeze time for every later test. End what this test started.
        while STARTED:
            handle = STARTED.pop()
            with contextlib.suppress(RPCError):  # already closed
                await handle.terminate("test finished")


STARTED: list[WorkflowHandle[Any, ApprovalResult]] = []


async def start(
    env: WorkflowEnvironment, task_queue: str, **kwargs: Any
) -> WorkflowHandle[Any, ApprovalResult]:
    handle = await env.client.start_workflow(
        WORKFLOW, request(**kwargs), id=unique("approval"), task_queue=task_queue,
        result_type=ApprovalResult,
    )  # fmt: skip
    STARTED.append(handle)
    return handle


async def state(handle: WorkflowHandle[Any, ApprovalResult]) -> ApprovalState:
    current: ApprovalState = await handle.query(Approval.state)
    return current


async def ready(handle: WorkflowHandle[Any, ApprovalResult]) -> ApprovalState:
    """The state once the policy is pinned and the approvers are asked."""

    async def asked() -> ApprovalState | None:
        current = await state(handle)
        return current if current.deadline is not None else None

    return await async_wait_until(asked, what="approvers asked", timeout=30)


def decide(approver: str, verdict: str = "approve", reason: str | None = None) -> Decision:
    return Decision.model_validate({"approver": approver, "verdict": verdict, "reason": reason})


def events(result: ApprovalResult, name: str) -> list[Any]:
    return [entry for entry in result.audit if entry.event == name]


async def test_seven_days_then_managers_for_three_then_rejected(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(
        unique("p"), escalations="[{to: {groups: [managers]}, timeout: 3d}]", onTimeout="Reject"
    )
    handle = await start(env, task_queue, policy_name=name)
    result = await handle.result()
    assert result.status == ApprovalStatus.REJECTED_ON_TIMEOUT
    assert not result.approved
    asked = events(result, "approvers asked")[0]
    assert asked.detail == "level 0: alice, bob"
    requested = asked.at
    escalated = events(result, "escalated")[0]
    timed_out = events(result, "timed out")[0]
    # Timers fire on time; the task that handles one sees the clock a moment later.
    assert timedelta(days=7) <= escalated.at - requested < timedelta(days=7, seconds=2)
    assert escalated.detail == "level 1: carol"
    assert timedelta(days=10) <= timed_out.at - requested < timedelta(days=10, seconds=2)
    assert "policy says Reject" in (result.reason or "")
    # Finance was asked first, the manager on escalation, the requester told the outcome.
    assert where.mail_to("alice@example.com")[0]["subject"] == "Approval needed: New laptop"
    assert [m["subject"] for m in where.mail_to("carol@example.com")] == [
        "Approval needed: New laptop"
    ]
    assert "escalated to you" in where.mail_to("carol@example.com")[0]["body"]
    outcome = where.mail_to("dave@example.com")
    assert [m["subject"] for m in outcome] == ["Rejected on timeout: New laptop"]


async def test_on_timeout_approve(world: tuple[WorkflowEnvironment, Setup, str]) -> None:
    env, where, task_queue = world
    name = where.write_policy(unique("p"), timeout="2d", onTimeout="Approve")
    result = await (await start(env, task_queue, policy_name=name)).result()
    assert result.status == ApprovalStatus.APPROVED_ON_TIMEOUT
    assert result.approved


async def test_a_manager_decides_after_escalation(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(unique("p"), escalations="[{to: {groups: [managers]}, timeout: 3d}]")
    handle = await start(env, task_queue, policy_name=name)
    before = await ready(handle)
    assert before.approvers == ["alice", "bob"]
    await env.sleep(timedelta(days=7, hours=1))
    after = await state(handle)
    assert after.level == 1
    assert after.approvers == ["alice", "bob", "carol"]
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(Approval.decide, decide("dave"))
    decided = await handle.execute_update(Approval.decide, decide("carol", reason="fine"))
    assert decided.status == ApprovalStatus.APPROVED
    result = await handle.result()
    assert result.decided_by == ["carol"]
    assert result.policy == name


async def test_reminders_follow_the_cron_cadence(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(
        unique("p"), timeout="3d", reminders="{cron: '0 9 * * *', timeZone: UTC}"
    )
    handle = await start(env, task_queue, policy_name=name)
    started = (await state(handle)).audit[0].at
    result = await handle.result()
    expected = []
    for moment in parse_cron("0 9 * * *").times(started, "UTC"):
        if moment >= started + timedelta(days=3):
            break
        expected.append(moment)
    reminders = events(result, "reminder")
    assert len(reminders) == len(expected)
    for sent, due in zip(reminders, expected, strict=True):
        # A timer fires at its time; the workflow sees the task that handles it a moment later.
        assert timedelta(0) <= sent.at - due < timedelta(seconds=2)
    assert all(r.detail == "alice, bob" for r in reminders)
    alice = [m["subject"] for m in where.mail_to("alice@example.com")]
    assert alice.count("Reminder: approval needed: New laptop") == len(expected)
    # Every message has its own stable identity, derived from request and event.
    keys = [m["idempotency_key"] for m in where.mail_to("alice@example.com")]
    assert len(keys) == len(set(keys))


async def test_quorum_counts_distinct_people_and_repeats_are_idempotent(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(
        unique("p"), approvers="{users: [alice, bob, carol]}", requiredApprovals="2"
    )
    handle = await start(env, task_queue, policy_name=name)
    first = await handle.execute_update(Approval.decide, decide("alice"))
    assert first.status == ApprovalStatus.PENDING
    again = await handle.execute_update(Approval.decide, decide("alice"))
    assert again.status == ApprovalStatus.PENDING
    assert [d.approver for d in again.decisions] == ["alice"]
    done = await handle.execute_update(Approval.decide, decide("bob"))
    assert done.status == ApprovalStatus.APPROVED
    result = await handle.result()
    assert result.decided_by == ["alice", "bob"]


async def test_veto_any_reject_versus_quorum(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    veto = where.write_policy(unique("p"), approvers="{users: [alice, bob, carol]}",
                              requiredApprovals="2", veto="AnyReject")  # fmt: skip
    handle = await start(env, task_queue, policy_name=veto)
    decided = await handle.execute_update(Approval.decide, decide("alice", "reject", "no budget"))
    assert decided.status == ApprovalStatus.REJECTED
    assert (await handle.result()).reason == "no budget"

    quorum = where.write_policy(unique("p"), approvers="{users: [alice, bob, carol]}",
                                requiredApprovals="2", veto="Quorum")  # fmt: skip
    handle = await start(env, task_queue, policy_name=quorum)
    one = await handle.execute_update(Approval.decide, decide("alice", "reject", "too dear"))
    assert one.status == ApprovalStatus.PENDING  # bob and carol can still make two
    two = await handle.execute_update(Approval.decide, decide("bob", "reject", "agree"))
    assert two.status == ApprovalStatus.REJECTED
    assert not (await handle.result()).approved


async def test_refused_decisions_leave_no_history(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(unique("p"), approvers="{users: [alice, bob]}")
    handle = await start(env, task_queue, policy_name=name, requester="alice")
    asked = await ready(handle)
    assert asked.approvers == ["bob"]  # alice is named, but may not decide her own request
    refusals = {
        "NotAnApprover": decide("dave"),
        "SelfApproval": decide("alice"),
        "ReasonRequired": decide("bob", "reject"),
    }
    for kind, decision in refusals.items():
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(Approval.decide, decision)
        assert getattr(refused.value.cause, "type", None) == kind, refused.value.cause
    assert "does not allow approving one's own request" in str(
        (await _refusal(handle, decide("alice"))).cause
    )
    await handle.execute_update(Approval.decide, decide("bob"))
    changed = await _refusal(handle, decide("bob", "reject", "changed my mind"))
    assert getattr(changed.cause, "type", None) == "AlreadyDecided"
    await handle.result()
    history = await handle.fetch_history()
    accepted = [
        e for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]  # fmt: skip
    assert len(accepted) == 1  # only bob's approval reached the history


async def test_a_requester_allowed_to_decide_is_an_approver(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(unique("p"), approvers="{users: [alice, bob]}",
                              allowSelfApproval="true")  # fmt: skip
    handle = await start(env, task_queue, policy_name=name, requester="alice")
    assert (await ready(handle)).approvers == ["alice", "bob"]
    decided = await handle.execute_update(Approval.decide, decide("alice"))
    assert decided.status == ApprovalStatus.APPROVED
    assert (await handle.result()).decided_by == ["alice"]


async def test_a_decision_cannot_be_changed(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(unique("p"), approvers="{users: [alice, bob, carol]}",
                              requiredApprovals="3")  # fmt: skip
    handle = await start(env, task_queue, policy_name=name)
    await handle.execute_update(Approval.decide, decide("alice"))
    changed = await _refusal(handle, decide("alice", "reject", "oops"))
    assert getattr(changed.cause, "type", None) == "DecisionChanged"
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()  # cancelled


async def test_signals_count_and_invalid_ones_are_recorded_as_ignored(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(unique("p"))
    handle = await start(env, task_queue, policy_name=name)
    await handle.signal(DECIDE_SIGNAL, decide("erin"))
    await handle.signal(DECIDE_SIGNAL, decide("bob").model_copy(update={"via": "signal"}))
    result = await handle.result()
    assert result.status == ApprovalStatus.APPROVED
    ignored = events(result, "decision ignored")
    assert len(ignored) == 1
    assert ignored[0].actor == "erin"
    assert "not an approver" in ignored[0].detail


async def test_a_policy_that_does_not_apply_rejects_at_once(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, where, task_queue = world
    name = where.write_policy(unique("p"), appliesTo="{kinds: [vacation]}")
    result = await (await start(env, task_queue, policy_name=name, kind="purchase")).result()
    assert result.status == ApprovalStatus.REJECTED
    assert result.reason == f"policy {name} governs requests of kind vacation, not purchase"


async def test_unknown_policy_fails_with_a_clear_message(
    world: tuple[WorkflowEnvironment, Setup, str],
) -> None:
    env, _, task_queue = world
    with pytest.raises(WorkflowFailureError) as failed:
        await (await start(env, task_queue, policy_name="no-such-policy")).result()
    messages: list[str] = []
    error: BaseException | None = failed.value.cause
    while error is not None:  # the workflow failed because the policy lookup failed
        messages.append(str(error))
        error = getattr(error, "cause", None)
    assert any("no ApprovalPolicy named 'no-such-policy'" in m for m in messages), messages


async def _refusal(
    handle: WorkflowHandle[Any, ApprovalResult], decision: Decision
) -> WorkflowUpdateFailedError:
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(Approval.decide, decision)
    return refused.value
