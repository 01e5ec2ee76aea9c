"""The operator's Prometheus metrics, named like controller-runtime's so dashboards and
alerts written for Go operators work unchanged, plus Muster's own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Counter, Gauge, Histogram

from muster_operator.workers import Workers

RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller",
    ["controller"],
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller",
    ["controller"],
    # controller-runtime's own buckets: fine around a second, where latency targets sit.
    buckets=(
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.15,
        0.2,
        0.25,
        0.3,
        0.35,
        0.4,
        0.45,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        1.0,
        1.25,
        1.5,
        1.75,
        2.0,
        2.5,
        3.0,
        3.5,
        4.0,
        4.5,
        5,
        6,
        7,
        8,
        9,
        10,
        15,
        20,
        25,
        30,
        40,
        50,
        60,
    ),
)
ACTIVE_WORKERS = Gauge(
    "controller_runtime_active_workers",
    "Number of currently used workers per controller",
    ["controller"],
)
QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested",
    ["name"],
    buckets=(0.001, 0.01, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
SCHEDULE_SYNCS = Counter(
    "muster_operator_schedule_syncs_total",
    "Writes of Temporal schedules by outcome (created, updated, corrected, recreated, ...)",
    ["outcome"],
)
DRIFT_CORRECTIONS = Counter(
    "muster_operator_drift_corrections_total",
    "Temporal schedules found changed outside the operator and put back",
    ["controller"],
)
TEMPORAL_UP = Gauge(
    "muster_operator_temporal_up", "1 when the last call to Temporal worked, else 0"
)
TASK_QUEUE_POLLERS = Gauge(
    "muster_task_queue_pollers",
    "Workers polling the task queue of a Schedule's workflow, as Temporal last reported",
    ["task_queue"],
)
APPROVALS_PENDING = Gauge(
    "muster_approvals_pending",
    "Approval requests waiting for a decision, by policy (counted at every resync)",
    ["policy"],
)


class Outcome:
    """What one reconcile ended as (``result`` label): success, error, requeue."""

    def __init__(self) -> None:
        self.result = "success"


@asynccontextmanager
async def reconciling(
    controller: str, workers: Workers, *, urgent: bool = True
) -> AsyncIterator[Outcome]:
    """Wait for one of the controller's workers, then count and time one reconcile.

    As in controller-runtime, at most ``MUSTER_OPERATOR_MAX_CONCURRENT_RECONCILES`` run at
    once (changes before periodic resyncs, ``urgent=False``); the wait is
    ``workqueue_queue_duration_seconds``, the work is
    ``controller_runtime_reconcile_time_seconds``. An exception counts as an error and is
    re-raised.
    """
    outcome = Outcome()
    queued = time.perf_counter()
    async with workers.slot(urgent=urgent):
        QUEUE_DURATION.labels(controller).observe(time.perf_counter() - queued)
        ACTIVE_WORKERS.labels(controller).inc()
        started = time.perf_counter()
        try:
            yield outcome
        except BaseException:
            if outcome.result == "success":
                outcome.result = "error"
            raise
        finally:
            ACTIVE_WORKERS.labels(controller).dec()
            RECONCILE_TIME.labels(controller).observe(time.perf_counter() - started)
            RECONCILE_TOTAL.labels(controller, outcome.result).inc()
            if outcome.result == "error":
                RECONCILE_ERRORS.labels(controller).inc()
