"""What every handler shares: the operator's settings and clients, and one way to turn a
failed reconcile into a status condition, an Event, a log line and kopf's retry.

The clients live in kopf's memo, created by the startup handler and closed at cleanup.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import httpx
import kopf
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client

from muster_api import v1alpha1
from muster_operator import diffbase, metrics
from muster_operator.admission import TemporalFacts
from muster_operator.reconcile import Failure, TemporalUnavailable, Want, bounded, classify
from muster_operator.settings import OperatorSettings
from muster_operator.sync import Clients, PollerCache
from muster_operator.workers import Workers
from muster_runtime.client import connect
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings

log = logging.getLogger(__name__)

FINALIZER = "muster.io/finalizer"


class Operator:
    """What every handler needs: settings, Temporal clients, the Kubernetes core API."""

    def __init__(self, settings: OperatorSettings, temporal: TemporalSettings) -> None:
        self.settings = settings
        self.temporal_settings = temporal
        self._clients: Clients | None = None
        self._lock = asyncio.Lock()
        self.core: k8s.CoreV1Api | None = None
        self.apps: k8s.AppsV1Api | None = None
        self.batch: k8s.BatchV1Api | None = None
        # Prometheus, for rollouts' automatic rollback (None: no URL configured).
        self.http: httpx.AsyncClient | None = None
        # controller-runtime's MaxConcurrentReconciles: a burst of resources queues here
        # instead of all talking to Temporal at once; changes go before resyncs.
        self.workers = Workers(settings.max_concurrent_reconciles)
        self.pollers = PollerCache(settings.pollers_cache_seconds)
        # What Temporal says about namespaces and search attributes, shared by the webhook
        # and the reconciler (one answer per namespace per cache period).
        self.facts = TemporalFacts(
            ttl=settings.webhook.temporal_cache_seconds,
            timeout=settings.webhook.temporal_timeout_seconds,
        )

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


def operator_of(memo: Any) -> Operator:
    """The Operator the startup handler put in kopf's memo."""
    found = memo.get("operator")
    assert isinstance(found, Operator), "the startup handler did not run"
    return found


def now() -> datetime:
    """The time written into conditions and status."""
    return datetime.now(UTC)


