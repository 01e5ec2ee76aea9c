"""What every history recorder shares: the servers a path runs on, the identity the
recorded histories carry, scrubbing, and where a history file goes.

Paths run on a throw-away dev server (Muster's search attributes registered), or on the
time-skipping test server when they wait days. Both start only when a path needs them. A
history is written as ``histories/<workflow type>/<name>.json`` in the format ``temporal
workflow show --output json`` writes, without stack traces (they name files on the
recording machine, and replay never reads them) and with :data:`IDENTITY` as the identity
of every client and worker (never a host name).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from muster_api.search_attributes import cli_types
from muster_dev.process import free_port
from muster_dev.temporal import DevServer, DevServerConfig
from muster_runtime.client import connect
from muster_runtime.settings import TemporalSettings
from tests.conftest import start_time_skipping_env

HISTORIES = Path(__file__).parent / "histories"
IDENTITY = "muster-replay-recorder"
"""The clients' and workers' identity in recorded histories (never a host name)."""


class Servers:
    """The dev server and the time-skipping server, each started on first use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._dev: DevServer | None = None
        self._client: Client | None = None
        self._env: WorkflowEnvironment | None = None

    async def dev(self) -> Client:
        """A client of a throw-away dev server with Muster's search attributes."""
        if self._client is None:
            config = DevServerConfig(port=free_port(), ui_port=None, search_attributes=cli_types())
            self._dev = DevServer(config, log_path=self.tmp / "temporal.log")
            self._dev.start()
            settings = TemporalSettings(address=config.address, namespace="default")
            self._client = await connect(settings, identity=IDENTITY, tracing=False)
        return self._client

    async def skipping(self) -> WorkflowEnvironment:
        """The time-skipping test server; use its own client, only it skips time."""
        if self._env is None:
            self._env = await start_time_skipping_env(identity=IDENTITY)
        return self._env

    async def close(self) -> None:
        if self._env is not None:
            await self._env.shutdown()
        if self._dev is not None:
            self._dev.stop()


def scrubbed(history: WorkflowHistory) -> Any:
    """The history as JSON without stack traces."""

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: "" if k == "stackTrace" else scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(item) for item in node]
        return node

    return scrub(history.to_json_dict())


def history_path(workflow_type: str, name: str) -> Path:
    return HISTORIES / workflow_type / f"{name}.json"


def save(workflow_type: str, name: str, history: WorkflowHistory) -> None:
    """Write a recorded history where the replay test finds it."""
    path = history_path(workflow_type, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scrubbed(history), indent=2) + "\n")
    print(f"{workflow_type}/{name}: {len(history.events)} events")


def wanted(
    workflow_type: str, paths: dict[str, Any], names: set[str] | None, refresh: bool
) -> dict[str, Any]:
    """The paths to record: those named (``name``, ``<workflow type>/name``, or the workflow
    type for all of its paths), or all with ``refresh``, or else those with no file yet."""
    if names is not None:
        if workflow_type in names:
            return dict(paths)
        return {k: v for k, v in paths.items() if k in names or f"{workflow_type}/{k}" in names}
    if refresh:
        return dict(paths)
    return {k: v for k, v in paths.items() if not history_path(workflow_type, k).exists()}


Recorder = Callable[[Servers, set[str] | None, bool], Awaitable[None]]
"""A module's ``record(servers, names, refresh)``."""
