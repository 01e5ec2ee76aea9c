"""The ``Approval`` workflow: a request waits for people, minutes or weeks, and never forever.

Orchestration only, deterministic: timers, activities, handlers, search attributes. What
may count and what it adds up to are the rules in :mod:`muster_approval.rules`. The policy
is loaded once and pinned (its hash is in the state and the result). Decisions arrive as
the ``decide`` update, whose validator refuses what must not count without writing
history; the ``submit_decision`` signal is accepted too, and an invalid one is recorded as
ignored. Deadlines escalate along the policy's chain and end with ``onTimeout``; reminders
follow the policy's cron cadence; notifications run beside the main flow.

Notifications never hold a request open: once it has ended (decided, timed out or
withdrawn) the workflow waits at most :data:`NOTIFY_GRACE` for those still being tried,
then gives up on them and says so in the audit trail. One that can never be delivered fails
at once (``NotificationUndeliverable``) and is recorded. A withdrawn request tells the
requester and the approvers still asked before it ends.

Code changes that alter what the workflow emits are behind ``workflow.patched`` (the
``*_PATCH`` ids below), so requests started by older code replay as they ran.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate, VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    # By its full name: the sandbox passes a module through only when the import names it,
    # and `from muster_approval import rules` would run rules.py again for every workflow
    # instance (its dataclasses are built anew each time: a quarter of the worker's CPU).
    import muster_approval.rules as rules  # noqa: PLR0402
    from muster_api import search_attributes as sa
    from muster_api.approval import (
        DECIDE_SIGNAL,
        REMIND_SIGNAL,
        WORKFLOW,
        ApprovalRequest,
        ApprovalResult,
        ApprovalState,
        ApprovalStatus,
        AuditEntry,
        Decision,
        DecisionRecord,
        PolicySnapshot,
        RemindRequest,
    )
    from muster_approval.activities import ApprovalActivities
    from muster_approval.models import UNDELIVERABLE, LoadPolicyInput, NotifyInput, ReminderInput
    from muster_runtime.versioning import declare

ACTIVITY_TIMEOUT = timedelta(seconds=30)
LOOKUP_TIMEOUT = timedelta(seconds=10)
LOOKUP_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))
# Notifications are worth retrying for a while, but never block the decision itself.
NOTIFY_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=30)
NOTIFY_GRACE = timedelta(minutes=2)
"""How long an ended request waits for notifications still being retried."""

PEOPLE_PATCH = "notifications-words-decided-by"
"""One patch (each costs a marker and a search-attribute upsert per request) for what
changed together: a bounded wait for notifications at the end, a notice when a request is
withdrawn, and the failure's own message in the audit trail; verdicts as words ("rejected",
not "rejectd") and a policy that does not apply said without Python reprs; and
``MusterDecidedBy``, so people find the requests they decided."""
TITLE_MEMO_PATCH = "title-in-memo"
"""Patch id of the step that puts a request's title in its memo (histories before it lack it)."""


