"""The Temporal and Prometheus side of worker rollouts: what a Worker Deployment's versions
are, who polls for them, how many workflows run on each, which of Muster's alerts fire for
them; and the routing changes and metadata the operator writes.

The Python SDK has no high-level client for Worker Deployments, so these are the
``WorkflowService`` calls (``DescribeWorkerDeployment``, ``SetWorkerDeploymentCurrentVersion``
...). :mod:`muster_operator.rollouts` decides from what is read here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.api.common.v1 import Payload
from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import (
    TaskQueueType,
    VersionDrainageStatus,
    WorkerDeploymentVersionStatus,
)
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
    UpdateWorkerDeploymentVersionMetadataRequest,
)
from temporalio.client import Client
from temporalio.converter import default
from temporalio.service import RPCError, RPCStatusCode

from muster_operator.reconcile import Want, bounded
from muster_operator.rollouts import (
    GATE_KEY,
    IDENTITY,
    ROLLBACK_KEY,
    Alert,
    GateVerdict,
    Routing,
    RoutingChange,
    TemporalStatus,
    Version,
    Workflows,
)

log = logging.getLogger(__name__)

STATUS: dict[int, TemporalStatus] = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: "Inactive",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "Current",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "Ramping",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "Draining",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "Drained",
}
PAYLOADS = default().payload_converter


def _time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    return getattr(message, name).ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def decode(payload: Payload) -> Any:
    """A metadata entry's value (JSON), or None when it is not readable."""
    try:
        return PAYLOADS.from_payload(payload)
    except Exception:
        return None


def encode(value: Any) -> Payload:
    """A metadata entry's value."""
    return PAYLOADS.to_payload(value)


def gate_verdict(value: Any) -> GateVerdict | None:
    """The replay gate's verdict from its metadata entry (None: none, or unreadable)."""
    if not isinstance(value, Mapping) or value.get("verdict") not in ("passed", "failed"):
        return None
    return GateVerdict(
        passed=value["verdict"] == "passed",
        message=str(value.get("message") or ""),
        replayed=int(value.get("replayed") or 0),
    )


def rollback_note(value: Any) -> str | None:
    """Why a build was rolled back, from its metadata entry."""
    if isinstance(value, Mapping) and value.get("reason"):
        return str(value["reason"])
    return None


@dataclass
class DeploymentView:
    """A Worker Deployment as Temporal holds it, and who polls for its versions."""

    versions: dict[str, Version] = field(default_factory=dict)
    routing: Routing = field(default_factory=Routing)
    conflict_token: bytes = b""
    pollers: dict[str, int] = field(default_factory=dict)


async def describe_deployment(
    client: Client, deployment: str, described: Iterable[str]
) -> DeploymentView:
    """The deployment's routing and versions; ``described`` builds also get their metadata
    (gate verdict, rollback note) and their pollers on each of their workflow task queues."""
    try:
        answer = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return DeploymentView()  # no pod polled yet: Temporal makes it at the first poll
        raise
    info = answer.worker_deployment_info
    config = info.routing_config
    current = config.current_deployment_version.build_id or None
    ramping = config.ramping_deployment_version.build_id or None
    view = DeploymentView(
        routing=Routing(
            current=current,
            ramping=ramping,
            percentage=float(config.ramping_version_percentage) if ramping else 0.0,
            ramp_changed=_time(config, "ramping_version_percentage_changed_time")
            if ramping
            else None,
        ),
        conflict_token=answer.conflict_token,
    )
    summaries = {s.deployment_version.build_id: s for s in info.version_summaries}
    wanted = {b for b in described if b in summaries}
    details = await asyncio.gather(*(_describe_version(client, deployment, b) for b in wanted))
    metadata = dict(zip(wanted, (d[0] for d in details), strict=True))
    queues = dict(zip(wanted, (d[1] for d in details), strict=True))
    for build, summary in summaries.items():
        status = STATUS.get(summary.status)
        if status is None:
            continue
        drained = (
            _time(summary.drainage_info, "last_changed_time")
            if summary.drainage_info.status == VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED
            else None
        )
        entries = metadata.get(build, {})
        view.versions[build] = Version(
            build_id=build,
            status=status,
            current_since=_time(summary, "current_since_time"),
            last_current=_time(summary, "last_current_time"),
            drained_since=drained,
            gate=gate_verdict(entries.get(GATE_KEY)),
            rolled_back=rollback_note(entries.get(ROLLBACK_KEY)),
        )
    view.pollers = await count_pollers(client, deployment, queues)
    return view


