"""Muster's short-lived commands against the dev server and the real server: ``muster
search-attributes``, ``muster apply`` and ``muster-orders`` end with the status they chose,
on success and on failure, and never abort in interpreter finalization. A process whose
Temporal client threads outlive ``main`` can die there with ``Fatal Python error:
PyGILState_Release`` (temporalio/sdk-python#300), turning a success into SIGABRT; Muster's
entry points leave through ``muster_runtime.shutdown.exit_now``. The abort is occasional,
so each command runs several times."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError

from muster_api.fulfillment import workflow_id
from tests.helpers import ON_BOTH_SERVERS, REPO, free_port, unique

pytestmark = [pytest.mark.timeout(300), ON_BOTH_SERVERS]

BIN = Path(sys.executable).parent
RUNS = 3


async def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process, as a person or a script does."""
    return await asyncio.to_thread(
        subprocess.run,
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env, "OTEL_SDK_DISABLED": "true"},
    )


def exits(result: subprocess.CompletedProcess[str], status: int) -> str:
    """Assert the exit status and a clean exit; the standard output."""
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Fatal Python error" not in result.stderr, output
    assert result.returncode == status, output
    return result.stdout


async def test_search_attributes_exits_zero_then_one_when_unreachable(
    temporal_env: dict[str, str],
) -> None:
    for _ in range(RUNS):
        out = exits(await run([str(BIN / "muster"), "search-attributes"], temporal_env), 0)
        assert "all Muster search attributes present" in out
    closed = {**temporal_env, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    result = await run([str(BIN / "muster"), "search-attributes"], closed)
    exits(result, 1)
    assert "failed against 127.0.0.1:" in result.stderr


async def test_apply_exits_zero_for_its_schedule_and_one_for_a_foreign_one(
    temporal_env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    name = unique("cli")
    schedule_id = f"default.{name}"
    (tmp_path / "schedule.yaml").write_text(
        "apiVersion: muster.io/v1alpha1\nkind: Schedule\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n  suspend: true\n  intervals: [{every: 1h}]\n"
        "  workflow: {type: HealthCheck, taskQueue: muster-scheduling}\n"
    )
    argv = [str(BIN / "muster"), "apply", "-f", str(tmp_path / "schedule.yaml")]
    try:
        outputs = [exits(await run(argv, temporal_env), 0) for _ in range(RUNS)]
        assert f"schedule default/{name} created" in outputs[0]
        assert all(name in out for out in outputs[1:])
        # Somebody else's schedule under that id is refused, not adopted: status 1.
        await client.get_schedule_handle(schedule_id).delete()
        await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    "HealthCheck", id=unique("foreign"), task_queue="muster-scheduling"
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
                state=ScheduleState(paused=True),
            ),
        )
        result = await run(argv, temporal_env)
        exits(result, 1)
        assert f"error: {tmp_path / 'schedule.yaml'}" in result.stdout
    finally:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(schedule_id).delete()


async def test_orders_exit_with_their_status(
    temporal_env: dict[str, str], client: Client, tmp_path: Path
) -> None:
    order = json.loads((REPO / "examples" / "orders" / "basic.json").read_text())
    order["order_id"] = unique("cli")
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order))
    orders = str(BIN / "muster-orders")
    try:
        out = exits(await run([orders, "place", str(path)], temporal_env), 0)
        assert f"order {order['order_id']} placed" in out
        for _ in range(RUNS - 1):
            again = await run([orders, "place", str(path)], temporal_env)
            exits(again, 1)
            assert "already placed" in again.stderr
        missing = await run([orders, "status", unique("no-such-order")], temporal_env)
        exits(missing, 1)
        assert "Temporal said:" in missing.stderr
        exits(await run([orders, "list", "--limit", "5"], temporal_env), 0)
    finally:
        # Nobody runs this order (no fulfillment worker here): end it, so that no later
        # test's worker on the default task queue picks it up.
        await client.get_workflow_handle(workflow_id(order["order_id"])).terminate()
