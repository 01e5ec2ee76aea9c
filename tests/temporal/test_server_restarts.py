"""A wait for a workflow's result outlives the real server's outages: each outage is
bridged on its own, so a wait that sees several, further apart than the bridge, still ends
with the workflow's outcome. The server is SIGKILLed and kept down longer than the SDK's
own retries last (about 10 s), so the outage reaches Muster's waiter, as a slow restart
or a rollout does; PostgreSQL keeps the state."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import TerminatedError
from temporalio.service import RPCError

from muster_dev.temporal_server import TemporalServer
from muster_runtime.client import result_across_restarts
from tests.helpers import unique

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.parametrize("temporal_target", ["server"], indirect=True, scope="module"),
]

BRIDGE = 20.0
"""Seconds each outage may last. The second outage starts more than this after the wait
resumed from the first, so it is a new outage; a bridge that counted from the first outage
gives up in the second."""

SDK_RETRIES = 30.0
"""Deadline for an outage to reach the waiter: the SDK retries an unreachable server for
about 10 s before it raises."""


async def answering(handle: WorkflowHandle[Any, Any]) -> None:
    """Return once the restarted server answers about the workflow."""
    deadline = time.monotonic() + BRIDGE
    while True:
        try:
            await handle.describe(rpc_timeout=timedelta(seconds=2))
            return
        except RPCError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_result_wait_outlives_outages_further_apart_than_its_bridge(
    client: Client, temporal_server: TemporalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="muster_runtime.client")

    def said(text: str) -> int:
        return sum(text in r.getMessage() for r in caplog.records)

    # No worker polls this queue: the workflow waits until it is terminated below.
    handle = await client.start_workflow(
        "MusterRestartProbe", id=unique("restart-probe"), task_queue=unique("nobody")
    )
    waiter = asyncio.create_task(result_across_restarts(handle, give_up_after=BRIDGE))
    for outage in (1, 2):
        lost = said("lost Temporal while waiting")
        await asyncio.to_thread(temporal_server.kill_server)
        deadline = time.monotonic() + SDK_RETRIES
        while said("lost Temporal while waiting") == lost and time.monotonic() < deadline:
            assert not waiter.done(), f"the wait ended in outage {outage}: {waiter!r}"
            await asyncio.sleep(0.1)
        assert said("lost Temporal while waiting") > lost, f"outage {outage} never reached it"
        await asyncio.to_thread(temporal_server.start_server)
        await answering(handle)
        if outage == 1:
            # The waiter asks again within its backoff (at most 5 s) of the server's first
            # answer; then it waits longer than BRIDGE before the second outage.
            resumed = time.monotonic()
            while time.monotonic() - resumed <= BRIDGE + 6:
                assert not waiter.done(), f"the wait ended after outage 1: {waiter!r}"
                await asyncio.sleep(0.2)
        assert not waiter.done(), f"the wait ended after outage {outage}: {waiter!r}"

    await handle.terminate("the probe has seen both outages")
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(waiter, timeout=BRIDGE)
    assert isinstance(failure.value.cause, TerminatedError)
