"""Records histories of the approval workflow's paths for the replay tests.

Run by ``make histories`` (``tests/replay/record.py``) with the workflow code whose
histories should be kept, never during a test run. Decisions, signals and cancellation run
on a real dev server; paths that wait days (timeouts, escalation, cron reminders) on the
time-skipping test server. Each history lands in ``tests/replay/histories/Approval/<name>.json``
(see ``tests/replay/recording.py``).

Histories are never recorded again to make a code change pass: a change to what the
workflow emits goes behind ``workflow.patched`` and gets new paths here, recorded with the
new code (the ``patched_*`` paths), while the old histories keep replaying the old branch.
A path that needs a particular mail relay names it in ``RELAYS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from muster_api.approval import DECIDE_SIGNAL, WORKFLOW, ApprovalResult, Decision, RemindRequest
from muster_api.approval import REMIND_SIGNAL as APPROVAL_REMIND_SIGNAL
from muster_approval.workflows import Approval
from muster_dev.mailbox import Mailbox
from muster_dev.process import free_port
from tests.approval_support import Setup, approval_worker, request, setup
from tests.replay.recording import Servers, save, wanted

Handle = WorkflowHandle[Any, ApprovalResult]


@dataclass
class World:
    """Where a path runs: a client, a worker's task queue, the policy folder, the clock."""

    client: Client
    task_queue: str
    where: Setup
    env: WorkflowEnvironment | None  # the time-skipping server, for paths that wait days

    async def start(self, policy_name: str, **kwargs: Any) -> Handle:
        return await self.client.start_workflow(
            WORKFLOW, request(policy_name, **kwargs), id=f"replay-{uuid.uuid4().hex[:12]}",
            task_queue=self.task_queue, result_type=ApprovalResult,
        )  # fmt: skip

    def policy(self, name: str, **spec: Any) -> str:
        return self.where.write_policy(f"{name}-{uuid.uuid4().hex[:6]}", **spec)


def decide(approver: str, verdict: str = "approve", reason: str | None = None) -> Decision:
    return Decision.model_validate({"approver": approver, "verdict": verdict, "reason": reason})


async def refused(handle: Handle, decision: Decision) -> None:
    """A decision the validator refuses (it leaves no history)."""
    with suppress(WorkflowUpdateFailedError):
        await handle.execute_update(Approval.decide, decision)
        raise AssertionError(f"{decision} was accepted")


# -- paths on the dev server ------------------------------------------------------------


async def quorum_approved(world: World) -> Handle:
    """Two of three approve; the first approver repeats herself (idempotent)."""
    name = world.policy("quorum", approvers="{users: [alice, bob, carol]}", requiredApprovals="2")
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.execute_update(Approval.decide, decide("alice"))
    await refused(handle, decide("alice", "reject", "changed my mind"))
    await handle.execute_update(Approval.decide, decide("bob"))
    await handle.result()
    return handle


async def title_in_memo(world: World) -> Handle:
    """Started without a memo, as an order's saga starts it: the workflow puts the title in
    its memo (patch ``title-in-memo``), where lists read it; then approved."""
    name = world.policy("memo", approvers="{users: [alice]}")
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.result()
    memo = await (await handle.describe()).memo()
    assert memo["title"], memo
    return handle


async def veto_any_reject(world: World) -> Handle:
    """One rejection decides under AnyReject."""
    name = world.policy("anyreject", approvers="{users: [alice, bob, carol]}",
                        requiredApprovals="2", veto="AnyReject")  # fmt: skip
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice", "reject", "no budget"))
    await handle.result()
    return handle


async def veto_quorum(world: World) -> Handle:
    """Under Quorum a request is rejected once two approvals can no longer be reached."""
    name = world.policy("quorumveto", approvers="{users: [alice, bob, carol]}",
                        requiredApprovals="2", veto="Quorum")  # fmt: skip
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice", "reject", "too dear"))
    await handle.execute_update(Approval.decide, decide("carol"))
    await handle.execute_update(Approval.decide, decide("bob", "reject", "agree"))
    await handle.result()
    return handle


async def requester_is_approver(world: World) -> Handle:
    """The requester is one of the named approvers but may not approve her own request."""
    name = world.policy("selfforbidden", approvers="{users: [alice, bob]}")
    handle = await world.start(name, requester="alice")
    await refused(handle, decide("dave"))
    await refused(handle, decide("alice"))
    await refused(handle, decide("bob", "reject"))
    await handle.execute_update(Approval.decide, decide("bob"))
    await handle.result()
    return handle


async def self_approval_allowed(world: World) -> Handle:
    """The policy lets the requester approve her own request."""
    name = world.policy("selfallowed", approvers="{users: [alice, bob]}",
                        allowSelfApproval="true")  # fmt: skip
    handle = await world.start(name, requester="alice")
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.result()
    return handle


async def signals(world: World) -> Handle:
    """Decisions as signals: an outsider's is recorded as ignored, bob's counts."""
    name = world.policy("signals")
    handle = await world.start(name)
    await handle.signal(DECIDE_SIGNAL, decide("erin"))
    await handle.signal(DECIDE_SIGNAL, decide("bob").model_copy(update={"via": "signal"}))
    await handle.result()
    return handle


