"""Notifications of the approval workflow when text or channels misbehave, on Temporal's
time-skipping test server with a real SMTP server: any title reaches the approvers (one
header line, the full text in the body), a permanent refusal fails once and is recorded in
the audit trail, a mail relay that is down never holds a decided request open, and a
withdrawn request tells the requester and the approvers and leaves nothing running."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from muster_api.approval import WORKFLOW, ApprovalResult, ApprovalState, ApprovalStatus, Decision
from muster_approval.workflows import NOTIFY_GRACE, Approval
from muster_dev.mailbox import Mailbox
from tests.approval_support import Setup, approval_worker, request, setup
from tests.conftest import start_time_skipping_env
from tests.helpers import async_wait_until, free_port, unique

pytestmark = pytest.mark.timeout(120)

Handle = WorkflowHandle[Any, ApprovalResult]


class RefusingMailbox(Mailbox):
    """A relay that does not know bob: 550 for his address, the rest is delivered."""

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's handler protocol
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.startswith("bob@"):
            return "550 5.1.1 <bob@example.com>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own time-skipping server (requests left waiting would stop the clock
    of every later test on a shared one)."""
    started = await start_time_skipping_env()
    yield started
    await started.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def where(tmp_path: Any) -> AsyncIterator[Setup]:
    async with setup(tmp_path) as found:
        yield found


async def start(env: WorkflowEnvironment, task_queue: str, **kwargs: Any) -> Handle:
    return await env.client.start_workflow(
        WORKFLOW, request(**kwargs), id=unique("approval"), task_queue=task_queue,
        result_type=ApprovalResult,
    )  # fmt: skip


async def asked(handle: Handle) -> ApprovalState:
    async def ready() -> ApprovalState | None:
        state: ApprovalState = await handle.query(Approval.state)
        return state if state.deadline is not None else None

    return await async_wait_until(ready, what="approvers asked", timeout=30)


def decide(approver: str, verdict: str = "approve", reason: str | None = None) -> Decision:
    return Decision.model_validate({"approver": approver, "verdict": verdict, "reason": reason})


def audit(result: ApprovalResult | ApprovalState, event: str) -> list[str]:
    return [entry.detail for entry in result.audit if entry.event == event]


def _scheduled_by(event: HistoryEvent) -> tuple[str, int] | None:
    """(what happened, the scheduled event it belongs to) of an activity event."""
    for kind in ("started", "completed", "failed", "canceled", "timed_out", "cancel_requested"):
        name = f"activity_task_{kind}_event_attributes"
        if event.WhichOneof("attributes") == name:
            return kind.upper(), int(getattr(event, name).scheduled_event_id)
    return None


async def notify_attempts(handle: Handle) -> dict[str, list[str]]:
    """Each activity's fate in order of scheduling: its later events, in order."""
    history = await handle.fetch_history()
    fates: dict[int, list[str]] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            fates[event.event_id] = []
        elif (found := _scheduled_by(event)) is not None:
            fates[found[1]].append(found[0])
    return {str(n): fate for n, fate in enumerate(fates.values())}


async def test_any_title_reaches_the_approvers_on_one_subject_line(
    env: WorkflowEnvironment, where: Setup
) -> None:
    title = "Line one\nLine two\r\tGrüße ✓ \x07bell\u2028"
    name = where.write_policy(unique("p"))
    queue = unique("notify")
    async with approval_worker(env.client, queue, where):
        handle = await start(env, queue, policy_name=name, title=title)
        await asked(handle)
        await handle.execute_update(Approval.decide, decide("bob"))
        result = await handle.result()
    assert result.status == ApprovalStatus.APPROVED
    assert not audit(result, "notification failed")
    mails = where.mail_to("alice@example.com")
    assert [m["subject"] for m in mails] == ["Approval needed: Line one Line two Grüße ✓ bell"]
    body = mails[0]["body"].replace("\r\n", "\n")
    assert "Line one\nLine two\n\tGrüße ✓ \ufffdbell" in body  # the full text, in the body
    told = where.mail_to("dave@example.com")
    assert [m["subject"] for m in told] == ["Approved: Line one Line two Grüße ✓ bell"]


