"""The approval activities: pin a policy, resolve approvers, notify people, time reminders.

:class:`ApprovalActivities` holds the policy source, the directory of people, the SMTP
settings and an HTTP client; the worker registers its bound methods.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from muster_api.approval import PolicySnapshot
from muster_api.v1alpha1 import ApproverSet
from muster_approval.models import (
    UNDELIVERABLE,
    LoadPolicyInput,
    NotifyInput,
    NotifyResult,
    ReminderInput,
)
from muster_approval.notify import (
    SmtpConfig,
    Undeliverable,
    build_email,
    post_webhook,
    send_emails,
    slack_payload,
)
from muster_runtime.policies import Directory, PolicyError


class ApprovalActivities:
    """Activities bound to where policies, people and channels are."""

    def __init__(
        self,
        *,
        policies: Callable[[], dict[str, PolicySnapshot]],
        directory: Callable[[], Directory],
        smtp: SmtpConfig,
        http: httpx.AsyncClient,
        secrets_dir: Path,
        public_url: str,
    ) -> None:
        self.policies = policies
        self.directory = directory
        self.smtp = smtp
        self.http = http
        self.secrets_dir = secrets_dir
        self.public_url = public_url.rstrip("/")

    @activity.defn(name="approval.load_policy")
    async def load_policy(self, request: LoadPolicyInput) -> PolicySnapshot:
        """The policy as it is now; the workflow pins this snapshot for the request's life."""
        try:
            policies = self.policies()
        except PolicyError as exc:
            # A broken policy file is fixed by a person; retrying with backoff is right.
            raise ApplicationError(f"policies cannot be read: {exc}") from None
        snapshot = policies.get(request.name)
        if snapshot is None:
            raise ApplicationError(
                f"no ApprovalPolicy named {request.name!r}; known: {', '.join(sorted(policies))}",
                type="UnknownPolicy",
                non_retryable=True,
            )
        return snapshot

    @activity.defn(name="approval.resolve_approvers")
    async def resolve_approvers(self, approvers: ApproverSet) -> list[str]:
        """The user ids a policy names, groups expanded through the directory."""
        return self.directory().members(approvers)

    @activity.defn(name="approval.next_reminder")
    async def next_reminder(self, request: ReminderInput) -> datetime:
        """The next time the reminder cron fires after ``after``."""
        return request.reminders.next_after(request.after)

    @activity.defn(name="approval.notify")
    async def notify(self, request: NotifyInput) -> NotifyResult:
        """E-mail the recipients and post the policy's webhook, each message keyed.

        What no retry can deliver (an address that is none, a permanent refusal) fails the
        activity for good with type ``NotificationUndeliverable``, after the rest was sent;
        a relay or webhook that is down fails it so that Temporal retries.
        """
        channels = request.policy.spec.notifications
        result = NotifyResult()
        problems: list[str] = []
        link = f"{self.public_url}/approvals/{request.request.request_id}"
        body = "\n".join([*request.lines, "", f"Open: {link}"])
        if channels.email is not None and channels.email.enabled:
            directory = self.directory()
            messages = []
            users = {}
            for user in request.recipients:
                address = directory.email(user)
                if address is None:
                    result.unknown.append(user)
                    continue
                try:
                    messages.append(
                        build_email(
                            self.smtp, address, request.subject, body, request.idempotency_key
                        )
                    )
                except Undeliverable as exc:
                    problems.append(f"e-mail to {user}: {exc}")
                    continue
                users[address] = user
            sent = await send_emails(self.smtp, messages)
            result.emailed = [users.get(address, address) for address in sent.delivered]
            problems += [
                f"e-mail to {users.get(address, address)} refused by the mail relay: {answer}"
                for address, answer in sent.refused.items()
            ]
        if channels.webhook is not None:
            ref = channels.webhook.url_secret_ref
            path = self.secrets_dir / ref.name / ref.key
            try:
                url = path.read_text().strip()
            except OSError as exc:
                # A Secret not (yet) mounted is fixed by a person: worth retrying.
                raise ApplicationError(
                    f"webhook URL secret {ref.name}/{ref.key} not readable at {path}: {exc}"
                ) from None
            event = {
                "event_id": request.idempotency_key,
                "event": request.event,
                "request_id": request.request.request_id,
                "kind": request.request.kind,
                "policy": request.policy.name,
                "recipients": request.recipients,
                "deadline": request.deadline.isoformat() if request.deadline else None,
                "link": link,
            }
            try:
                await post_webhook(
                    self.http,
                    url,
                    slack_payload(request.subject, request.lines, event),
                    request.idempotency_key,
                )
                result.webhook = True
            except Undeliverable as exc:
                problems.append(str(exc))
        if problems:
            done = ", ".join(result.emailed) + (" and the webhook" if result.webhook else "")
            raise ApplicationError(
                "; ".join(problems) + (f" (sent to {done})" if done else ""),
                result.model_dump(mode="json"),
                type=UNDELIVERABLE,
                non_retryable=True,
            )
        return result
