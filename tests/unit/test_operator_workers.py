"""The operator's reconcile slots: a fixed number at once, changes before resyncs, FIFO within
each class, and a cancelled waiter neither leaks nor steals a slot."""

from __future__ import annotations

import asyncio

import pytest

from muster_operator.workers import Workers


async def test_changes_go_before_resyncs_and_each_class_is_fifo() -> None:
    workers = Workers(2)
    order: list[str] = []
    gate = asyncio.Event()

    async def job(name: str, *, urgent: bool) -> None:
        async with workers.slot(urgent=urgent):
            order.append(name)
            await gate.wait()

    holders = [asyncio.create_task(job(f"hold-{i}", urgent=True)) for i in range(2)]
    await asyncio.sleep(0)
    assert workers.busy == 2
    waiting = []
    for name, urgent in [
        ("resync-1", False),
        ("change-1", True),
        ("resync-2", False),
        ("change-2", True),
    ]:
        waiting.append(asyncio.create_task(job(name, urgent=urgent)))
        await asyncio.sleep(0)
    assert (workers.waiting(urgent=True), workers.waiting(urgent=False)) == (2, 2)
    gate.set()
    await asyncio.gather(*holders, *waiting)
    assert order == ["hold-0", "hold-1", "change-1", "change-2", "resync-1", "resync-2"]
    assert workers.busy == 0


async def test_never_more_than_size_at_once() -> None:
    workers = Workers(3)
    running = peak = 0

    async def job(i: int) -> None:
        nonlocal running, peak
        async with workers.slot(urgent=i % 2 == 0):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0)
            running -= 1

    await asyncio.gather(*(job(i) for i in range(50)))
    assert peak == 3
    assert workers.busy == 0


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    workers = Workers(1)
    release = asyncio.Event()

    async def hold() -> None:
        async with workers.slot(urgent=True):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(workers.acquire(urgent=True))
    after: list[str] = []

    async def later() -> None:
        async with workers.slot(urgent=False):
            after.append("resync ran")

    resync = asyncio.create_task(later())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert workers.waiting(urgent=True) == 0
    release.set()
    await asyncio.gather(holder, resync)
    assert after == ["resync ran"]
    assert workers.busy == 0


async def test_a_slot_handed_to_a_cancelled_waiter_passes_on() -> None:
    workers = Workers(1)
    await workers.acquire(urgent=True)
    first = asyncio.create_task(workers.acquire(urgent=True))
    second = asyncio.create_task(workers.acquire(urgent=False))
    await asyncio.sleep(0)
    workers.release()  # the slot goes to ``first``...
    first.cancel()  # ...which is cancelled before it runs: ``second`` must get it
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=5)
    assert workers.busy == 1
    workers.release()
    assert workers.busy == 0


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        Workers(0)
