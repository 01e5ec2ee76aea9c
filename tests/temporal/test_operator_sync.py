"""The operator's Temporal side against real schedules, on the dev server and on the real
server: create-first writes (one call,
the baseline adopted at the first drift check), updates guarded by conflict tokens, and a
write by somebody else racing the operator (never adopted as the operator's own; the next
drift check puts it back); ``remainingActions: 0`` (which the SDK will not create) created
without a run; deletes and pauses that touch only the resource's own schedules."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import kopf
import pytest
from temporalio.client import (
    Client,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from muster_operator import sync
from muster_operator.reconcile import Owned, Want, owner_of, parse_schedule
from muster_operator.schedules import write_status
from muster_operator.sync import apply_schedule, check_and_correct, trigger
from muster_runtime.polling import async_wait_until
from tests.helpers import ON_BOTH_SERVERS, unique
from tests.kube.noop_workflow import Noop

pytestmark = ON_BOTH_SERVERS


def resource(name: str, **spec: Any) -> Any:
    return parse_schedule(
        {
            "apiVersion": "muster.io/v1alpha1",
            "kind": "Schedule",
            "metadata": {"name": name, "namespace": "sync-test"},
            "spec": {
                "cron": ["0 6 * * *"],
                "workflow": {"type": "Nothing", "taskQueue": "sync-test-none"},
                **spec,
            },
        }
    )


def to_intervals(state: ScheduleUpdateInput) -> ScheduleUpdate:
    schedule = state.description.schedule
    schedule.spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))])
    return ScheduleUpdate(schedule=schedule)


@pytest.fixture
def racing_writer(monkeypatch: pytest.MonkeyPatch, client: Client) -> list[str]:
    """Somebody edits the schedule right after each operator update, before its read-back."""
    original = ScheduleHandle.update
    raced: list[str] = []

    async def update_then_race(self: ScheduleHandle, *args: Any, **kwargs: Any) -> None:
        await original(self, *args, **kwargs)
        if not raced:
            raced.append(self.id)
            await original(client.get_schedule_handle(self.id), to_intervals)

    monkeypatch.setattr(ScheduleHandle, "update", update_then_race)
    return raced


async def corrected_without_baseline(client: Client, handle: ScheduleHandle, wanted: Any) -> None:
    """The drift check with no baseline puts the other writer's intervals back to the cron."""
    corrected = await check_and_correct(client, wanted, None)
    assert corrected.outcome == "corrected"
    assert corrected.drift is not None
    assert "before the operator could confirm its last write" in corrected.drift.reason
    described = await handle.describe()
    assert not described.schedule.spec.intervals
    assert described.schedule.spec.calendars
    assert corrected.fingerprint is not None


async def test_create_then_update_record_a_baseline(client: Client) -> None:
    name = unique("sync")
    created = await apply_schedule(client, resource(name))
    assert created.outcome == "created"
    # One call per new schedule: no read-back, so no baseline and no description yet.
    assert (created.fingerprint, created.description) == (None, None)
    handle = client.get_schedule_handle(created.schedule_id)
    try:
        # The first drift check adopts what Temporal holds: nobody updated it since the
        # create (pauses and triggers do not count as updates).
        await trigger(client, resource(name), "first")
        adopted = await check_and_correct(client, resource(name), None)
        assert adopted.outcome == "unchanged"
        assert adopted.drift is not None
        assert not adopted.drift.changed
        assert adopted.fingerprint is not None
        assert adopted.description is not None
        assert adopted.description.info.next_action_times
        again = await check_and_correct(client, resource(name), adopted.fingerprint)
        assert (again.outcome, again.fingerprint) == ("unchanged", adopted.fingerprint)

        updated = await apply_schedule(client, resource(name, timeZone="Europe/Berlin"))
        assert updated.outcome == "updated"
        assert updated.fingerprint is not None
        assert updated.fingerprint != created.fingerprint
        # Nothing changed since: the drift check leaves it alone.
        checked = await check_and_correct(
            client, resource(name, timeZone="Europe/Berlin"), updated.fingerprint
        )
        assert checked.outcome == "unchanged"
    finally:
        await handle.delete()


async def test_an_edit_before_the_first_check_is_not_adopted(client: Client) -> None:
    """Created (no baseline yet), then edited in Temporal: the first check puts it back."""
    name = unique("sync")
    created = await apply_schedule(client, resource(name))
    handle = client.get_schedule_handle(created.schedule_id)
    try:
        await handle.update(to_intervals)
        await corrected_without_baseline(client, handle, resource(name))
    finally:
        await handle.delete()


