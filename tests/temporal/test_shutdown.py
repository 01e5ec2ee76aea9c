"""Graceful shutdown: on SIGTERM a worker stops polling, lets in-flight activities finish
within the grace period, cancels those that would outlast it (they are retried elsewhere,
nothing is lost), and exits 0. An HTTP service (the gateway, the backends) keeps serving
through its shutdown delay, reporting not ready and closing keep-alive connections, and
only then closes its port: a rollout on Kubernetes once failed the requests that arrived
before kube-proxy had dropped the stopping pod."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from muster_dev.process import ManagedProcess, wait_for_exit
from tests.fulfillment_support import start_backends
from tests.helpers import REPO, free_port, http_get, unique, wait_until
from tests.temporal.slow_worker import HoldInput


def ready(url: str) -> bool:
    try:
        return http_get(url + "/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def start_slow_worker(
    temporal_env: dict[str, str], task_queue: str, grace: float, log: Path
) -> ManagedProcess:
    port = free_port()
    process = ManagedProcess(
        "slow",
        [sys.executable, "-m", "tests.temporal.slow_worker"],
        env={
            **os.environ,
            **temporal_env,
            "MUSTER_SLOW_HTTP__PORT": str(port),
            "MUSTER_SLOW_WORKER__TASK_QUEUE": task_queue,
            "MUSTER_SLOW_WORKER__GRACEFUL_SHUTDOWN_SECONDS": str(grace),
            "PYTHONUNBUFFERED": "1",
        },
        cwd=REPO,
        log_path=log,
    )
    process.start()
    wait_until(lambda: ready(f"http://127.0.0.1:{port}"), what="slow worker ready", timeout=60)
    return process


def events(directory: Path) -> list[str]:
    path = directory / "events"
    return path.read_text().split() if path.exists() else []


async def test_in_flight_activity_finishes_within_the_grace_period(
    client: Client, temporal_env: dict[str, str], task_queue: str, tmp_path: Path
) -> None:
    worker = start_slow_worker(temporal_env, task_queue, grace=20, log=tmp_path / "w.log")
    second: ManagedProcess | None = None
    try:
        handle = await client.start_workflow(
            "SlowHold",
            HoldInput(seconds_by_attempt=[2.0], marker_dir=str(tmp_path)),
            id=unique("slow"),
            task_queue=task_queue,
            result_type=str,
        )
        wait_until(lambda: "started-1" in events(tmp_path), what="activity start", timeout=30)
        worker.signal(signal.SIGTERM)
        assert wait_for_exit(worker, timeout=25) == 0
        assert events(tmp_path) == ["started-1", "completed-1"]
        # The result reached the server before the worker left ...
        history = await handle.fetch_history()
        completed = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        ]
        assert len(completed) == 1
        # ... so the next worker only has to finish the workflow, not redo the activity.
        second = start_slow_worker(temporal_env, task_queue, grace=5, log=tmp_path / "b.log")
        assert await handle.result() == "held 2.0s on attempt 1"
        assert events(tmp_path) == ["started-1", "completed-1"]
    finally:
        worker.stop()
        if second is not None:
            second.stop()


async def test_activity_outlasting_the_grace_period_is_cancelled_and_retried(
    client: Client, temporal_env: dict[str, str], task_queue: str, tmp_path: Path
) -> None:
    first = start_slow_worker(temporal_env, task_queue, grace=1, log=tmp_path / "first.log")
    second: ManagedProcess | None = None
    try:
        handle = await client.start_workflow(
            "SlowHold",
            HoldInput(seconds_by_attempt=[120.0, 0.5], marker_dir=str(tmp_path)),
            id=unique("slow"),
            task_queue=task_queue,
            result_type=str,
        )
        wait_until(lambda: "started-1" in events(tmp_path), what="activity start", timeout=30)
        first.signal(signal.SIGTERM)
        # Grace of 1 s, then cancellation: far sooner than the 120 s the activity wanted.
        assert wait_for_exit(first, timeout=20) == 0, first.tail()
        assert events(tmp_path) == ["started-1", "cancelled-1"]
        log = (tmp_path / "first.log").read_text()
        assert "draining worker" in log

        # Nothing is lost: another worker picks up the retry and the workflow completes.
        second = start_slow_worker(temporal_env, task_queue, grace=5, log=tmp_path / "b.log")
        assert await handle.result() == "held 0.5s on attempt 2"
        assert events(tmp_path) == ["started-1", "cancelled-1", "started-2", "completed-2"]
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_http_service_serves_through_its_shutdown_delay(tmp_path: Path) -> None:
    delay = 5.0
    backends = start_backends(tmp_path, {"MUSTER_BACKENDS_API__SHUTDOWN_DELAY_SECONDS": str(delay)})
    stock = f"{backends.api}/inventory/stock"
    try:
        with httpx.Client(timeout=10) as kept_alive:
            before = kept_alive.get(stock)
            assert before.status_code == 200
            assert before.headers.get("connection") != "close"
            stopped_at = time.monotonic()
            backends.process.signal(signal.SIGTERM)
            wait_until(
                lambda: http_get(backends.management + "/readyz", timeout=2)[0] == 503,
                what="the backends to report not ready",
                timeout=delay,
                ignore=(OSError,),
            )
            # Still serving: the kept-alive connection is told to close ...
            during = kept_alive.get(stock)
            assert during.status_code == 200
            assert during.headers["connection"] == "close"
        # ... and a new connection is still accepted, until the delay is over.
        assert httpx.get(stock, timeout=10).status_code == 200
        assert backends.process.running()
        assert wait_for_exit(backends.process, timeout=60) == 0, backends.process.tail()
        assert time.monotonic() - stopped_at >= delay
        log = (tmp_path / "backends.log").read_text()
        assert "serving 5.0s more while routes to this process are removed" in log
    finally:
        backends.process.stop()
