"""kopf handlers of ``Schedule``: thin I/O around :mod:`muster_operator.reconcile` (what
the schedule should be, what status says) and :mod:`muster_operator.sync` (Temporal).

One idempotent ``sync`` handler serves create, update and resume; a timer checks drift and
refreshes status; an annotation handler acts on trigger/backfill tokens; a delete handler
(behind the finalizer) removes or orphans the Temporal schedule.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from temporalio.client import Client
from temporalio.service import RPCError

from muster_api import v1alpha1
from muster_operator import metrics
from muster_operator.context import fail, now, operator_of, reconcile_now, resync
from muster_operator.reconcile import (
    BACKFILL_ANNOTATION,
    TRIGGER_ANNOTATION,
    SpecError,
    Want,
    classify,
    merge_conditions,
    observed_status,
    parse_backfill,
    parse_schedule,
    schedule_conditions,
    temporal_namespace,
)
from muster_operator.settings import OperatorSettings
from muster_operator.sync import (
    Synced,
    apply_schedule,
    backfill,
    check_and_correct,
    delete_schedule,
    trigger,
)

log = logging.getLogger(__name__)

PLURAL = "schedules"


def write_status(
    body: Mapping[str, Any],
    patch: kopf.Patch,
    synced: Want,
    *,
    resource: v1alpha1.Schedule | None = None,
    result: Synced | None = None,
    worker_pollers: int | None = None,
) -> None:
    """Patch the status keys that changed: conditions, and what Temporal holds."""
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    suspend = bool(resource.spec.suspend) if resource else False
    queue = resource.spec.workflow.task_queue if resource else ""
    wanted: dict[str, Any] = {
        "conditions": merge_conditions(
            status.get("conditions") or [],
            schedule_conditions(synced, suspend, worker_pollers, queue),
            now(),
            generation,
        )
    }
    if resource is not None:
        wanted["summary"] = resource.spec.when()
    if result is not None:
        wanted["observedGeneration"] = generation
        wanted["scheduleId"] = result.schedule_id
        wanted["temporalNamespace"] = result.namespace
        wanted["syncedFingerprint"] = result.fingerprint
        if result.outcome != "unchanged" or not status.get("lastSyncTime"):
            wanted["lastSyncTime"] = now().isoformat()
        if result.description is not None:  # None right after a create: the resync fills it
            wanted.update(observed_status(result.description))
    # Only what changed: a resync that finds everything as it was writes nothing, so many
    # quiet Schedules cost the API server no writes.
    for key, value in wanted.items():
        if status.get(key) != value:
            patch.status[key] = value


async def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    retry: int,
    *,
    drift_check: bool,
    remaining_from_spec: bool = True,
) -> None:
    """Make Temporal's schedule match the resource, then say so in status."""
    operator = operator_of(memo)
    resource: v1alpha1.Schedule | None = None

    def report(want: Want) -> None:
        write_status(body, patch, want, resource=resource)

    try:
        resource = parse_schedule(body)
        clients = await operator.clients()
        client = clients.get(temporal_namespace(resource, clients.default.namespace))
        status = body.get("status") or {}
        if drift_check:
            result = await check_and_correct(client, resource, status.get("syncedFingerprint"))
            if result.drift is not None and result.drift.changed:
                metrics.DRIFT_CORRECTIONS.labels("schedule").inc()
                kopf.warn(
                    body,
                    reason="DriftCorrected",
                    message=f"{result.drift.reason}; put back as spec says",
                )
        else:
            result = await apply_schedule(client, resource, remaining_from_spec=remaining_from_spec)
        metrics.SCHEDULE_SYNCS.labels(result.outcome).inc()
        if result.outcome != "unchanged":
            log.info(
                "Schedule %s/%s: %s Temporal schedule %s",
                resource.metadata.namespace,
                resource.metadata.name,
                result.outcome,
                result.schedule_id,
            )
        metrics.TEMPORAL_UP.set(1)
        await handle_requests(body, patch, client, resource)
        try:
            worker = await operator.pollers.count(client, resource.spec.workflow.task_queue)
        except RPCError:
            worker = None
        if worker is not None:
            metrics.TASK_QUEUE_POLLERS.labels(resource.spec.workflow.task_queue).set(worker)
    except Exception as exc:
        fail(
            exc, body=body, retry=retry, settings=operator.settings, report=report, what="Schedule"
        )
    write_status(
        body,
        patch,
        Want(
            "Synced",
            "True",
            "Synced",
            f"Temporal schedule {result.schedule_id} matches the spec ({result.outcome})",
        ),
        resource=resource,
        result=result,
        worker_pollers=worker,
    )


