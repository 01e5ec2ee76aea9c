"""Shared pieces of the approval tests: a real SMTP server (the local mailbox), policy and
directory files, a worker running the real workflow and activities, and request makers."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.smtp import SMTP
from temporalio.client import Client
from temporalio.worker import Worker

from muster_api.approval import ApprovalRequest
from muster_api.common import Money
from muster_approval.activities import ApprovalActivities
from muster_approval.notify import SmtpConfig
from muster_approval.workflows import Approval
from muster_dev.mailbox import Mailbox
from muster_runtime.policies import Directory, load_policy_dir
from muster_runtime.sandbox import muster_workflow_runner

DIRECTORY = """
users:
  alice: {email: alice@example.com, groups: [finance, team-leads]}
  bob: {email: bob@example.com, groups: [finance]}
  carol: {email: carol@example.com, groups: [managers]}
  dave: {email: dave@example.com, groups: [engineering]}
  erin: {email: erin@example.com, groups: [engineering]}
"""


def policy(name: str, **spec: Any) -> str:
    """An ApprovalPolicy document; ``spec`` entries are YAML snippets by key."""
    body = {
        "approvers": "{groups: [finance]}",
        "requiredApprovals": "1",
        "timeout": "7d",
        **spec,
    }
    lines = "\n".join(f"  {key}: {value}" for key, value in body.items())
    return (
        textwrap.dedent(
            f"""\
        apiVersion: muster.io/v1alpha1
        kind: ApprovalPolicy
        metadata: {{name: {name}}}
        spec:
        """
        )
        + lines
        + "\n"
    )


@dataclass
class Setup:
    """Where the files are and what the mailbox received."""

    policies: Path
    directory: Path
    mailbox: Mailbox
    smtp_port: int
    secrets: Path

    def write_policy(self, name: str, **spec: Any) -> str:
        (self.policies / f"{name}.yaml").write_text(policy(name, **spec))
        return name

    def mail_to(self, address: str) -> list[dict[str, Any]]:
        return [m for m in self.mailbox.messages if address in m["to"]]


@asynccontextmanager
async def setup(tmp: Path) -> AsyncIterator[Setup]:
    """Policy folder, directory file and a real SMTP server on a free port."""
    policies = tmp / "policies"
    policies.mkdir()
    directory = tmp / "directory.yaml"
    directory.write_text(DIRECTORY)
    mailbox = Mailbox(None)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(mailbox, hostname="test-smtp"), host="127.0.0.1", port=0
    )
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield Setup(policies, directory, mailbox, port, tmp / "secrets")
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def approval_worker(
    client: Client, task_queue: str, where: Setup
) -> AsyncIterator[ApprovalActivities]:
    """The real workflow and activities on ``task_queue``."""
    http = httpx.AsyncClient(timeout=5)
    activities = ApprovalActivities(
        policies=lambda: load_policy_dir(where.policies),
        directory=lambda: Directory.load(where.directory),
        smtp=SmtpConfig(host="127.0.0.1", port=where.smtp_port, sender="muster@test"),
        http=http,
        secrets_dir=where.secrets,
        public_url="http://gateway.test/ui",
    )
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[Approval],
        activities=[
            activities.load_policy,
            activities.resolve_approvers,
            activities.next_reminder,
            activities.notify,
        ],
        workflow_runner=muster_workflow_runner(),
    ):
        yield activities
    await http.aclose()


def request(
    policy_name: str,
    *,
    requester: str = "dave",
    kind: str = "purchase",
    amount: int | None = None,
    title: str = "New laptop",
) -> ApprovalRequest:
    return ApprovalRequest(
        request_id=f"r-{uuid.uuid4().hex[:10]}",
        kind=kind,
        requester=requester,
        title=title,
        description="The old one is dead",
        amount=Money(amount_minor=amount, currency="EUR") if amount is not None else None,
        policy=policy_name,
        context={"cost center": "4711"},
    )