async def policy_does_not_apply(world: World) -> Handle:
    """The named policy governs other kinds of request: rejected at once."""
    name = world.policy("vacation", appliesTo="{kinds: [vacation]}")
    handle = await world.start(name, kind="purchase")
    await handle.result()
    return handle


async def cancelled(world: World) -> Handle:
    """One of three approvals, then the request is withdrawn."""
    name = world.policy("cancel", approvers="{users: [alice, bob, carol]}", requiredApprovals="3")
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.cancel()
    with suppress(WorkflowFailureError):
        await handle.result()
        raise AssertionError("the cancelled request completed")
    return handle


async def reminders_by_schedule(world: World) -> Handle:
    """A published policy's reminder schedule signals rounds; a repeated key is ignored."""
    name = f"published-{uuid.uuid4().hex[:6]}"
    (world.where.policies / f"{name}.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: muster.io/v1alpha1
            kind: ApprovalPolicy
            metadata:
              name: {name}
              annotations: {{muster.io/reminders: schedule}}
            spec:
              approvers: {{groups: [finance]}}
              requiredApprovals: 2
              reminders: {{cron: '0 9 * * 1-5', timeZone: Europe/Berlin}}
            """
        )
    )
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice"))
    for key in ("2026-03-02T08:00:00Z", "2026-03-02T08:00:00Z", "2026-03-03T08:00:00Z"):
        await handle.signal(APPROVAL_REMIND_SIGNAL, RemindRequest(key=key))
    await handle.execute_update(Approval.decide, decide("bob"))
    await handle.result()
    return handle


async def decided_while_starting(world: World) -> Handle:
    """Update-with-start: the decision arrives before the policy is pinned."""
    name = world.policy("withstart")
    start = WithStartWorkflowOperation(
        Approval.run, request(name), id=f"replay-{uuid.uuid4().hex[:12]}",
        task_queue=world.task_queue, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )  # fmt: skip
    await world.client.execute_update_with_start_workflow(
        Approval.decide, decide("alice"), start_workflow_operation=start
    )
    handle = await start.workflow_handle()
    await handle.result()
    return handle


# -- paths of the patched code (notifications, wording, MusterDecidedBy) ------------------


async def patched_rejected_in_words(world: World) -> Handle:
    """A rejection recorded as "rejected", with MusterDecidedBy upserted."""
    name = world.policy("wordsreject", approvers="{users: [alice, bob, carol]}",
                        requiredApprovals="2")  # fmt: skip
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.execute_update(Approval.decide, decide("bob", "reject", "no budget"))
    await handle.result()
    return handle


async def patched_policy_does_not_apply(world: World) -> Handle:
    """The named policy governs other kinds: rejected at once, said without reprs."""
    name = world.policy("wordsvacation", appliesTo="{kinds: [vacation]}")
    handle = await world.start(name, kind="purchase")
    await handle.result()
    return handle


async def patched_withdrawn(world: World) -> Handle:
    """Withdrawn after one approval: the requester and the approvers still asked are told
    before the workflow ends as cancelled."""
    name = world.policy("withdrawn", approvers="{users: [alice, bob, carol]}",
                        requiredApprovals="3")  # fmt: skip
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.cancel()
    with suppress(WorkflowFailureError):
        await handle.result()
        raise AssertionError("the cancelled request completed")
    return handle


async def patched_refused_by_relay(world: World) -> Handle:
    """The relay refuses bob for good (550): one attempt, recorded as failed; alice decides."""
    name = world.policy("refused")
    handle = await world.start(name, title="Line one\nLine two")
    await _wait_mail(world, "alice@example.com")
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.result()
    return handle


async def patched_relay_down_after_decision(world: World) -> Handle:
    """No relay answers: the decided request gives up on its notifications after the grace
    period and ends (time-skipping)."""
    name = world.policy("relaydown")
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("bob"))
    await handle.result()
    return handle


async def _wait_mail(world: World, address: str) -> None:
    # The mailbox, not a query: a query during the first workflow task's local activities
    # makes Core end that task early, and the history then holds an extra task boundary.
    for _ in range(300):
        if world.where.mail_to(address):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no mail to {address} within 30 s")


class _RefusingBob(Mailbox):
    async def handle_RCPT(  # noqa: N802 - aiosmtpd's handler protocol
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address.startswith("bob@"):
            return "550 5.1.1 <bob@example.com>: no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@asynccontextmanager
async def refusing_relay(where: Setup) -> AsyncIterator[Setup]:
    """A relay that refuses bob's address for good."""
    mailbox = _RefusingBob(None)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(mailbox, hostname="refusing-smtp"), host="127.0.0.1", port=0
    )
    try:
        port = int(server.sockets[0].getsockname()[1])
        yield dataclasses.replace(where, mailbox=mailbox, smtp_port=port)
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def no_relay(where: Setup) -> AsyncIterator[Setup]:
    """Nothing listens where the worker sends mail."""
    yield dataclasses.replace(where, smtp_port=free_port())