@declare(
    VersioningBehavior.AUTO_UPGRADE,
    "a request waits minutes to weeks for people: no build should have to stay up that long "
    "for it, so it moves to each new build at its next task. Every change to this code must "
    "therefore replay its histories: patched, and checked by the replay gate.",
)
@workflow.defn(name=WORKFLOW)
class Approval:
    """One approval request."""

    @workflow.init
    def __init__(self, request: ApprovalRequest) -> None:
        self.request = request
        self.policy: PolicySnapshot | None = None
        self.status = ApprovalStatus.PENDING
        self.level = 0
        self.required = 1
        # Everyone the levels so far named (groups expanded), the requester included; who
        # of them may decide is the rules' business (rules.eligible).
        self.approvers: list[str] = []
        self.decisions: list[DecisionRecord] = []
        self.audit: list[AuditEntry] = []
        self.deadline: datetime | None = None
        self.next_reminder: datetime | None = None
        self.reason: str | None = None
        self._notifications: list[asyncio.Task[None]] = []
        # Which patched behaviour this run has (set first thing in ``run``).
        self._bounded_notifications = False
        self._human_wording = False
        self._decided_by = False
        self._giving_up = False
        self._reminders_sent = 0
        self._remind_keys: set[str] = set()
        # Replay-safe workflow metrics (Temporal's meter), labelled by policy: bounded by the
        # number of policies, never by request.
        meter = workflow.metric_meter()
        self._completed = meter.create_counter(
            "muster_approvals_completed", "Approval requests that ended, by policy and outcome"
        )
        self._decision_seconds = meter.create_histogram_float(
            "muster_approval_decision_seconds",
            "From request to outcome, by policy and outcome",
            unit="s",
        )
        self._escalations = meter.create_counter(
            "muster_approval_escalations", "Deadlines that passed a request up its chain"
        )

    # -- queries, updates, signals ---------------------------------------------------------

    @workflow.query
    def state(self) -> ApprovalState:
        """Everything about the request: status, decisions, deadline, level, audit."""
        return ApprovalState(
            request=self.request,
            policy=self.policy.name if self.policy else self.request.policy,
            policy_sha256=self.policy.sha256 if self.policy else "",
            status=self.status,
            level=self.level,
            required_approvals=self.required,
            approvers=rules.eligible(self._ballot()),
            approvals=rules.approved_by(self.decisions),
            decisions=list(self.decisions),
            deadline=self.deadline,
            next_reminder=self.next_reminder,
            audit=list(self.audit),
        )

    # The update's name is the method's name, ``DECIDE_UPDATE`` (naming it explicitly would
    # lose the result type for typed callers: temporalio types named updates as sync).
    @workflow.update
    async def decide(self, decision: Decision) -> ApprovalState:
        """Record a decision (the validator has already refused what must not count)."""
        if not self._ready():
            # Arrived while the policy was still being loaded: check now that we can.
            await workflow.wait_condition(self._ready)
            self._check(decision)
        self._apply(decision)
        return self.state()

    @decide.validator
    def _validate_decide(self, decision: Decision) -> None:
        if self._ready():
            self._check(decision)

    @workflow.signal(name=DECIDE_SIGNAL)
    async def submit_decision(self, decision: Decision) -> None:
        """The same decision as a signal: cannot be refused, so an invalid one is ignored."""
        await workflow.wait_condition(self._ready)
        try:
            self._check(decision)
        except ApplicationError as refused:
            self._log(decision.approver, "decision ignored", refused.message)
            return
        self._apply(decision)

    @workflow.signal(name=REMIND_SIGNAL)
    def remind(self, request: RemindRequest) -> None:
        """A reminder round from the policy's reminder schedule (once per key)."""
        if self.status != ApprovalStatus.PENDING or self.policy is None:
            return
        if request.key in self._remind_keys:
            return
        self._remind_keys.add(request.key)
        self._remind(f"reminder-{request.key}")

    # -- the flow ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: ApprovalRequest) -> ApprovalResult:
        patched = workflow.patched(PEOPLE_PATCH)
        self._bounded_notifications = self._human_wording = self._decided_by = patched
        self._title_in_memo()
        self._log(request.requester, "requested", request.title)
        try:
            await self._wait_for_people()
        except (asyncio.CancelledError, ActivityError) as error:
            if not is_cancelled_exception(error):
                raise
            self.status = ApprovalStatus.CANCELLED
            self._log("muster", "cancelled", "the request was withdrawn")
            self._upsert()
            self._record_outcome()
            if self._bounded_notifications:
                # The cancellation is delivered once: from here on the workflow may still
                # tell people, and must not leave notifications running when it ends.
                self._announce_withdrawal()
                await self._settle_notifications()
            raise
        self._record_outcome()
        self._announce_outcome()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._bounded_notifications:
            await self._settle_notifications()
        else:
            await self._finish_notifications()
        return ApprovalResult(
            request_id=request.request_id,
            approved=self.status.approved,
            status=self.status.value,
            decided_by=rules.approved_by(self.decisions)
            if self.status.approved
            else rules.rejected_by(self.decisions),
            reason=self.reason,
            policy=self.policy.name if self.policy else request.policy,
            policy_sha256=self.policy.sha256 if self.policy else None,
            audit=list(self.audit),
        )

    async def _wait_for_people(self) -> None:
        request = self.request
        # Policy and directory are files in the worker's pod (mounted ConfigMaps): local
        # activities read them within the first workflow task, with no round trips through
        # the server, so a new request costs one workflow task until it waits.
        policy: PolicySnapshot = await workflow.execute_local_activity_method(
            ApprovalActivities.load_policy,
            LoadPolicyInput(name=request.policy),
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=LOOKUP_RETRY,
        )
        self.policy = policy
        self._log("muster", "policy pinned", f"{policy.name} sha256:{policy.sha256[:12]}")
        if self._human_wording:
            mismatch = rules.not_governed(policy, request.kind, request.amount)
        else:
            mismatch = policy.applies(request.kind, request.amount)
        if mismatch is not None:
            self.status = ApprovalStatus.REJECTED
            self.reason = mismatch
            self._log("muster", "rejected", mismatch)
            self._upsert()
            return
        first = rules.level(policy.spec, 0)
        assert first is not None
        self.required = first.required
        await self._enter_level(first, "approvers asked")
        while self.status == ApprovalStatus.PENDING:
            assert self.deadline is not None
            wake_at = self.deadline
            # A published policy's reminder schedule signals `remind` instead.
            if policy.spec.reminders is not None and not policy.reminders_by_schedule:
                self.next_reminder = await workflow.execute_local_activity_method(
                    ApprovalActivities.next_reminder,
                    ReminderInput(reminders=policy.spec.reminders, after=workflow.now()),
                    start_to_close_timeout=LOOKUP_TIMEOUT,
                )
                wake_at = min(wake_at, self.next_reminder)
            try:
                await workflow.wait_condition(
                    lambda: self.status != ApprovalStatus.PENDING,
                    timeout=max(wake_at - workflow.now(), timedelta(seconds=1)),
                )
            except TimeoutError:
                if workflow.now() >= self.deadline:
                    await self._deadline_passed()
                else:
                    self._remind()

    async def _enter_level(self, level: rules.Level, event: str) -> None:
        # The level's clock starts now, not when the directory lookup below returns.
        started = workflow.now()
        members: list[str] = await workflow.execute_local_activity_method(
            ApprovalActivities.resolve_approvers,
            level.approvers,
            start_to_close_timeout=LOOKUP_TIMEOUT,
            retry_policy=LOOKUP_RETRY,
        )
        # Earlier approvers keep their say; escalation adds people, it does not remove them.
        self.approvers = sorted(set(self.approvers) | set(members))
        self.level = level.number
        self.deadline = started + level.timeout
        self._log(
            "muster", event, f"level {level.number}: {', '.join(members) or 'nobody'}", at=started
        )
        self._upsert()
        waiting = rules.awaited(self._ballot(), among=members)
        verb = "asks for" if level.number == 0 else "escalated to you:"
        self._notify(
            "requested" if level.number == 0 else "escalated",
            waiting,
            f"Approval needed: {self.request.title}",
            [
                f"{self.request.requester} {verb} approval: {self.request.title}",
                *self._summary(),
                f"Decide before {self.deadline.isoformat(timespec='minutes')}.",
            ],
            f"level-{level.number}",
        )

    async def _deadline_passed(self) -> None:
        assert self.policy is not None
        escalation = rules.level(self.policy.spec, self.level + 1)
        if escalation is not None:
            # The new quorum holds from now; the new people once the directory answered.
            self.required = escalation.required
            self._escalations.add(1, {"policy": self.policy.name})
            await self._enter_level(escalation, "escalated")
            self._evaluate()
            return
        ended = rules.on_timeout(self.policy.spec)
        self.status, self.reason = ended.status, ended.reason
        self._log("muster", "timed out", ended.reason or "")
        self._upsert()

    def _remind(self, key: str | None = None) -> None:
        self._reminders_sent += 1
        waiting = rules.awaited(self._ballot())
        self._log("muster", "reminder", ", ".join(waiting) or "nobody to remind")
        if waiting and self.deadline is not None:
            self._notify(
                "reminder",
                waiting,
                f"Reminder: approval needed: {self.request.title}",
                [
                    f"{self.request.requester} is still waiting: {self.request.title}",
                    *self._summary(),
                    f"Decide before {self.deadline.isoformat(timespec='minutes')}.",
                ],
                key or f"reminder-{self._reminders_sent}",
            )

    def _record_outcome(self) -> None:
        labels = {
            "policy": self.policy.name if self.policy else self.request.policy or "none",
            "outcome": self.status.value,
        }
        self._completed.add(1, labels)
        waited = workflow.now() - workflow.info().start_time
        self._decision_seconds.record(max(waited.total_seconds(), 0.0), labels)

    def _announce_outcome(self) -> None:
        if self.policy is None:
            return
        email = self.policy.spec.notifications.email
        recipients = []
        if email is not None and email.notify_requester:
            recipients.append(self.request.requester)
        outcome = self.status.value.replace("_", " ")
        self._notify(
            "expired" if "timeout" in self.status.value else "decided",
            recipients,
            f"{outcome.capitalize()}: {self.request.title}",
            [
                f"Your request '{self.request.title}' is {outcome}.",
                *(f"Reason: {self.reason}" for _ in [0] if self.reason),
                *(f"{d.approver} {self._past(d.verdict)}" + (f": {d.reason}" if d.reason else "")
                  for d in self.decisions),
            ],
            "outcome",
        )  # fmt: skip

    def _announce_withdrawal(self) -> None:
        if self.policy is None:
            return
        email = self.policy.spec.notifications.email
        recipients = rules.awaited(self._ballot())
        if email is not None and email.notify_requester:
            recipients = [self.request.requester, *recipients]
        self._notify(
            "withdrawn",
            recipients,
            f"Withdrawn: {self.request.title}",
            [
                f"The request '{self.request.title}' was withdrawn; nothing is left to decide.",
                *self._summary(),
            ],
            "withdrawn",
        )

    def _past(self, verdict: str) -> str:
        """A verdict as a past-tense verb."""
        if self._human_wording:
            return "approved" if verdict == "approve" else "rejected"
        return f"{verdict}d"

    # -- decisions ---------------------------------------------------------------------------

    def _ready(self) -> bool:
        """Whether the policy is pinned (or the request already ended without one)."""
        return self.deadline is not None or self.status != ApprovalStatus.PENDING

    def _ballot(self) -> rules.Ballot:
        """The request as the rules see it now."""
        policy = self.policy
        return rules.Ballot(
            request_id=self.request.request_id,
            requester=self.request.requester,
            policy=policy.name if policy else self.request.policy,
            allow_self_approval=policy is not None and policy.spec.allow_self_approval,
            veto=policy.spec.veto if policy else "AnyReject",
            status=self.status,
            level=self.level,
            required=self.required,
            named=self.approvers,
            decisions=self.decisions,
            ready=policy is not None and self.deadline is not None,
        )

    def _check(self, decision: Decision) -> None:
        """Refuse a decision that must not count; an identical repeat is fine."""
        refused = rules.refusal(self._ballot(), decision)
        if refused is not None:
            # A refusal is an answer, not a transient fault: sending it again changes nothing.
            raise ApplicationError(refused.message, type=refused.kind.value, non_retryable=True)

    def _apply(self, decision: Decision) -> None:
        if rules.decision_of(self.decisions, decision.approver) is not None:
            return  # the same decision again: nothing new to record
        self.decisions.append(
            DecisionRecord(
                approver=decision.approver,
                verdict=decision.verdict,
                reason=decision.reason,
                at=workflow.now(),
                level=self.level,
                via=decision.via,
            )
        )
        self._log(
            decision.approver,
            self._past(decision.verdict),
            (decision.reason or "") + (f" (via {decision.via})" if decision.via != "api" else ""),
        )
        self._evaluate()
        self._upsert()

    def _evaluate(self) -> None:
        if self.status != ApprovalStatus.PENDING:
            return
        settled = rules.outcome(self._ballot())
        if settled.status != ApprovalStatus.PENDING:
            self.status, self.reason = settled.status, settled.reason
            self._log("muster", self.status.value, self.reason or "")

    # -- helpers -------------------------------------------------------------------------------

    def _title_in_memo(self) -> None:
        """Put the title in the memo, where lists of requests read it, if the starter did not.

        The gateway starts requests with it; another workflow (an order's approval) or the
        temporal CLI does not. Histories from before this step have no patch marker and
        replay without it.
        """
        if workflow.memo_value("title", None, type_hint=str) is None and workflow.patched(
            TITLE_MEMO_PATCH
        ):
            workflow.upsert_memo({"title": self.request.title})

    def _summary(self) -> list[str]:
        request = self.request
        lines = [f"Kind: {request.kind}", f"Request: {request.request_id}"]
        if request.amount is not None:
            lines.append(f"Amount: {request.amount}")
        if request.description:
            lines.append(request.description)
        lines += [f"{key}: {value}" for key, value in sorted(request.context.items())]
        return lines

    def _log(self, actor: str, event: str, detail: str = "", at: datetime | None = None) -> None:
        self.audit.append(
            AuditEntry(at=at or workflow.now(), actor=actor, event=event, detail=detail)
        )

    def _notify(
        self, event: Any, recipients: list[str], subject: str, lines: list[str], suffix: str
    ) -> None:
        if self.policy is None:
            return
        message = NotifyInput(
            request=self.request,
            policy=self.policy,
            event=event,
            recipients=recipients,
            idempotency_key=f"{self.request.request_id}:{suffix}",
            subject=subject,
            lines=lines,
            deadline=self.deadline,
        )

        # Cancelled (when the request has ended and we stop waiting), an attempt under
        # way still finishes: nothing is left running when the workflow closes.
        cancellation = (
            ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            if self._bounded_notifications
            else ActivityCancellationType.TRY_CANCEL
        )

        async def send() -> None:
            try:
                result = await workflow.execute_activity_method(
                    ApprovalActivities.notify,
                    message,
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=NOTIFY_RETRY,
                    cancellation_type=cancellation,
                )
            except Exception as exc:
                if not self._bounded_notifications:
                    self._log("muster", "notification failed", f"{event}: {exc}")
                elif self._giving_up and is_cancelled_exception(exc):
                    minutes = NOTIFY_GRACE.total_seconds() / 60
                    self._log(
                        "muster",
                        "notification abandoned",
                        f"{event}: still not delivered {minutes:g} min after the request "
                        "ended; see the approval worker's log",
                    )
                else:
                    self._log("muster", "notification failed", f"{event}: {_failure(exc)}")
                return
            sent = ", ".join(result.emailed) or "no e-mail"
            hook = " and webhook" if result.webhook else ""
            self._log("muster", "notified", f"{event}: {sent}{hook}")

        self._notifications.append(asyncio.create_task(send()))

    async def _finish_notifications(self) -> None:
        # Notifications may still be retrying; the request is done only when they are.
        while self._notifications:
            pending, self._notifications = self._notifications, []
            await asyncio.gather(*pending)

    async def _settle_notifications(self) -> None:
        """Wait a little for notifications still being tried, then stop waiting: cancel
        them (each is recorded as abandoned) rather than hold the ended request open."""
        try:
            await workflow.wait_condition(
                lambda: all(task.done() for task in self._notifications), timeout=NOTIFY_GRACE
            )
        except TimeoutError:
            self._giving_up = True
            for task in self._notifications:
                if not task.done():
                    task.cancel()
        await self._finish_notifications()

    def _upsert(self) -> None:
        request = self.request
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.PATTERN.value_set("approval"),
            sa.STATUS.value_set(self.status.value),
            sa.BUSINESS_KEY.value_set(request.request_id),
            sa.REQUESTER.value_set(request.requester),
            sa.REQUEST_KIND.value_set(request.kind),
            sa.POLICY.value_set(self.policy.name if self.policy else request.policy),
            sa.APPROVERS.value_set(
                rules.awaited(self._ballot()) if self.status == ApprovalStatus.PENDING else []
            ),
        ]
        if self._decided_by:
            updates.append(sa.DECIDED_BY.value_set(sorted({d.approver for d in self.decisions})))
        if request.amount is not None:
            updates += [
                sa.AMOUNT_MINOR.value_set(request.amount.amount_minor),
                sa.CURRENCY.value_set(request.amount.currency),
            ]
        workflow.upsert_search_attributes(updates)


def _failure(error: BaseException) -> str:
    """What went wrong with an activity, in its own words (ActivityError wraps the cause)."""
    cause = error.__cause__
    if isinstance(cause, ApplicationError):
        prefix = "cannot be delivered: " if cause.type == UNDELIVERABLE else ""
        return prefix + cause.message
    return str(cause or error)
