"""kopf handlers: thin I/O around :mod:`muster_operator.reconcile` and :mod:`.sync`.

One idempotent ``sync`` handler serves create, update and resume; a timer checks drift and
refreshes status; an annotation handler acts on trigger/backfill tokens; a delete handler
(behind the ``muster.io/finalizer`` finalizer) removes or orphans the Temporal schedule.
Operator-wide clients live in kopf's memo: created at startup, closed at cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server
from temporalio.client import Client
from temporalio.service import RPCError

from muster_operator import metrics, models
from muster_operator.policies import (
    parse_policy,
    pending_requests,
    policy_document,
    policy_key,
    reminder_schedule,
)
from muster_operator.reconcile import (
    BACKFILL_ANNOTATION,
    TRIGGER_ANNOTATION,
    SpecError,
    Want,
    merge_conditions,
    observed_status,
    parse_backfill,
    parse_schedule,
    schedule_conditions,
    temporal_namespace,
)
from muster_operator.settings import OperatorSettings
from muster_operator.sync import (
    Clients,
    ForeignSchedule,
    PollerCache,
    Synced,
    TemporalUnavailable,
    apply_schedule,
    backfill,
    check_and_correct,
    delete_schedule,
    trigger,
    unavailable,
)
from muster_operator.workers import Workers
from muster_runtime.client import connect
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings, load_settings

log = logging.getLogger(__name__)

GROUP, VERSION = models.GROUP, models.VERSION
SCHEDULES, POLICIES = "schedules", "approvalpolicies"
FINALIZER = "muster.io/finalizer"

SETTINGS = load_settings(OperatorSettings)


class Operator:
    """What every handler needs: settings, Temporal clients, the Kubernetes core API."""

    def __init__(self, settings: OperatorSettings, temporal: TemporalSettings) -> None:
        self.settings = settings
        self.temporal_settings = temporal
        self._clients: Clients | None = None
        self._lock = asyncio.Lock()
        self.core: k8s.CoreV1Api | None = None
        # controller-runtime's MaxConcurrentReconciles: a burst of resources queues here
        # instead of all talking to Temporal at once; changes go before resyncs.
        self.workers = Workers(settings.max_concurrent_reconciles)
        self.pollers = PollerCache(settings.pollers_cache_seconds)

    async def clients(self) -> Clients:
        """Temporal clients, connecting on first use (Temporal may be down at start)."""
        async with self._lock:
            if self._clients is None:
                try:
                    client: Client = await connect(self.temporal_settings, tracing=False)
                    await ensure_search_attributes(client, client.namespace)
                except Exception as exc:
                    metrics.TEMPORAL_UP.set(0)
                    raise TemporalUnavailable(
                        f"cannot reach Temporal at {self.temporal_settings.address}: {exc}"
                    ) from exc
                self._clients = Clients(client)
            return self._clients


def _operator(memo: Any) -> Operator:
    found = memo.get("operator")
    assert isinstance(found, Operator), "the startup handler did not run"
    return found


def _now() -> datetime:
    return datetime.now(UTC)


def _backoff(retry: int) -> float:
    return float(min(SETTINGS.max_backoff_seconds, 2 ** min(retry, 10)))


# -- startup and cleanup -------------------------------------------------------------------


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """kopf settings chosen on purpose, metrics endpoint, clients."""
    settings.persistence.finalizer = FINALIZER
    # kopf's bookkeeping goes into status.kopf (its own subtree in the CRD schema), so
    # finishing a reconcile is one write to the status subresource; in annotations it is
    # a second PATCH of the object per reconcile, which doubles the API server's load.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        field="status.kopf.progress", touch_field="status.kopf.dummy"
    )
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration"
    )
    settings.watching.server_timeout = SETTINGS.watch_server_timeout
    settings.watching.client_timeout = SETTINGS.watch_client_timeout
    settings.watching.connect_timeout = 30
    # Events for what people should see (drift, foreign schedules), not for every handler.
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60
    # A resource deleted while its resync runs keeps its finalizer until kopf sees the timer
    # exit; kopf looks again only every 60 s by default.
    settings.background.cancellation_polling = 1
    # No dynamic scanning of CRDs and namespaces: the operator serves the resources that
    # exist at start-up (the chart installs the CRDs first) in the namespaces it is given,
    # so its RBAC needs no cluster-wide list/watch of CRDs and namespaces. Namespace globs
    # ("team-*") need that scanning, and then list/watch on namespaces.
    settings.scanning.disabled = not any(
        char in pattern for pattern in SETTINGS.namespaces for char in "*?["
    )
    start_http_server(SETTINGS.http.port, addr=SETTINGS.http.host)
    operator = Operator(SETTINGS, load_settings(TemporalSettings))
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        await asyncio.to_thread(k8s_config.load_kube_config)
    operator.core = k8s.CoreV1Api()
    memo["operator"] = operator
    try:
        await operator.clients()
        metrics.TEMPORAL_UP.set(1)
    except TemporalUnavailable as exc:
        # The operator stays up; handlers report the condition and retry with backoff.
        log.warning("%s; resources will say so until it is reachable", exc)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Close the Kubernetes client (the Temporal connection closes with the process)."""
    operator = memo.get("operator")
    if isinstance(operator, Operator) and operator.core is not None:
        operator.core.api_client.close()


