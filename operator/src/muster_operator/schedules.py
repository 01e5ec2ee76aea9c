"""kopf handlers of ``Schedule``: thin I/O around :mod:`muster_operator.reconcile` (what
the schedule should be, what status says) and :mod:`muster_operator.sync` (Temporal).

One idempotent ``sync`` handler serves create, update and resume; a timer checks drift and
refreshes status; an annotation handler acts on trigger/backfill tokens; a delete handler
(behind the finalizer) removes or orphans the Temporal schedules status records. Status
records every schedule the operator created for a resource (``ownedSchedules``): a changed
id or namespace retires the old one, an invalid spec pauses it, a delete removes them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import kopf
from temporalio.client import Client
from temporalio.service import RPCError

from muster_api import v1alpha1
from muster_operator import metrics
from muster_operator.admission import check_in_temporal
from muster_operator.context import (
    Operator,
    check_size,
    event,
    fail,
    now,
    object_lock,
    operator_of,
    reconcile_now,
    release_finalizer,
    resync,
)
from muster_operator.diffbase import value_digest
from muster_operator.reconcile import (
    BACKFILL_ANNOTATION,
    TRIGGER_ANNOTATION,
    Failure,
    Owned,
    SpecError,
    Want,
    classify,
    deletion_policy,
    invalid_spec_note,
    merge_conditions,
    observed_status,
    owner_of,
    parse_backfill,
    parse_schedule,
    recorded_schedules,
    schedule_conditions,
    schedule_id,
    temporal_namespace,
)
from muster_operator.settings import OperatorSettings
from muster_operator.sync import (
    Clients,
    Synced,
    apply_schedule,
    backfill,
    check_and_correct,
    delete_owned,
    pause_owned,
    trigger,
)

log = logging.getLogger(__name__)

PLURAL = "schedules"
MAX_TOKEN = 200
"""Longest trigger token acted on (status echoes it; the backfill request's is as long)."""


def write_status(
    body: Mapping[str, Any],
    patch: kopf.Patch,
    synced: Want,
    *,
    resource: v1alpha1.Schedule | None = None,
    result: Synced | None = None,
    worker_pollers: int | None = None,
    owned: list[Owned] | None = None,
    generation: int | None = None,
) -> None:
    """Patch the status keys that changed: conditions, and what Temporal holds.

    ``summary`` describes the spec Temporal holds, so it is written only from a sync; a
    newer spec that is not in Temporal yet shows in ``pendingSummary`` (and the Ready
    condition says why it is not there).
    """
    status = body.get("status") or {}
    if generation is None:
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
    if resource is not None and result is not None:
        wanted["summary"] = resource.spec.when()
        wanted["pendingSummary"] = None
    elif resource is not None:
        pending = resource.spec.when()
        wanted["pendingSummary"] = None if pending == status.get("summary") else pending
    if owned is not None:
        wanted["ownedSchedules"] = [entry.as_status() for entry in owned]
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


def _owner(body: Mapping[str, Any]) -> str:
    metadata = body["metadata"]
    return owner_of(metadata.get("namespace"), metadata.get("name"))


async def retire_previous(
    body: kopf.Body, clients: Clients, owned: list[Owned], target: Owned
) -> list[Owned]:
    """Delete (or, with ``deletionPolicy: Orphan``, leave) the schedules made from an
    earlier spec that the current one no longer names (a changed scheduleId or namespace);
    the schedules status records afterwards."""
    policy = deletion_policy(body)
    left = [target]
    for entry in owned:
        if entry == target:
            continue
        if policy == "Orphan":
            message = f"left Temporal schedule {entry} running (deletionPolicy Orphan)"
            event(body, "Normal", "ScheduleOrphaned", f"{message}; the spec now names {target}")
        else:
            message = await delete_owned(
                clients.get(entry.namespace), entry.schedule_id, _owner(body)
            )
            event(body, "Normal", "ScheduleDeleted", f"{message}; the spec now names {target}")
        log.info("Schedule %s: %s", _owner(body), message)
    return left


async def pause_previous(
    body: kopf.Body, clients: Clients, owned: list[Owned], problem: str
) -> str:
    """Pause the schedules made from the last valid spec while the spec is invalid (they
    would otherwise keep running what the spec no longer says); what status should add."""
    note = invalid_spec_note(_owner(body), problem)
    paused = []
    for entry in owned:
        outcome = await pause_owned(
            clients.get(entry.namespace), entry.schedule_id, _owner(body), note
        )
        if outcome in ("paused", "already paused"):
            paused.append(str(entry))
        if outcome == "paused":
            event(
                body,
                "Warning",
                "SchedulePaused",
                f"paused Temporal schedule {entry} until the spec is valid: {problem}",
            )
    if not paused:
        return ""
    return (
        f"; Temporal schedule {', '.join(paused)} (from the last valid spec) is paused until "
        "the spec is valid again"
    )


async def reconcile(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    retry: int,
    *,
    drift_check: bool,
    remaining_from_spec: bool = True,
) -> None:
    """Make Temporal's schedule match the resource, then say so in status.

    Every way this can fail ends in a condition (see :func:`muster_operator.context.fail`):
    an invalid spec pauses the schedules made from the last valid one.
    """
    operator = operator_of(memo)
    check_size(body, memo, operator.settings)
    resource: v1alpha1.Schedule | None = None
    owned = recorded_schedules(body.get("status") or {})
    # A timer's body follows the object while it runs: what this reconcile did is about the
    # generation it started with, and a newer one has its own sync handler waiting.
    generation = body["metadata"].get("generation")

    def current() -> bool:
        return not drift_check or body["metadata"].get("generation") == generation

    def report(want: Want) -> None:
        if current():
            write_status(body, patch, want, resource=resource, owned=owned, generation=generation)

    try:
        resource = parse_schedule(body)
        clients = await operator.clients()
        client = clients.get(temporal_namespace(resource, clients.default.namespace))
        status = body.get("status") or {}
        if drift_check:
            result = await check_and_correct(client, resource, status.get("syncedFingerprint"))
            if result.drift is not None and result.drift.changed:
                metrics.DRIFT_CORRECTIONS.labels("schedule").inc()
                event(
                    body,
                    "Warning",
                    "DriftCorrected",
                    f"{result.drift.reason}; put back as spec says",
                )
        else:
            # A spec the webhook did not see (no webhook, or Temporal away at apply time)
            # gets the webhook's own words for what Temporal would refuse.
            await check_in_temporal(client, resource, client.namespace, operator.facts)
            result = await apply_schedule(client, resource, remaining_from_spec=remaining_from_spec)
        target = Owned(result.schedule_id, result.namespace)
        if target not in owned:
            owned = [*owned, target]  # recorded even if retiring the others fails below
        if owned != [target]:
            owned = await retire_previous(body, clients, owned, target)
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
        if not current():
            return
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
            owned=owned,
            generation=generation,
        )
    except Exception as exc:
        failure = classify(exc, attempt=retry, max_backoff=operator.settings.max_backoff_seconds)
        if isinstance(exc, SpecError) and owned:
            failure = await _pause_for(body, operator, owned, failure, retry)
        fail(
            exc,
            body=body,
            retry=retry,
            settings=operator.settings,
            report=report,
            what="Schedule",
            failure=failure,
        )