async def test_a_permanent_refusal_fails_once_and_is_recorded(
    env: WorkflowEnvironment, where: Setup
) -> None:
    refusing = RefusingMailbox(None)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(refusing, hostname="refusing-smtp"), host="127.0.0.1", port=0
    )
    relay = dataclasses.replace(
        where, mailbox=refusing, smtp_port=int(server.sockets[0].getsockname()[1])
    )
    name = where.write_policy(unique("p"))
    queue = unique("notify")
    try:
        async with approval_worker(env.client, queue, relay):
            handle = await start(env, queue, policy_name=name)
            await asked(handle)

            async def recorded() -> list[str] | None:
                state: ApprovalState = await handle.query(Approval.state)
                return audit(state, "notification failed") or None

            failed = await async_wait_until(recorded, what="the refusal recorded", timeout=30)
            await handle.execute_update(Approval.decide, decide("alice"))
            result = await handle.result()
    finally:
        server.close()
        await server.wait_closed()
    assert failed == [
        "requested: cannot be delivered: e-mail to bob refused by the mail relay: 550 5.1.1 "
        "<bob@example.com>: no such mailbox (sent to alice)"
    ]
    assert [m["subject"] for m in relay.mail_to("alice@example.com")][:1] == [
        "Approval needed: New laptop"
    ]
    # One attempt, not thirty: the refusal is not retried.
    fates = await notify_attempts(handle)
    assert fates["0"] == ["STARTED", "FAILED"]
    assert result.status == ApprovalStatus.APPROVED


async def test_a_mail_relay_that_is_down_does_not_hold_a_decided_request_open(
    env: WorkflowEnvironment, where: Setup
) -> None:
    down = dataclasses.replace(where, smtp_port=free_port())  # nothing listens there
    name = where.write_policy(unique("p"))
    queue = unique("notify")
    async with approval_worker(env.client, queue, down):
        handle = await start(env, queue, policy_name=name)
        await asked(handle)
        began = time.monotonic()
        await handle.execute_update(Approval.decide, decide("bob"))
        result = await handle.result()
        waited = time.monotonic() - began
    assert result.status == ApprovalStatus.APPROVED
    assert waited < 60, f"the request stayed open {waited:.0f}s after its decision"
    abandoned = audit(result, "notification abandoned")
    minutes = f"{NOTIFY_GRACE.total_seconds() / 60:g} min"
    assert sorted(d.split(":")[0] for d in abandoned) == ["decided", "requested"]
    assert all(minutes in d for d in abandoned), abandoned
    # Nothing is left running: every notification was cancelled and the cancellation
    # completed before the workflow did.
    for fate in (await notify_attempts(handle)).values():
        assert fate[-1] in ("COMPLETED", "FAILED", "CANCELED", "TIMED_OUT"), fate
        assert "CANCEL_REQUESTED" in fate


async def test_a_withdrawn_request_tells_people_and_leaves_nothing_running(
    env: WorkflowEnvironment, where: Setup
) -> None:
    name = where.write_policy(unique("p"))
    queue = unique("notify")
    async with approval_worker(env.client, queue, where):
        handle = await start(env, queue, policy_name=name)
        await asked(handle)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        state: ApprovalState = await handle.query(Approval.state)
    assert state.status == ApprovalStatus.CANCELLED
    for address in ("dave@example.com", "alice@example.com", "bob@example.com"):
        subjects = [m["subject"] for m in where.mail_to(address)]
        assert "Withdrawn: New laptop" in subjects, (address, subjects)
    assert any(d.startswith("withdrawn: dave, alice, bob") for d in audit(state, "notified"))
    for fate in (await notify_attempts(handle)).values():
        assert fate[-1] in ("COMPLETED", "FAILED", "CANCELED"), fate