def condition(body: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    """A condition of the resource as status has it now ({} when there is none)."""
    for found in (body.get("status") or {}).get("conditions") or []:
        if isinstance(found, Mapping) and found.get("type") == kind:
            return found
    return {}


def event(body: kopf.Body, kind: str, reason: str, message: str) -> None:
    """Post an Event about the resource (``Normal`` or ``Warning``).

    Through ``kopf.event``, which only ``settings.posting.enabled`` governs: ``kopf.info``
    would drop it below ``settings.posting.level`` (WARNING), the level that also kept kopf's
    per-handler log lines from becoming Events before those were switched off altogether
    (:func:`muster_operator.handlers.configure`).
    """
    kopf.event(body, type=kind, reason=reason, message=bounded(message))


STATUS_ROOM = 16 * 1024
"""Bytes the operator's status of a resource may take (conditions, ids, next runs, kopf's
digests): bounded, so a resource that leaves this much below the API server's limit always
gets its status."""


def check_size(body: kopf.Body, memo: kopf.Memo, settings: OperatorSettings) -> None:
    """Warn, once per generation, when a resource leaves too little room below the API
    server's object size limit for its status: every status write would fail, so the
    Event is the only place left to say so (and how to fix it)."""
    generation = body["metadata"].get("generation")
    if memo.get("size_checked") == generation:
        return
    memo["size_checked"] = generation
    size = len(json.dumps(dict(body), separators=(",", ":")))
    if size + STATUS_ROOM > settings.max_object_bytes:
        event(
            body,
            "Warning",
            "ObjectTooLarge",
            f"this resource is {size} bytes and the API server stores at most "
            f"{settings.max_object_bytes} (etcd's request limit), which leaves too little "
            f"room for its status (up to {STATUS_ROOM} bytes): conditions may not appear. Keep "
            "large data out of the spec (pass the workflow a reference to it instead).",
        )


async def release_finalizer(operator: Operator, body: kopf.Body, plural: str) -> None:
    """Remove the operator's finalizer now that the cleanup is done.

    kopf would remove it too, but only after a status write; for an object at the API
    server's size limit every status write fails, and the delete would hang. Removed here
    with a JSON patch (which shrinks the object), the delete never waits on status.
    """
    finalizers = list(body["metadata"].get("finalizers") or [])
    if FINALIZER not in finalizers or operator.core is None:
        return
    index = finalizers.index(FINALIZER)
    ops = [
        {"op": "test", "path": f"/metadata/finalizers/{index}", "value": FINALIZER},
        {"op": "remove", "path": f"/metadata/finalizers/{index}"},
    ]
    api = k8s.CustomObjectsApi(operator.core.api_client)
    metadata = body["metadata"]
    try:
        await asyncio.to_thread(
            functools.partial(
                api.patch_namespaced_custom_object,
                v1alpha1.GROUP,
                v1alpha1.VERSION,
                metadata["namespace"],
                plural,
                metadata["name"],
                ops,
                _content_type="application/json-patch+json",
            )
        )
    except ApiException as exc:
        # Gone already, or the finalizers changed meanwhile: kopf's own patch follows.
        if exc.status not in (404, 409, 422):
            raise


def fail(
    exc: BaseException,
    *,
    body: kopf.Body,
    retry: int,
    settings: OperatorSettings,
    report: Callable[[Want], None],
    what: str,
    failure: Failure | None = None,
) -> NoReturn:
    """Turn a reconcile's exception into its condition (through ``report``), an Event when a
    person must act, a log line (with the traceback when nothing anticipated it) and kopf's
    verdict: PermanentError (wait for the resource to change) or TemporaryError (retry).

    ``failure`` overrides what :func:`classify` makes of ``exc``. The Event is posted when
    the condition changes, not at every retry or resync.
    """
    if failure is None:
        failure = classify(exc, attempt=retry, max_backoff=settings.max_backoff_seconds)
    before = condition(body, "Ready")
    metadata = body.get("metadata") or {}
    name = f"{metadata.get('namespace')}/{metadata.get('name')}"
    try:
        report(Want("Synced", "False", failure.reason, failure.message))
    except Exception:
        # Whatever broke the reconcile must not also silence it: the log says it all.
        log.exception("%s %s: the condition could not be prepared", what, name)
    if failure.outage:
        metrics.TEMPORAL_UP.set(0)
    if failure.unexpected:
        log.error("%s %s: reconcile failed", what, name, exc_info=exc)
    else:
        log.info("%s %s: %s (%s)", what, name, failure.reason, failure.message)
    changed = (before.get("reason"), before.get("message")) != (failure.reason, failure.message)
    if changed and failure.reason in {"ForeignSchedule", "ReconcileError"}:
        event(body, "Warning", failure.reason, failure.message)
    if failure.retry_after is None:
        raise kopf.PermanentError(f"{what} {failure.reason}: {failure.message}") from None
    raise kopf.TemporaryError(
        f"{what} {failure.reason}: {failure.message}", delay=failure.retry_after
    ) from None


def object_lock(memo: kopf.Memo) -> asyncio.Lock:
    """The lock that keeps one resource's reconciles apart.

    kopf runs a resource's change handlers and its timer concurrently; a resync that read
    the spec before an edit could otherwise put the old spec back into Temporal right
    after the sync handler wrote the new one. ``memo`` is kopf's per-object memo, shared by
    the handlers and the timer of one resource.
    """
    lock = memo.get("reconcile_lock")
    if not isinstance(lock, asyncio.Lock):
        lock = memo["reconcile_lock"] = asyncio.Lock()
    return lock


async def reconcile_now(
    controller: str, memo: kopf.Memo, reconcile: Callable[[], Awaitable[None]]
) -> None:
    """One reconcile, counted the way controller-runtime counts it; a TemporaryError is a
    requeue, re-raised so kopf retries it."""
    async with (
        object_lock(memo),
        metrics.reconciling(controller, operator_of(memo).workers) as outcome,
    ):
        try:
            await reconcile()
        except kopf.TemporaryError:
            outcome.result = "requeue_after"
            raise


async def synced_within(body: kopf.Body, stopped: kopf.DaemonStopped, within: float) -> bool:
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


async def resync(
    controller: str,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    *,
    stopped: kopf.DaemonStopped,
    reconcile: Callable[[], Awaitable[None]],
) -> None:
    """A timer tick's reconcile. Waits (up to one interval) while the sync handler has not
    finished the current generation (it writes everything; in a burst the first tick comes
    before it); errors are already in status and wait for the next tick (a person may fix
    the resource meanwhile). Also replaces an earlier operator's copy of the spec in
    status by digests (:func:`muster_operator.diffbase.migrate`)."""
    diffbase.migrate(body, patch)
    operator = operator_of(memo)
    if not await synced_within(body, stopped, operator.settings.resync_seconds):
        return
    async with (
        object_lock(memo),
        metrics.reconciling(controller, operator.workers, urgent=False) as outcome,
    ):
        try:
            await reconcile()
        except kopf.PermanentError:
            outcome.result = "error"
        except kopf.TemporaryError:
            outcome.result = "requeue_after"