async def _pause_for(
    body: kopf.Body, operator: Operator, owned: list[Owned], failure: Failure, retry: int
) -> Failure:
    """The InvalidSpec failure, saying what became of the schedules of the last valid spec
    (retried, with why, when they could not be paused)."""
    try:
        clients = await operator.clients()
        said = await pause_previous(body, clients, owned, failure.message)
    except Exception as exc:
        problem = classify(exc, attempt=retry, max_backoff=operator.settings.max_backoff_seconds)
        if problem.unexpected:
            log.exception("Schedule %s: pausing failed", _owner(body))
        return replace(
            failure,
            message=f"{failure.message}; the Temporal schedule(s) of the last valid spec "
            f"({', '.join(map(str, owned))}) still run and could not be paused yet: "
            f"{problem.message}",
            retry_after=problem.retry_after or operator.settings.max_backoff_seconds,
            outage=problem.outage,
        )
    return replace(failure, message=failure.message + said)


async def handle_requests(
    body: kopf.Body, patch: kopf.Patch, client: Client, resource: v1alpha1.Schedule
) -> None:
    """Act on a new trigger or backfill token once, echo it in status, and say so with an
    Event (a malformed request gets one Warning, not one per resync)."""
    annotations = body["metadata"].get("annotations") or {}
    status = body.get("status") or {}

    def reject(reason: str, text: str, message: str) -> None:
        seen = value_digest(text)
        if status.get("rejectedRequest") != seen:
            patch.status["rejectedRequest"] = seen
            event(body, "Warning", reason, message)

    token = annotations.get(TRIGGER_ANNOTATION)
    if token and len(token) > MAX_TOKEN:
        reject(
            "InvalidTrigger",
            token,
            f"{TRIGGER_ANNOTATION} is {len(token)} characters long; a token has at most "
            f"{MAX_TOKEN} (status echoes it)",
        )
    elif token and token != status.get("lastHandledTrigger"):
        await trigger(client, resource, token)
        patch.status["lastHandledTrigger"] = token
        event(body, "Normal", "Triggered", f"started a run for token {token}")
    text = annotations.get(BACKFILL_ANNOTATION)
    if text:
        try:
            request = parse_backfill(text)
        except SpecError as exc:
            reject("InvalidBackfill", text, str(exc))
            return
        if request.token != status.get("lastHandledBackfill"):
            await backfill(client, resource, request)
            patch.status["lastHandledBackfill"] = request.token
            event(
                body,
                "Normal",
                "Backfilled",
                f"backfill {request.token}: {request.start_at} to {request.end_at}",
            )


