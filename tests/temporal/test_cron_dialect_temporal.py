"""Muster's cron dialect against the real Temporal dev server: the port of Temporal's parser
reads every expression as the server does (the misreadings Muster refuses included) and
refuses what the server refuses; the next-run arithmetic matches the server's own matching
times across daylight-saving changes in several zones; and the documented behaviours hold:
a Europe/Berlin 02:30 job has no run on the spring-forward day, a skip entry that sets
only the day of the week skips 00:00 alone."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.schedule.v1 import StructuredCalendarSpec
from temporalio.api.workflowservice.v1 import ListScheduleMatchingTimesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleSpec,
)
from temporalio.service import RPCError

from muster_api.cron import TemporalRefuses, parse_cron, temporal_reading
from muster_operator.reconcile import desired_schedule, parse_schedule
from tests.unit.test_cron_dialect import ACCEPTED, _corpus

pytestmark = pytest.mark.temporal

ACTION = ScheduleActionStartWorkflow("NeverRuns", id="cron-dialect", task_queue="cron-dialect")
FIELDS = ("second", "minute", "hour", "day_of_month", "month", "day_of_week", "year")


async def create(client: Client, spec: ScheduleSpec) -> ScheduleHandle:
    schedule = Schedule(action=ACTION, spec=spec)
    return await client.create_schedule(f"cron-dialect-{uuid.uuid4().hex[:10]}", schedule)


def expand(calendar: StructuredCalendarSpec) -> dict[str, frozenset[int] | None]:
    """A structured calendar as the values each field matches (year None: every year)."""
    out: dict[str, frozenset[int] | None] = {}
    for name in FIELDS:
        ranges = list(getattr(calendar, name))
        if name == "year" and not ranges:
            out[name] = None
            continue
        values: set[int] = set()
        for r in ranges:
            values.update(range(r.start, max(r.start, r.end) + 1, max(r.step, 1)))
        out[name] = frozenset(values)
    return out


def ours(expression: str) -> dict[str, frozenset[int] | None]:
    reading = temporal_reading(expression)
    assert reading.fields is not None
    return {name: reading.fields.get(name) for name in FIELDS}


MISREAD = [
    "0 0 6 * * *",
    "0 0 6 * * * 2030",
    "0 9 * * 1#2",
    "0 9 * * 1-7",
    "0 9 * * MON-7",
    "0 9 * * 1/1",
    "0 9 * * Tuesday",
    "0 9 1 * 1",
    "0 9 * * 7",
    "0 9 * * */3",
    "+5 * * * *",
]


async def test_the_port_reads_every_expression_as_temporal_does(client: Client) -> None:
    expressions = [*ACCEPTED, *MISREAD, *random.Random(7).sample(_corpus(7, 2000), 60)]
    compared = refused = 0
    for expression in expressions:
        try:
            expected = ours(expression)
        except TemporalRefuses as exc:
            why = str(exc).split(",")[0]
            with pytest.raises(RPCError, match=re.escape(why)):
                await create(client, ScheduleSpec(cron_expressions=[expression]))
            refused += 1
            continue
        handle = await create(client, ScheduleSpec(cron_expressions=[expression]))
        try:
            described = await handle.describe()
            (calendar,) = described.raw_description.schedule.spec.structured_calendar
            assert expand(calendar) == expected, expression
            compared += 1
        finally:
            await handle.delete()
    assert compared >= 40
    assert refused >= 5


async def matching(
    client: Client, spec: ScheduleSpec, start: datetime, end: datetime
) -> list[datetime]:
    """Temporal's own matching times of a spec (start exclusive, end inclusive)."""
    handle = await create(client, spec)
    try:
        begin, finish = Timestamp(), Timestamp()
        begin.FromDatetime(start)
        finish.FromDatetime(end)
        answer = await client.workflow_service.list_schedule_matching_times(
            ListScheduleMatchingTimesRequest(
                namespace=client.namespace, schedule_id=handle.id, start_time=begin, end_time=finish
            )
        )
        return [t.ToDatetime(tzinfo=UTC) for t in answer.start_time]
    finally:
        await handle.delete()


def until(times: Iterable[datetime], end: datetime) -> list[datetime]:
    out = []
    for moment in times:
        if moment > end:
            break
        out.append(moment)
    return out


# Windows around daylight-saving changes (Europe in March and October, North America in
# March and November, Lord Howe's half-hour shift in April and October) and a quiet week.
WINDOWS = [
    (datetime(2027, 3, 12, tzinfo=UTC), datetime(2027, 3, 16, tzinfo=UTC)),
    (datetime(2027, 3, 26, tzinfo=UTC), datetime(2027, 3, 30, tzinfo=UTC)),
    (datetime(2027, 4, 2, tzinfo=UTC), datetime(2027, 4, 6, tzinfo=UTC)),
    (datetime(2027, 10, 1, tzinfo=UTC), datetime(2027, 10, 5, tzinfo=UTC)),
    (datetime(2027, 10, 29, tzinfo=UTC), datetime(2027, 11, 9, tzinfo=UTC)),
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
EXPRESSIONS = ["30 2 * * *", "*/30 2 * * *", "0 1-3 * * *", "15 */2 * * *", "0 9 * * 1-5",
               "45 1 * * 0", "0 0 * * *"]  # fmt: skip


@pytest.mark.parametrize("zone", ZONES)
async def test_next_runs_match_temporals_across_daylight_saving(client: Client, zone: str) -> None:
    for expression in EXPRESSIONS:
        parsed = parse_cron(expression)
        for start, end in WINDOWS:
            spec = ScheduleSpec(cron_expressions=[expression], time_zone_name=zone)
            theirs = await matching(client, spec, start, end)
            assert until(parsed.times(start, zone), end) == theirs, (expression, zone, start)


async def test_a_berlin_0230_job_has_no_run_on_the_spring_forward_day(client: Client) -> None:
    spec = ScheduleSpec(cron_expressions=["30 2 * * *"], time_zone_name="Europe/Berlin")
    runs = await matching(
        client, spec, datetime(2027, 3, 25, tzinfo=UTC), datetime(2027, 3, 31, tzinfo=UTC)
    )
    days = [t.astimezone(ZoneInfo("Europe/Berlin")).date().isoformat() for t in runs]
    assert "2027-03-28" not in days
    assert days == ["2027-03-25", "2027-03-26", "2027-03-27", "2027-03-29", "2027-03-30"]


def _schedule(spec: dict[str, Any]) -> ScheduleSpec:
    body = {"apiVersion": "muster.io/v1alpha1", "kind": "Schedule",
            "metadata": {"name": "skips", "namespace": "dialect"},
            "spec": {**spec, "workflow": {"type": "W", "taskQueue": "q"}}}  # fmt: skip
    return desired_schedule(parse_schedule(body)).spec


async def test_a_skip_entry_with_only_a_day_skips_midnight_alone(client: Client) -> None:
    start, end = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)  # Fri-Mon
    day_only = _schedule({"cron": ["0 */6 * * *"], "skip": [{"dayOfWeek": "SAT"}]})
    saturday = [t for t in await matching(client, day_only, start, end) if t.weekday() == 5]
    assert [t.hour for t in saturday] == [6, 12, 18], "only Saturday 00:00 is skipped"
    whole_day = _schedule(
        {"cron": ["0 */6 * * *"], "skip": [{"dayOfWeek": "SAT", "hour": "*", "minute": "*"}]}
    )
    assert not [t for t in await matching(client, whole_day, start, end) if t.weekday() == 5]