# -- Schedule ------------------------------------------------------------------------------


def _schedule_status(
    body: Mapping[str, Any],
    patch: kopf.Patch,
    synced: Want,
    *,
    resource: models.Schedule | None = None,
    result: Synced | None = None,
    worker_pollers: int | None = None,
) -> None:
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    suspend = bool(resource.spec.suspend) if resource else False
    queue = resource.spec.workflow.task_queue if resource else ""
    wanted: dict[str, Any] = {
        "conditions": merge_conditions(
            status.get("conditions") or [],
            schedule_conditions(synced, suspend, worker_pollers, queue),
            _now(),
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
            wanted["lastSyncTime"] = _now().isoformat()
        if result.description is not None:  # None right after a create: the resync fills it
            wanted.update(observed_status(result.description))
    # Only what changed: a resync that finds everything as it was writes nothing, so many
    # quiet Schedules cost the API server no writes.
    for key, value in wanted.items():
        if status.get(key) != value:
            patch.status[key] = value


async def _reconcile_schedule(
    body: kopf.Body,
    patch: kopf.Patch,
    memo: Any,
    retry: int,
    *,
    drift_check: bool,
    remaining_from_spec: bool = True,
) -> None:
    operator = _operator(memo)
    try:
        resource = parse_schedule(body)
    except SpecError as exc:
        _schedule_status(body, patch, Want("Synced", "False", "InvalidSpec", str(exc)))
        raise kopf.PermanentError(f"invalid Schedule: {exc}") from None
    try:
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
        await _handle_requests(body, patch, client, resource)
        try:
            worker = await operator.pollers.count(client, resource.spec.workflow.task_queue)
        except RPCError:
            worker = None
        if worker is not None:
            metrics.TASK_QUEUE_POLLERS.labels(resource.spec.workflow.task_queue).set(worker)
    except SpecError as exc:
        _schedule_status(
            body, patch, Want("Synced", "False", "InvalidSpec", str(exc)), resource=resource
        )
        raise kopf.PermanentError(f"invalid Schedule: {exc}") from None
    except ForeignSchedule as exc:
        _schedule_status(
            body, patch, Want("Synced", "False", "ForeignSchedule", str(exc)), resource=resource
        )
        kopf.warn(body, reason="ForeignSchedule", message=str(exc))
        raise kopf.PermanentError(str(exc)) from None
    except (TemporalUnavailable, RPCError, RuntimeError, OSError) as exc:
        if not unavailable(exc) and not isinstance(exc, TemporalUnavailable):
            _schedule_status(
                body,
                patch,
                Want("Synced", "False", "TemporalRejected", str(exc)),
                resource=resource,
            )
            raise kopf.TemporaryError(f"Temporal refused the schedule: {exc}", delay=60) from None
        metrics.TEMPORAL_UP.set(0)
        _schedule_status(
            body,
            patch,
            Want("Synced", "False", "TemporalUnavailable", f"cannot reach Temporal: {exc}"),
            resource=resource,
        )
        raise kopf.TemporaryError(f"Temporal unavailable: {exc}", delay=_backoff(retry)) from None
    _schedule_status(
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


async def _handle_requests(
    body: kopf.Body, patch: kopf.Patch, client: Client, resource: models.Schedule
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


async def _reconcile_now(
    controller: str, memo: kopf.Memo, reconcile: Callable[[], Awaitable[None]]
) -> None:
    """One reconcile, counted the way controller-runtime counts it; a TemporaryError is a
    requeue, re-raised so kopf retries it."""
    async with metrics.reconciling(controller, _operator(memo).workers) as outcome:
        try:
            await reconcile()
        except kopf.TemporaryError:
            outcome.result = "requeue_after"
            raise


async def _synced(body: kopf.Body, stopped: kopf.DaemonStopped, within: float) -> bool:
    """Whether status says the current generation is synced, waiting up to ``within``
    seconds for it (kopf keeps a timer's ``body`` current as watch events arrive); False at
    once when kopf stops the timer (the resource is being deleted)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not stopped:
        status = body.get("status") or {}
        if status.get("observedGeneration") == body["metadata"].get("generation"):
            return True
        left = deadline - loop.time()
        if left <= 0:
            break
        await stopped.wait(min(0.5, left))
    return False


def _resync_timer(plural: str) -> kopf.on.TimerDecorator:
    """The periodic resync of a kind: first soon after the operator sees a resource, then
    every interval."""
    return kopf.timer(
        GROUP,
        VERSION,
        plural,
        id="resync",
        interval=SETTINGS.resync_seconds,
        initial_delay=SETTINGS.first_resync_seconds,
    )


async def _resync(
    controller: str,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    reconcile: Callable[[], Awaitable[None]],
) -> None:
    """A timer tick's reconcile. Waits (up to one interval) while the sync handler has not
    finished the current generation (it writes everything; in a burst the first tick comes
    before it); errors are already in status and wait for the next tick (a person may fix
    the resource meanwhile)."""
    if not await _synced(body, stopped, SETTINGS.resync_seconds):
        return
    workers = _operator(memo).workers
    async with metrics.reconciling(controller, workers, urgent=False) as outcome:
        try:
            await reconcile()
        except kopf.PermanentError:
            outcome.result = "error"
        except kopf.TemporaryError:
            outcome.result = "requeue_after"


@kopf.on.resume(GROUP, VERSION, SCHEDULES, id="sync")
@kopf.on.create(GROUP, VERSION, SCHEDULES, id="sync")
@kopf.on.update(GROUP, VERSION, SCHEDULES, id="sync", field="spec")
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
    await _reconcile_now(
        "schedule",
        memo,
        lambda: _reconcile_schedule(
            body,
            patch,
            memo,
            retry,
            drift_check=reason == "resume",
            remaining_from_spec=reason == "create" or _remaining_changed(diff),
        ),
    )


@kopf.on.field(GROUP, VERSION, SCHEDULES, id="requests", field="metadata.annotations")
async def schedule_requests(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    """A new trigger/backfill token: act now rather than at the next timer tick."""
    annotations = body["metadata"].get("annotations") or {}
    if TRIGGER_ANNOTATION not in annotations and BACKFILL_ANNOTATION not in annotations:
        return
    await _reconcile_now(
        "schedule", memo, lambda: _reconcile_schedule(body, patch, memo, retry, drift_check=True)
    )


@_resync_timer(SCHEDULES)
async def resync_schedule(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int = 0, **kwargs: Any
) -> None:
    """Drift check, worker availability and a status refresh, every resync interval."""
    await _resync(
        "schedule",
        body,
        memo,
        kwargs["stopped"],  # kopf gives timers the flag it sets when they must exit
        lambda: _reconcile_schedule(body, patch, memo, retry, drift_check=True),
    )


@kopf.on.delete(GROUP, VERSION, SCHEDULES, id="cleanup")
async def delete_schedule_handler(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Delete (or, with ``deletionPolicy: Orphan``, keep) the Temporal schedule."""
    try:
        resource = parse_schedule(body)
    except SpecError:
        return  # nothing valid was ever created from it
    if resource.spec.deletion_policy == "Orphan":
        log.info("%s: deletionPolicy Orphan, Temporal schedule kept", body["metadata"]["name"])
        return
    async with metrics.reconciling("schedule", _operator(memo).workers) as outcome:
        try:
            clients = await _operator(memo).clients()
            client = clients.get(temporal_namespace(resource, clients.default.namespace))
            message = await delete_schedule(client, resource)
        except (TemporalUnavailable, RPCError, RuntimeError, OSError) as exc:
            outcome.result = "requeue_after"
            raise kopf.TemporaryError(
                f"cannot delete the Temporal schedule yet: {exc}", delay=_backoff(retry)
            ) from None
        log.info("%s: %s", body["metadata"]["name"], message)


# -- ApprovalPolicy ------------------------------------------------------------------------


async def _publish(operator: Operator, key: str, text: str | None) -> None:
    """Write (or with None remove) one policy in the published ConfigMap."""
    core = operator.core
    assert core is not None
    name = operator.settings.policy_configmap
    namespace = operator.settings.policy_configmap_namespace

    def write() -> None:
        try:
            core.patch_namespaced_config_map(name, namespace, {"data": {key: text}})
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        if text is None:
            return
        try:
            core.create_namespaced_config_map(
                namespace,
                k8s.V1ConfigMap(
                    metadata=k8s.V1ObjectMeta(
                        name=name,
                        labels={
                            "app.kubernetes.io/part-of": "muster",
                            "app.kubernetes.io/managed-by": "muster-operator",
                        },
                    ),
                    data={key: text},
                ),
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Another policy created it first: add ours to it.
            core.patch_namespaced_config_map(name, namespace, {"data": {key: text}})

    await asyncio.to_thread(write)


def _policy_status(
    body: Mapping[str, Any], patch: kopf.Patch, synced: Want, published: Want | None = None
) -> None:
    status = body.get("status") or {}
    wanted = [
        Want("Ready", synced.status, synced.reason, synced.message),
        synced,
    ]
    if published is not None:
        wanted.append(published)
    patch.status["conditions"] = merge_conditions(
        status.get("conditions") or [], wanted, _now(), body["metadata"].get("generation")
    )


async def _reconcile_policy(
    body: kopf.Body, patch: kopf.Patch, memo: Any, retry: int, *, drift_check: bool
) -> None:
    operator = _operator(memo)
    try:
        policy = parse_policy(body)
    except SpecError as exc:
        _policy_status(body, patch, Want("Synced", "False", "InvalidSpec", str(exc)))
        raise kopf.PermanentError(f"invalid ApprovalPolicy: {exc}") from None
    document = policy_document(policy)
    try:
        await _publish(operator, policy_key(policy), yaml.safe_dump(document, sort_keys=False))
    except ApiException as exc:
        _policy_status(
            body,
            patch,
            Want("Synced", "False", "PublishFailed", f"cannot write the ConfigMap: {exc.reason}"),
        )
        raise kopf.TemporaryError(
            f"publishing failed: {exc.reason}", delay=_backoff(retry)
        ) from None
    published = Want(
        "Published",
        "True",
        "Published",
        f"snapshot in ConfigMap {operator.settings.policy_configmap_namespace}/"
        f"{operator.settings.policy_configmap}",
    )
    patch.status["publishedSha256"] = document["metadata"]["annotations"]["muster.io/sha256"]
    reminders = reminder_schedule(policy, operator.settings.reminder_task_queue)
    try:
        client = (await operator.clients()).default
        if reminders is None:
            await delete_schedule(client, _reminder_placeholder(policy))
            patch.status["reminderScheduleId"] = None
        elif drift_check:
            result = await check_and_correct(
                client, reminders, (body.get("status") or {}).get("reminderFingerprint")
            )
            if result.drift is not None and result.drift.changed:
                metrics.DRIFT_CORRECTIONS.labels("approvalpolicy").inc()
                kopf.warn(body, reason="DriftCorrected", message=result.drift.reason)
            patch.status["reminderScheduleId"] = result.schedule_id
            patch.status["reminderFingerprint"] = result.fingerprint
        else:
            result = await apply_schedule(client, reminders)
            patch.status["reminderScheduleId"] = result.schedule_id
            patch.status["reminderFingerprint"] = result.fingerprint
        pending = await pending_requests(client, policy)
        patch.status["pendingRequests"] = pending
        metrics.APPROVALS_PENDING.labels(policy.metadata.name).set(pending)
        metrics.TEMPORAL_UP.set(1)
    except ForeignSchedule as exc:
        _policy_status(body, patch, Want("Synced", "False", "ForeignSchedule", str(exc)), published)
        raise kopf.PermanentError(str(exc)) from None
    except (TemporalUnavailable, RPCError, RuntimeError, OSError) as exc:
        metrics.TEMPORAL_UP.set(0)
        _policy_status(
            body,
            patch,
            Want("Synced", "False", "TemporalUnavailable", f"cannot reach Temporal: {exc}"),
            published,
        )
        raise kopf.TemporaryError(f"Temporal unavailable: {exc}", delay=_backoff(retry)) from None
    patch.status["observedGeneration"] = body["metadata"].get("generation")
    patch.status["lastSyncTime"] = _now().isoformat()
    _policy_status(
        body,
        patch,
        Want("Synced", "True", "Synced", "policy published and reminders scheduled"),
        published,
    )


def _reminder_placeholder(policy: models.ApprovalPolicy) -> models.Schedule:
    found = reminder_schedule(policy, SETTINGS.reminder_task_queue, force=True)
    assert found is not None
    return found


@kopf.on.resume(GROUP, VERSION, POLICIES, id="sync")
@kopf.on.create(GROUP, VERSION, POLICIES, id="sync")
@kopf.on.update(GROUP, VERSION, POLICIES, id="sync", field="spec")
async def sync_policy(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, reason: str, **_: Any
) -> None:
    """Publish the policy snapshot and keep its reminder schedule."""
    await _reconcile_now(
        "approvalpolicy",
        memo,
        lambda: _reconcile_policy(body, patch, memo, retry, drift_check=reason == "resume"),
    )


@_resync_timer(POLICIES)
async def resync_policy(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int = 0, **kwargs: Any
) -> None:
    """Pending counts, reminder-schedule drift and the published snapshot, periodically."""
    await _resync(
        "approvalpolicy",
        body,
        memo,
        kwargs["stopped"],  # kopf gives timers the flag it sets when they must exit
        lambda: _reconcile_policy(body, patch, memo, retry, drift_check=True),
    )


@kopf.on.delete(GROUP, VERSION, POLICIES, id="cleanup")
async def delete_policy(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Unpublish the policy and delete its reminder schedule.

    Requests that already pinned the policy keep their snapshot; new ones cannot use it.
    """
    operator = _operator(memo)
    try:
        policy = parse_policy(body)
    except SpecError:
        return
    try:
        await _publish(operator, policy_key(policy), None)
        client = (await operator.clients()).default
        await delete_schedule(client, _reminder_placeholder(policy))
    except (ApiException, TemporalUnavailable, RPCError, RuntimeError, OSError) as exc:
        raise kopf.TemporaryError(f"cannot clean up yet: {exc}", delay=_backoff(retry)) from None
    with contextlib.suppress(KeyError):
        metrics.APPROVALS_PENDING.remove(policy.metadata.name)
