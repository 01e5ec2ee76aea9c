"""The operator's Temporal side against the real dev server: create-first writes, updates
guarded by conflict tokens, and a write by somebody else racing the operator's read-back
(never adopted as the operator's own; the next drift check puts it back)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import (
    Client,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from muster_operator.reconcile import parse_schedule
from muster_operator.sync import apply_schedule, check_and_correct
from tests.helpers import unique


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


async def test_create_then_update_record_a_baseline(client: Client) -> None:
    name = unique("sync")
    created = await apply_schedule(client, resource(name))
    assert created.outcome == "created"
    assert created.fingerprint is not None
    handle = client.get_schedule_handle(created.schedule_id)
    try:
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
        assert raced.description.schedule.spec.intervals
        assert raced.fingerprint is None

        corrected = await check_and_correct(client, resource(name, timeZone="UTC"), None)
        assert corrected.outcome == "corrected"
        assert corrected.drift is not None
        assert "could not confirm its last write" in corrected.drift.reason
        described = await handle.describe()
        assert not described.schedule.spec.intervals
        assert described.schedule.spec.calendars
        assert corrected.fingerprint is not None
    finally:
        await handle.delete()