async def handle_requests(
    body: kopf.Body, patch: kopf.Patch, client: Client, resource: v1alpha1.Schedule
) -> None:
    """Act on a new trigger or backfill token once, and echo it in status."""
    annotations = body["metadata"].get("annotations") or {}
    status = body.get("status") or {}
    token = annotations.get(TRIGGER_ANNOTATION)
    if token and token != status.get("lastHandledTrigger"):
        await trigger(client, resource, token)
        patch.status["lastHandledTrigger"] = token
        kopf.info(body, reason="Triggered", message=f"started a run for token {token}")
    text = annotations.get(BACKFILL_ANNOTATION)
    if text:
        try:
            request = parse_backfill(text)
        except SpecError as exc:
            kopf.warn(body, reason="InvalidBackfill", message=str(exc))
            return
        if request.token != status.get("lastHandledBackfill"):
            await backfill(client, resource, request)
            patch.status["lastHandledBackfill"] = request.token
            kopf.info(
                body,
                reason="Backfilled",
                message=f"backfill {request.token}: {request.start_at} to {request.end_at}",
            )


def _remaining_changed(diff: Any) -> bool:
    return any(tuple(change[1][:2]) == ("spec", "remainingActions") for change in diff or ())


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Add the Schedule handlers to ``registry``."""
    group, version = v1alpha1.GROUP, v1alpha1.VERSION

    @kopf.on.resume(group, version, PLURAL, id="sync", registry=registry)
    @kopf.on.create(group, version, PLURAL, id="sync", registry=registry)
    @kopf.on.update(group, version, PLURAL, id="sync", field="spec", registry=registry)
    async def sync_schedule(
        *,
        body: kopf.Body,
        patch: kopf.Patch,
        memo: kopf.Memo,
        retry: int,
        reason: str,
        diff: kopf.Diff,
        **_: Any,
    ) -> None:
        """Create or update the Temporal schedule to match the resource."""
        await reconcile_now(
            "schedule",
            memo,
            lambda: reconcile(
                body,
                patch,
                memo,
                retry,
                drift_check=reason == "resume",
                remaining_from_spec=reason == "create" or _remaining_changed(diff),
            ),
        )

    @kopf.on.field(
        group, version, PLURAL, id="requests", field="metadata.annotations", registry=registry
    )
    async def schedule_requests(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any
    ) -> None:
        """A new trigger/backfill token: act now rather than at the next timer tick."""
        annotations = body["metadata"].get("annotations") or {}
        if TRIGGER_ANNOTATION not in annotations and BACKFILL_ANNOTATION not in annotations:
            return
        await reconcile_now(
            "schedule", memo, lambda: reconcile(body, patch, memo, retry, drift_check=True)
        )

    @kopf.timer(
        group,
        version,
        PLURAL,
        id="resync",
        interval=settings.resync_seconds,
        initial_delay=settings.first_resync_seconds,
        registry=registry,
    )
    async def resync_schedule(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int = 0, **kwargs: Any
    ) -> None:
        """Drift check, worker availability and a status refresh, every resync interval."""
        await resync(
            "schedule",
            body,
            memo,
            kwargs["stopped"],  # kopf gives timers the flag it sets when they must exit
            lambda: reconcile(body, patch, memo, retry, drift_check=True),
        )

    @kopf.on.delete(group, version, PLURAL, id="cleanup", registry=registry)
    async def delete_schedule_handler(
        body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any
    ) -> None:
        """Delete (or, with ``deletionPolicy: Orphan``, keep) the Temporal schedule."""
        try:
            resource = parse_schedule(body)
        except SpecError:
            return  # nothing valid was ever created from it
        if resource.spec.deletion_policy == "Orphan":
            log.info("%s: deletionPolicy Orphan, Temporal schedule kept", body["metadata"]["name"])
            return
        operator = operator_of(memo)
        async with metrics.reconciling("schedule", operator.workers) as outcome:
            try:
                clients = await operator.clients()
                client = clients.get(temporal_namespace(resource, clients.default.namespace))
                message = await delete_schedule(client, resource)
            except Exception as exc:
                outcome.result = "requeue_after"
                failure = classify(
                    exc, attempt=retry, max_backoff=operator.settings.max_backoff_seconds
                )
                if failure.unexpected:
                    log.exception("Schedule delete failed")
                raise kopf.TemporaryError(
                    f"cannot delete the Temporal schedule yet: {failure.message}",
                    delay=failure.retry_after or operator.settings.max_backoff_seconds,
                ) from None
            log.info("%s: %s", body["metadata"]["name"], message)
