"""Wiring of the approval worker: settings, where policies and people come from, SMTP."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict
from temporalio.client import Client

from muster_api.approval import TASK_QUEUE, PolicySnapshot
from muster_approval.activities import ApprovalActivities
from muster_approval.notify import SmtpConfig
from muster_approval.workflows import Approval
from muster_runtime.policies import Directory, PolicyError, cached_by_mtime, load_policy_dir
from muster_runtime.service import StartupError, WorkerDefinition, worker_main
from muster_runtime.settings import Port, WorkerServiceSettings, WorkerSettings

log = logging.getLogger(__name__)


class SmtpSettings(BaseModel):
    """The mail relay notifications go through."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """SMTP host (the local stack's mailbox, or your relay)."""
    port: Port = 2525
    """SMTP port."""
    sender: str = "Muster <muster@localhost>"
    """From: address of notifications."""
    starttls: bool = False
    """Upgrade the connection with STARTTLS."""
    ssl: bool = False
    """Connect with implicit TLS (port 465 style)."""
    username: str | None = None
    """Login user, if the relay needs one."""
    password_file: Path | None = None
    """File holding the login password (a mounted Secret)."""
    timeout_seconds: float = Field(default=15.0, gt=0)
    """Timeout of one SMTP session."""


class ApprovalSettings(WorkerServiceSettings):
    """``MUSTER_APPROVAL_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_APPROVAL_")

    # Requests wait days: keeping them in memory buys nothing, and a decision on an evicted
    # one costs a short replay. A small cache keeps the worker's memory flat however many
    # requests wait (bench/bench_approval.py measures both).
    worker: WorkerSettings = WorkerSettings(task_queue=TASK_QUEUE, max_cached_workflows=50)
    """Temporal worker."""
    policies_dir: Path
    """Folder of ApprovalPolicy YAML files (the operator publishes them to a ConfigMap in
    Kubernetes)."""
    directory_file: Path
    """YAML file of who is who: user ids, e-mail addresses, groups (a ConfigMap in
    Kubernetes)."""
    secrets_dir: Path = Path("/etc/muster/secrets")
    """Where Secrets that policies reference are mounted: <dir>/<secret>/<key>."""
    public_url: str = Field(pattern=r"^https?://[^\s/]+")
    """Base URL of the approver page as approvers reach it (the gateway's /ui), for links in
    notifications, e.g. https://approvals.example.com/ui."""
    smtp: SmtpSettings = SmtpSettings()
    """Mail relay."""


def sources(
    settings: ApprovalSettings,
) -> tuple[Callable[[], dict[str, PolicySnapshot]], Callable[[], Directory]]:
    """Policy and directory loaders, checked once now so a bad file stops the start."""
    policy_dir = settings.policies_dir
    policies = cached_by_mtime(
        lambda: sorted([*policy_dir.glob("*.yaml"), *policy_dir.glob("*.yml"), policy_dir]),
        lambda: load_policy_dir(policy_dir),
    )
    directory = cached_by_mtime(
        lambda: [settings.directory_file], lambda: Directory.load(settings.directory_file)
    )
    try:
        found = policies()
        directory()
    except PolicyError as exc:
        raise StartupError(str(exc)) from None
    if not found:
        # On Kubernetes the folder is the operator's published ConfigMap, empty until the
        # first ApprovalPolicy is applied; the worker must be up by then (the files are
        # re-read when they change). A request naming a policy not there yet fails with
        # UnknownPolicy, as it does for any unknown name.
        log.warning(
            "MUSTER_APPROVAL_POLICIES_DIR=%s holds no ApprovalPolicy yet; requests fail "
            "until one is published there",
            policy_dir,
        )
    return policies, directory


async def build(client: Client, settings: ApprovalSettings) -> WorkerDefinition:
    """Load policies and people, set up the channels, register the workflow."""
    policies, directory = sources(settings)
    password = None
    if settings.smtp.password_file is not None:
        try:
            password = settings.smtp.password_file.read_text().strip()
        except OSError as exc:
            raise StartupError(
                f"MUSTER_APPROVAL_SMTP__PASSWORD_FILE={settings.smtp.password_file}: {exc}"
            ) from None
    smtp = SmtpConfig(
        host=settings.smtp.host,
        port=settings.smtp.port,
        sender=settings.smtp.sender,
        starttls=settings.smtp.starttls,
        use_ssl=settings.smtp.ssl,
        username=settings.smtp.username,
        password=password,
        timeout=settings.smtp.timeout_seconds,
    )
    http = httpx.AsyncClient(timeout=10.0)
    activities = ApprovalActivities(
        policies=policies,
        directory=directory,
        smtp=smtp,
        http=http,
        secrets_dir=settings.secrets_dir,
        public_url=settings.public_url,
    )
    return WorkerDefinition(
        workflows=[Approval],
        activities=[
            activities.load_policy,
            activities.resolve_approvers,
            activities.next_reminder,
            activities.notify,
        ],
        on_close=[http.aclose],
    )


def main() -> int:
    """Entry point: ``python -m muster_approval``."""
    return worker_main("approval", ApprovalSettings, build)