def _remaining_changed(diff: Any) -> bool:
    """Whether an update changed ``spec.remainingActions`` (then Temporal's countdown starts
    again from it). The handler watches ``spec``, so kopf gives paths relative to it."""
    return any(tuple(change[1][:1]) == ("remainingActions",) for change in diff or ())


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
            patch,
            memo,
            stopped=kwargs["stopped"],  # kopf gives timers the flag it sets when they must exit
            reconcile=lambda: reconcile(body, patch, memo, retry, drift_check=True),
        )

    @kopf.on.delete(group, version, PLURAL, id="cleanup", registry=registry)
    async def delete_schedule_handler(
        body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any
    ) -> None:
        """Delete (or, with ``deletionPolicy: Orphan``, keep) the Temporal schedules."""
        await cleanup(body, patch, memo, retry)


async def cleanup(body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int) -> None:
    """Behind the finalizer: delete every schedule status records, and the one the spec
    names, if this resource owns them (``deletionPolicy: Orphan`` keeps them).

    Needs no valid spec: the records and ``deletionPolicy`` are read as they are. The
    finalizer goes once Temporal says each schedule is deleted, gone, or another's; it
    stays (with a condition saying why, retried with backoff) only while Temporal cannot be
    asked or refuses the delete.
    """
    operator = operator_of(memo)
    owner = _owner(body)
    owned = recorded_schedules(body.get("status") or {})
    if deletion_policy(body) == "Orphan":
        log.info("Schedule %s: deletionPolicy Orphan, Temporal schedules kept: %s", owner, owned)
        await release_finalizer(operator, body, PLURAL)
        return
    try:
        resource: v1alpha1.Schedule | None = parse_schedule(body)
    except SpecError:
        resource = None  # what it names was never created; the records say what was
    if resource is None and not owned:
        await release_finalizer(operator, body, PLURAL)
        return
    async with object_lock(memo):
        await _delete_all(body, patch, operator, retry, resource=resource, owned=owned)
    await release_finalizer(operator, body, PLURAL)


async def _delete_all(
    body: kopf.Body,
    patch: kopf.Patch,
    operator: Operator,
    retry: int,
    *,
    resource: v1alpha1.Schedule | None,
    owned: list[Owned],
) -> None:
    owner = _owner(body)
    async with metrics.reconciling("schedule", operator.workers) as outcome:
        try:
            clients = await operator.clients()
            for entry in owned:
                message = await delete_owned(clients.get(entry.namespace), entry.schedule_id, owner)
                log.info("Schedule %s: %s", owner, message)
            if resource is not None:
                client = clients.get(temporal_namespace(resource, clients.default.namespace))
                named = Owned(schedule_id(resource), client.namespace)
                if named not in owned:
                    await _delete_unrecorded(client, named, owner)
        except Exception as exc:
            outcome.result = "requeue_after"
            failure = classify(
                exc, attempt=retry, max_backoff=operator.settings.max_backoff_seconds
            )
            if failure.unexpected:
                log.exception("Schedule %s: delete failed", owner)
            message = (
                f"cannot delete the Temporal schedule yet, so the finalizer stays: "
                f"{failure.message}"
            )
            write_status(body, patch, Want("Synced", "False", failure.reason, message))
            raise kopf.TemporaryError(
                message, delay=failure.retry_after or operator.settings.max_backoff_seconds
            ) from None


async def _delete_unrecorded(client: Client, named: Owned, owner: str) -> None:
    """Delete the schedule the spec names though status does not record it (created just
    before a crash, or by an operator that did not record). Only an unreachable Temporal
    keeps the finalizer: any other refusal means it cannot have been created."""
    try:
        message = await delete_owned(client, named.schedule_id, owner)
    except Exception as exc:
        if classify(exc).outage:
            raise
        message = f"Temporal schedule {named} could not have been created: {exc}"
    log.info("Schedule %s: %s", owner, message)
