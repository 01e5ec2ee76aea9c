"""Wiring of the canary worker: settings, activity class, registration."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict
from temporalio.client import Client

from muster_runtime.canary import TASK_QUEUE
from muster_runtime.canary.activities import CanaryActivities
from muster_runtime.canary.workflows import CanaryPing
from muster_runtime.service import WorkerDefinition, worker_main
from muster_runtime.settings import WorkerServiceSettings, WorkerSettings


class CanarySettings(WorkerServiceSettings):
    """``MUSTER_CANARY_*`` variables, e.g. ``MUSTER_CANARY_HTTP__PORT``."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_CANARY_")

    worker: WorkerSettings = WorkerSettings(task_queue=TASK_QUEUE)
    """Temporal worker."""


async def build(client: Client, settings: CanarySettings) -> WorkerDefinition:
    """Register the canary workflow and its activity."""
    identity = client.identity
    activities = CanaryActivities(identity)
    return WorkerDefinition(workflows=[CanaryPing], activities=[activities.echo])


def main() -> int:
    """Entry point: ``python -m muster_runtime.canary``."""
    return worker_main("canary", CanarySettings, build)