async def test_a_write_racing_the_read_back_is_not_adopted(
    client: Client, racing_writer: list[str]
) -> None:
    name = unique("sync")
    created = await apply_schedule(client, resource(name))
    handle = client.get_schedule_handle(created.schedule_id)
    try:
        raced = await apply_schedule(client, resource(name, timeZone="UTC"))
        assert racing_writer == [created.schedule_id]
        # The read-back holds the other writer's intervals: not the operator's baseline.
        assert raced.description is not None
        assert raced.description.schedule.spec.intervals
        assert raced.fingerprint is None

        await corrected_without_baseline(client, handle, resource(name, timeZone="UTC"))
    finally:
        await handle.delete()


async def test_pollers_are_asked_once_per_queue_while_fresh(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = sync.pollers

    async def counted(target: Client, task_queue: str) -> int:
        calls.append(task_queue)
        return await real(target, task_queue)

    monkeypatch.setattr(sync, "pollers", counted)
    queue = unique("pollers")
    cache = sync.PollerCache(ttl=3600)
    # Many Schedules on one queue reconciling at once: one DescribeTaskQueue.
    found = await asyncio.gather(*(cache.count(client, queue) for _ in range(20)))
    assert found == [0] * 20
    assert calls == [queue]
    assert await cache.count(client, f"{queue}-other") == 0
    assert calls == [queue, f"{queue}-other"]

    uncached = sync.PollerCache(ttl=0)
    async with Worker(client, task_queue=queue, workflows=[Noop]):
        # A fresh answer each time: the worker's poller shows up.
        await async_wait_until(
            lambda: _polled(uncached, client, queue), what="the worker's poller", timeout=30
        )


async def _polled(cache: sync.PollerCache, client: Client, queue: str) -> bool:
    return bool(await cache.count(client, queue))


async def test_a_failed_pollers_call_is_not_kept(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(target: Client, task_queue: str) -> int:
        raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")

    queue = unique("pollers")
    cache = sync.PollerCache(ttl=3600)
    monkeypatch.setattr(sync, "pollers", refused)
    with pytest.raises(RPCError):
        await cache.count(client, queue)
    monkeypatch.undo()
    assert await cache.count(client, queue) == 0


async def test_a_resync_that_finds_nothing_new_writes_no_status(client: Client) -> None:
    """Many quiet Schedules must not cost the API server a status write each per resync."""
    name = unique("sync")
    created = await apply_schedule(client, resource(name))
    handle = client.get_schedule_handle(created.schedule_id)
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "sync-test", "generation": 1},
        "status": {},
    }
    synced = Want("Synced", "True", "Synced", "matches")
    owned = [Owned(created.schedule_id, created.namespace)]
    try:
        first = kopf.Patch()
        write_status(body, first, synced, resource=resource(name), result=created, owned=owned)
        assert first.status["ownedSchedules"] == [
            {"scheduleId": created.schedule_id, "namespace": "default"}
        ]
        assert first.status["lastSyncTime"]
        assert "nextActionTimes" not in first.status  # a create is not read back
        body["status"] = dict(first.status)

        checked = await check_and_correct(client, resource(name), None)
        second = kopf.Patch()
        write_status(body, second, synced, resource=resource(name), result=checked, owned=owned)
        # The first resync: Temporal's view and the adopted baseline; the write time stays.
        assert second.status["nextActionTimes"]
        assert second.status["syncedFingerprint"] == checked.fingerprint
        assert "lastSyncTime" not in second.status
        body["status"].update(second.status)

        again = await check_and_correct(client, resource(name), checked.fingerprint)
        third = kopf.Patch()
        write_status(body, third, synced, resource=resource(name), result=again, owned=owned)
        assert dict(third.status) == {}
        assert not third
    finally:
        await handle.delete()


async def test_deletes_and_pauses_touch_only_the_owners_schedules(client: Client) -> None:
    name = unique("sync")
    created = await apply_schedule(client, resource(name))
    sid = created.schedule_id
    mine, theirs = owner_of("sync-test", name), owner_of("sync-test", "somebody-else")
    handle = client.get_schedule_handle(sid)
    try:
        assert await sync.pause_owned(client, sid, theirs, "no") == "not owned"
        assert not (await handle.describe()).schedule.state.paused
        assert await sync.pause_owned(client, sid, mine, "invalid spec") == "paused"
        assert await sync.pause_owned(client, sid, mine, "invalid spec") == "already paused"
        assert (await handle.describe()).schedule.state.note == "invalid spec"
        assert "left alone" in await sync.delete_owned(client, sid, theirs)
        assert "deleted" in await sync.delete_owned(client, sid, mine)
        assert "already gone" in await sync.delete_owned(client, sid, mine)
        assert await sync.pause_owned(client, sid, mine, "x") == "gone"
    finally:
        with contextlib.suppress(RPCError):
            await handle.delete()
