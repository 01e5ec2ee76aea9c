"""A worker for the shutdown tests: one workflow whose activity holds for a while.

Run as ``python -m tests.temporal.slow_worker``; it uses the same runtime entry point as
every Muster worker (settings, health, metrics, signal handling, draining). The activity
writes what happened to it into ``$SLOW_MARKER_DIR`` so a test can see it from outside.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy

from muster_runtime.service import WorkerDefinition, worker_main
from muster_runtime.settings import WorkerServiceSettings, WorkerSettings


class HoldInput(BaseModel):
    """How long each attempt holds, and where to record what happened."""

    seconds_by_attempt: list[float]
    marker_dir: str


class SlowSettings(WorkerServiceSettings):
    """``MUSTER_SLOW_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_SLOW_")

    worker: WorkerSettings = WorkerSettings(task_queue="slow")


def _mark(directory: str, event: str) -> None:
    with (Path(directory) / "events").open("a") as handle:
        handle.write(event + "\n")


@activity.defn(name="slow.hold")
async def hold(request: HoldInput) -> str:
    """Sleep (heartbeating) for this attempt's duration; record start, end or cancel."""
    attempt = activity.info().attempt
    seconds = request.seconds_by_attempt[min(attempt, len(request.seconds_by_attempt)) - 1]
    _mark(request.marker_dir, f"started-{attempt}")
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            activity.heartbeat()
            await asyncio.sleep(min(0.2, deadline - loop.time()))
    except asyncio.CancelledError:
        _mark(request.marker_dir, f"cancelled-{attempt}")
        raise
    _mark(request.marker_dir, f"completed-{attempt}")
    return f"held {seconds}s on attempt {attempt}"


@workflow.defn(name="SlowHold")
class SlowHold:
    """Runs the holding activity with quick retries."""

    @workflow.run
    async def run(self, request: HoldInput) -> str:
        return await workflow.execute_activity(
            hold,
            request,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200)),
        )


async def build(client: Client, settings: SlowSettings) -> WorkerDefinition:
    """Register the workflow and activity."""
    return WorkerDefinition(workflows=[SlowHold], activities=[hold])


if __name__ == "__main__":
    from muster_runtime.shutdown import exit_now

    exit_now(worker_main("slow", SlowSettings, build))