async def _describe_version(
    client: Client, deployment: str, build: str
) -> tuple[dict[str, Any], list[str]]:
    try:
        answer = await client.workflow_service.describe_worker_deployment_version(
            DescribeWorkerDeploymentVersionRequest(
                namespace=client.namespace,
                deployment_version=WorkerDeploymentVersion(
                    deployment_name=deployment, build_id=build
                ),
            )
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return {}, []
        raise
    info = answer.worker_deployment_version_info
    entries = {key: decode(value) for key, value in info.metadata.entries.items()}
    workflow_queues = [
        q.name
        for q in answer.version_task_queues
        if q.type == TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
    ]
    return entries, workflow_queues


async def count_pollers(
    client: Client, deployment: str, queues: Mapping[str, Sequence[str]]
) -> dict[str, int]:
    """Pollers of each build: the fewest it has on any of its workflow task queues (a build
    is there only once every one of its queues has a poller of it)."""
    names = sorted({q for qs in queues.values() for q in qs})
    answers = await asyncio.gather(
        *(
            client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace,
                    task_queue=TaskQueue(name=name),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            for name in names
        )
    )
    per_queue: dict[str, dict[str, int]] = {}
    for name, answer in zip(names, answers, strict=True):
        counts: dict[str, int] = {}
        for poller in answer.pollers:
            options = poller.deployment_options
            if options.deployment_name == deployment and options.build_id:
                counts[options.build_id] = counts.get(options.build_id, 0) + 1
        per_queue[name] = counts
    return {
        build: min((per_queue[q].get(build, 0) for q in qs), default=0)
        for build, qs in queues.items()
    }


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def count_workflows(client: Client, deployment: str, build: str) -> Workflows:
    """Open workflows whose last task ran on the build, and the pinned ones among them
    (Temporal's visibility: ``TemporalWorkerDeploymentVersion = '<deployment>:<build>'``)."""
    base = (
        f"TemporalWorkerDeploymentVersion = {_quoted(f'{deployment}:{build}')} "
        "AND ExecutionStatus = 'Running'"
    )
    running, pinned = await asyncio.gather(
        client.count_workflows(base),
        client.count_workflows(f"{base} AND TemporalWorkflowVersioningBehavior = 'Pinned'"),
    )
    return Workflows(running=running.count, pinned=pinned.count)


class RoutingConflict(Exception):
    """Someone else changed the deployment's routing since it was read (retried at once)."""


async def change_routing(
    client: Client, deployment: str, change: RoutingChange, conflict_token: bytes
) -> None:
    """Make one routing change, guarded by the conflict token of the last describe."""
    try:
        if change.action == "set-current":
            await client.workflow_service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=deployment,
                    build_id=change.build_id or "",
                    conflict_token=conflict_token,
                    identity=IDENTITY,
                    allow_no_pollers=change.allow_no_pollers,
                )
            )
        else:
            await client.workflow_service.set_worker_deployment_ramping_version(
                SetWorkerDeploymentRampingVersionRequest(
                    namespace=client.namespace,
                    deployment_name=deployment,
                    build_id=change.build_id or "",
                    percentage=change.percentage if change.build_id else 0.0,
                    conflict_token=conflict_token,
                    identity=IDENTITY,
                )
            )
    except RPCError as exc:
        if exc.status in (RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED) and (
            "conflict" in (exc.message or "").lower()
        ):
            raise RoutingConflict(exc.message) from None
        raise


async def record_rollback(
    client: Client, deployment: str, build: str, reason: str, now: datetime
) -> None:
    """Write why a build was rolled back into its version's metadata (it stays there: the
    operator never promotes the build again by itself)."""
    await client.workflow_service.update_worker_deployment_version_metadata(
        UpdateWorkerDeploymentVersionMetadataRequest(
            namespace=client.namespace,
            deployment_version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build),
            upsert_entries={ROLLBACK_KEY: encode({"reason": reason, "at": now.isoformat()})},
            identity=IDENTITY,
        )
    )


# -- Prometheus ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertsSeen:
    """The alerts firing for one Worker Deployment, or why they could not be read."""

    alerts: list[Alert] | None
    note: Want


async def firing_alerts(
    http: httpx.AsyncClient | None, url: str, deployment: str, *, timeout: float
) -> AlertsSeen:
    """Muster's alerts firing for the deployment's builds, from Prometheus' ``/api/v1/alerts``
    (an alert names its build in ``build_id`` and its deployment in ``worker_deployment``)."""
    if http is None or not url:
        return AlertsSeen(
            None,
            Want(
                "AlertsWatched",
                "False",
                "NoPrometheus",
                "no Prometheus configured (MUSTER_OPERATOR_ROLLOUT__PROMETHEUS_URL): no "
                "automatic rollback",
            ),
        )
    try:
        answer = await http.get(f"{url.rstrip('/')}/api/v1/alerts", timeout=timeout)
        answer.raise_for_status()
        listed = answer.json()["data"]["alerts"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return AlertsSeen(
            None,
            Want(
                "AlertsWatched",
                "False",
                "PrometheusUnavailable",
                bounded(f"cannot read alerts from {url}: {exc}; no automatic rollback until it "
                        "answers", 500),
            ),
        )  # fmt: skip
    alerts = []
    for entry in listed:
        labels = entry.get("labels") or {}
        if entry.get("state") != "firing" or labels.get("worker_deployment") != deployment:
            continue
        if not labels.get("build_id"):
            continue
        summary = str((entry.get("annotations") or {}).get("summary") or "")
        alerts.append(Alert(str(labels.get("alertname")), str(labels["build_id"]), summary))
    return AlertsSeen(
        alerts, Want("AlertsWatched", "True", "PrometheusAnswers", f"alerts read from {url}")
    )
