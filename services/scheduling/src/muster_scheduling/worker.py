"""Wiring of the scheduling worker: settings, the HTTP client, registration."""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from temporalio.client import Client

from muster_api.scheduling import TASK_QUEUE
from muster_runtime.service import WorkerDefinition, worker_main
from muster_runtime.settings import WorkerServiceSettings, WorkerSettings
from muster_scheduling.activities import SchedulingActivities
from muster_scheduling.workflows import WORKFLOWS


class SchedulingSettings(WorkerServiceSettings):
    """``MUSTER_SCHEDULING_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_SCHEDULING_")

    worker: WorkerSettings = WorkerSettings(task_queue=TASK_QUEUE)
    """Temporal worker."""
    backends_url: str = "http://127.0.0.1:8100"
    """Base URL of the backends (their /payment, /inventory ... paths)."""
    reports_dir: Path = Path("/var/lib/muster/scheduling/reports")
    """Folder the daily reports are written to (one JSON file per business day; a volume in
    Kubernetes)."""
    warehouse: Path = Path("/var/lib/muster/scheduling/warehouse.db")
    """SQLite file the data sync copies inventory moves into (on a volume in Kubernetes)."""
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Timeout of one backend call (an attempt; Temporal retries)."""


async def build(client: Client, settings: SchedulingSettings) -> WorkerDefinition:
    """Create the HTTP client and register the workflows and activities."""
    http = httpx.AsyncClient(timeout=settings.http_timeout_seconds)
    activities = SchedulingActivities(
        http, settings.backends_url, settings.reports_dir, settings.warehouse, client
    )
    return WorkerDefinition(
        workflows=list(WORKFLOWS),
        activities=activities.all(),
        on_close=[http.aclose],
    )


def main() -> int:
    """Entry point: ``python -m muster_scheduling``."""
    return worker_main("scheduling", SchedulingSettings, build)