RELAYS: dict[str, Callable[[Setup], AbstractAsyncContextManager[Setup]]] = {
    "patched_refused_by_relay": refusing_relay,
    "patched_relay_down_after_decision": no_relay,
}


# -- paths on the time-skipping server ---------------------------------------------------


async def escalated_then_rejected_on_timeout(world: World) -> Handle:
    """Seven days for finance, three more for managers, then the policy rejects."""
    name = world.policy("escalate", escalations="[{to: {groups: [managers]}, timeout: 3d}]",
                        onTimeout="Reject")  # fmt: skip
    handle = await world.start(name)
    await handle.result()
    return handle


async def approved_on_timeout(world: World) -> Handle:
    """Nobody decides in two days and the policy approves."""
    name = world.policy("approveontimeout", timeout="2d", onTimeout="Approve")
    handle = await world.start(name)
    await handle.result()
    return handle


async def manager_decides_after_escalation(world: World) -> Handle:
    """After escalation the manager may decide; the requester still may not."""
    assert world.env is not None
    name = world.policy("managerdecides",
                        escalations="[{to: {groups: [managers]}, timeout: 3d}]")  # fmt: skip
    handle = await world.start(name)
    await world.env.sleep(timedelta(days=7, hours=1))
    await refused(handle, decide("dave"))
    await handle.execute_update(Approval.decide, decide("carol", reason="fine"))
    await handle.result()
    return handle


async def escalation_lowers_the_quorum(world: World) -> Handle:
    """One of two approvals in time; the escalation step needs only one: approved."""
    name = world.policy(
        "lowerquorum", approvers="{users: [alice, bob]}", requiredApprovals="2", timeout="1d",
        escalations="[{to: {users: [carol]}, timeout: 1d, requiredApprovals: 1}]",
    )  # fmt: skip
    handle = await world.start(name)
    await handle.execute_update(Approval.decide, decide("alice"))
    await handle.result()
    return handle


async def reminders_by_cron(world: World) -> Handle:
    """Three days with a daily reminder at 09:00 UTC, then rejected on timeout."""
    name = world.policy("cron", timeout="3d", reminders="{cron: '0 9 * * *', timeZone: UTC}")
    handle = await world.start(name)
    await handle.result()
    return handle


DEV_SERVER: dict[str, Callable[[World], Awaitable[Handle]]] = {
    "title_in_memo": title_in_memo,
    "quorum_approved": quorum_approved,
    "veto_any_reject": veto_any_reject,
    "veto_quorum": veto_quorum,
    "requester_is_approver": requester_is_approver,
    "self_approval_allowed": self_approval_allowed,
    "signals": signals,
    "policy_does_not_apply": policy_does_not_apply,
    "cancelled": cancelled,
    "reminders_by_schedule": reminders_by_schedule,
    "decided_while_starting": decided_while_starting,
    "patched_rejected_in_words": patched_rejected_in_words,
    "patched_policy_does_not_apply": patched_policy_does_not_apply,
    "patched_withdrawn": patched_withdrawn,
    "patched_refused_by_relay": patched_refused_by_relay,
}
TIME_SKIPPING: dict[str, Callable[[World], Awaitable[Handle]]] = {
    "escalated_then_rejected_on_timeout": escalated_then_rejected_on_timeout,
    "approved_on_timeout": approved_on_timeout,
    "manager_decides_after_escalation": manager_decides_after_escalation,
    "escalation_lowers_the_quorum": escalation_lowers_the_quorum,
    "reminders_by_cron": reminders_by_cron,
    "patched_relay_down_after_decision": patched_relay_down_after_decision,
}


@asynccontextmanager
async def _same_relay(where: Setup) -> AsyncIterator[Setup]:
    yield where


async def _record(
    client: Client,
    env: WorkflowEnvironment | None,
    paths: dict[str, Callable[[World], Awaitable[Handle]]],
    tmp: Path,
) -> None:
    for name, path in paths.items():
        folder = tmp / f"approval-{name}"
        folder.mkdir()
        task_queue = f"replay-{uuid.uuid4().hex[:8]}"
        relay = RELAYS.get(name, _same_relay)
        async with (
            setup(folder) as found,
            relay(found) as where,
            approval_worker(client, task_queue, where),
        ):
            handle = await path(World(client, task_queue, where, env))
            history = await handle.fetch_history()
        save(WORKFLOW, name, history)


async def record(servers: Servers, names: set[str] | None, refresh: bool) -> None:
    """Record the approval paths that ``names``/``refresh`` ask for (see ``wanted``)."""
    dev = wanted(WORKFLOW, DEV_SERVER, names, refresh)
    skipping = wanted(WORKFLOW, TIME_SKIPPING, names, refresh)
    if dev:
        await _record(await servers.dev(), None, dev, servers.tmp)
    if skipping:
        env = await servers.skipping()
        await _record(env.client, env, skipping, servers.tmp)
