"""The saga helper on its own: reverse order, failures that stay owed and can be retried,
parallel compensation, checkpoints for partial compensation, and compensation that a
cancellation cannot interrupt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from muster_fulfillment.saga import Saga, run_shielded


async def test_compensates_in_reverse_order() -> None:
    ran: list[str] = []
    events: list[tuple[str, str]] = []
    saga = Saga(on_event=lambda step, outcome, detail: events.append((step, outcome)))
    for step in ("reserve", "charge", "ship"):

        async def undo(step: str = step) -> None:
            ran.append(step)

        saga.add(step, undo)
    report = await saga.compensate()
    assert ran == ["ship", "charge", "reserve"]
    assert report.compensated == ["ship", "charge", "reserve"]
    assert report.complete
    assert events == [
        ("ship", "started"), ("ship", "succeeded"),
        ("charge", "started"), ("charge", "succeeded"),
        ("reserve", "started"), ("reserve", "succeeded"),
    ]  # fmt: skip
    assert saga.owed == []


async def test_a_failing_compensation_stays_owed_and_the_others_still_run() -> None:
    ran: list[str] = []
    attempts = {"charge": 0}

    async def refund() -> None:
        attempts["charge"] += 1
        if attempts["charge"] == 1:
            raise RuntimeError("payment backend down")
        ran.append("charge")

    async def release() -> None:
        ran.append("reserve")

    saga = Saga()
    saga.add("reserve", release)
    saga.add("charge", refund)
    first = await saga.compensate()
    assert first.failed == {"charge": "payment backend down"}
    assert first.compensated == ["reserve"]
    assert not first.complete
    assert saga.owed == ["charge"]
    second = await saga.compensate()
    assert second.complete
    assert second.compensated == ["charge"]
    assert ran == ["reserve", "charge"]  # reserve was not undone twice


async def test_parallel_compensation_runs_all_at_once() -> None:
    running = 0
    peak = 0

    async def undo() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    saga = Saga(parallel=True)
    for step in ("a", "b", "c"):
        saga.add(step, undo)
    report = await saga.compensate()
    assert report.complete
    assert peak == 3


async def test_checkpoint_compensates_only_what_followed() -> None:
    ran: list[str] = []

    def undo(step: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            ran.append(step)

        return run

    saga = Saga()
    saga.add("reserve", undo("reserve"))
    saga.checkpoint("reserved")
    saga.add("charge", undo("charge"))
    saga.add("ship", undo("ship"))
    report = await saga.compensate(to_checkpoint="reserved")
    assert ran == ["ship", "charge"]
    assert report.compensated == ["ship", "charge"]
    assert saga.owed == ["reserve"]
    # After the partial compensation the saga can go on: register again, compensate fully.
    saga.add("charge", undo("charge-2"))
    await saga.compensate()
    assert ran == ["ship", "charge", "charge-2", "reserve"]


async def test_unknown_checkpoint_and_double_registration_are_errors() -> None:
    saga = Saga()

    async def undo() -> None:
        return None

    saga.add("reserve", undo)
    with pytest.raises(ValueError, match="already registered"):
        saga.add("reserve", undo)
    with pytest.raises(ValueError, match="unknown checkpoint 'nope'"):
        await saga.compensate(to_checkpoint="nope")


async def test_cancellation_cannot_interrupt_compensation() -> None:
    release_started = asyncio.Event()
    finish = asyncio.Event()
    ran: list[str] = []

    async def refund() -> None:
        ran.append("charge")

    async def release() -> None:
        release_started.set()
        await finish.wait()
        ran.append("reserve")

    saga = Saga()
    saga.add("reserve", release)
    saga.add("charge", refund)
    task = asyncio.create_task(saga.compensate())
    await release_started.wait()
    task.cancel()  # as a workflow cancellation would
    await asyncio.sleep(0)
    assert not task.done()
    finish.set()
    report = await task
    assert ran == ["charge", "reserve"]
    assert report.complete
    assert report.cancel_requested


async def test_run_shielded_reports_the_cancel_and_returns_the_result() -> None:
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    task = asyncio.create_task(run_shielded(work()))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await task == ("done", True)
