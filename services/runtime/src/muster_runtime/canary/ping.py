"""One ``CanaryPing`` through a running stack: what ``muster ping`` and ``muster up`` run."""

from __future__ import annotations

import time
from datetime import timedelta

from muster_runtime.canary import TASK_QUEUE
from muster_runtime.canary.models import PingInput, PingResult
from muster_runtime.client import connect
from muster_runtime.settings import TemporalSettings


async def ping_canary(temporal: TemporalSettings, message: str = "muster ping") -> str:
    """Run one CanaryPing workflow and say who answered and how fast."""
    client = await connect(temporal, tracing=False)
    started = time.monotonic()
    result = await client.execute_workflow(
        "CanaryPing",
        PingInput(message=message),
        id=f"canary-ping-{int(time.time() * 1000)}",
        task_queue=TASK_QUEUE,
        result_type=PingResult,
        execution_timeout=timedelta(seconds=30),
    )
    elapsed = (time.monotonic() - started) * 1000
    return f"canary ping answered by {result.handled_by} in {elapsed:.0f} ms"
