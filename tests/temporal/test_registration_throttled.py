"""Registering Muster's search attributes beside a namespace that uses up its visibility
rate: the check that the attributes are usable is a visibility call, and a throttled one
is waited out, not raised. A real server of its own, allowing one visibility call per
second (Temporal's default is 10, the launcher's 100)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio.api.workflowservice.v1 import CountWorkflowExecutionsRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from muster_dev.temporal_server import (
    DYNAMIC_CONFIG,
    TemporalServer,
)
from muster_runtime.search_attributes import ensure_search_attributes
from tests.helpers import throwaway_server_config

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def throttled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    config = throwaway_server_config(
        tmp_path_factory.mktemp("throttled-server"),
        retention=timedelta(days=1),
        register_search_attributes=False,
        dynamic_config={**DYNAMIC_CONFIG, "frontend.namespaceRPS.visibility": 1},
    )
    server = TemporalServer(config)
    server.start()
    yield server
    server.stop()


async def test_registration_waits_out_a_throttled_check(
    throttled_server: TemporalServer,
) -> None:
    client = await Client.connect(throttled_server.config.address)
    count = CountWorkflowExecutionsRequest(namespace="default")
    loop = asyncio.get_running_loop()

    async def use_up_the_rate(seconds: float) -> int:
        """Take every visibility call the namespace allows for ``seconds`` (asking every
        5 ms, so a new one is taken within 5 ms of the rate allowing it); count refusals."""
        refused = 0
        until = loop.time() + seconds
        while loop.time() < until:
            try:
                await client.workflow_service.count_workflow_executions(count, retry=False)
            except RPCError as exc:
                if exc.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                    raise
                refused += 1
            await asyncio.sleep(0.005)
        return refused

    # Registration's check arrives while the namespace's one call per second is taken: its
    # first try is refused, and it succeeds once the busy caller stops.
    busy = asyncio.create_task(use_up_the_rate(1.5))
    added = await ensure_search_attributes(client, "default")
    assert added, "the server was started without Muster's attributes"
    assert await busy > 0, "nothing was throttled: the test proves nothing"
