"""What every handler shares: the operator's settings and clients, and one way to turn a
failed reconcile into a status condition, an Event, a log line and kopf's retry.

The clients live in kopf's memo, created by the startup handler and closed at cleanup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import kopf
from kubernetes import client as k8s
from temporalio.client import Client

from muster_operator import metrics
from muster_operator.reconcile import TemporalUnavailable, Want, classify
from muster_operator.settings import OperatorSettings
from muster_operator.sync import Clients, PollerCache
from muster_operator.workers import Workers
from muster_runtime.client import connect
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings

log = logging.getLogger(__name__)


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


def operator_of(memo: Any) -> Operator:
    """The Operator the startup handler put in kopf's memo."""
    found = memo.get("operator")
    assert isinstance(found, Operator), "the startup handler did not run"
    return found


def now() -> datetime:
    """The time written into conditions and status."""
    return datetime.now(UTC)


def fail(
    exc: BaseException,
    *,
    body: kopf.Body,
    retry: int,
    settings: OperatorSettings,
    report: Callable[[Want], None],
    what: str,
) -> NoReturn:
    """Turn a reconcile's exception into its condition (through ``report``), an Event when a
    person must act, a log line (with the traceback when nothing anticipated it) and kopf's
    verdict: PermanentError (wait for the resource to change) or TemporaryError (retry)."""
    failure = classify(exc, attempt=retry, max_backoff=settings.max_backoff_seconds)
    report(Want("Synced", "False", failure.reason, failure.message))
    metadata = body.get("metadata") or {}
    name = f"{metadata.get('namespace')}/{metadata.get('name')}"
    if failure.outage:
        metrics.TEMPORAL_UP.set(0)
    if failure.unexpected:
        log.error("%s %s: reconcile failed", what, name, exc_info=exc)
    else:
        log.info("%s %s: %s (%s)", what, name, failure.reason, failure.message)
    if failure.reason in {"ForeignSchedule", "ReconcileError"}:
        kopf.warn(body, reason=failure.reason, message=failure.message)
    if failure.retry_after is None:
        raise kopf.PermanentError(f"{what} {failure.reason}: {failure.message}") from None
    raise kopf.TemporaryError(
        f"{what} {failure.reason}: {failure.message}", delay=failure.retry_after
    ) from None


async def reconcile_now(
    controller: str, memo: kopf.Memo, reconcile: Callable[[], Awaitable[None]]
) -> None:
    """One reconcile, counted the way controller-runtime counts it; a TemporaryError is a
    requeue, re-raised so kopf retries it."""
    async with metrics.reconciling(controller, operator_of(memo).workers) as outcome:
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
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    reconcile: Callable[[], Awaitable[None]],
) -> None:
    """A timer tick's reconcile. Waits (up to one interval) while the sync handler has not
    finished the current generation (it writes everything; in a burst the first tick comes
    before it); errors are already in status and wait for the next tick (a person may fix
    the resource meanwhile)."""
    operator = operator_of(memo)
    if not await synced_within(body, stopped, operator.settings.resync_seconds):
        return
    async with metrics.reconciling(controller, operator.workers, urgent=False) as outcome:
        try:
            await reconcile()
        except kopf.PermanentError:
            outcome.result = "error"
        except kopf.TemporaryError:
            outcome.result = "requeue_after"
