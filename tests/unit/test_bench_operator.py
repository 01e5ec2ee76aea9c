"""bench_operator's Schedules never fire while it runs: their daily hour is twelve hours
from the bench's start (a fixed hour fired during runs made in it, and each firing's status
write was counted as an idle write)."""

from __future__ import annotations

import datetime as dt

from bench.bench_operator import quiet_hour, spec


def test_the_schedules_hour_is_twelve_hours_away() -> None:
    assert quiet_hour(dt.datetime(2026, 12, 7, 3, 35, tzinfo=dt.UTC)) == 15
    assert quiet_hour(dt.datetime(2026, 12, 7, 15, 0, tzinfo=dt.UTC)) == 3
    assert quiet_hour(dt.datetime(2026, 12, 7, 23, 59, tzinfo=dt.UTC)) == 11
    minute, hour, *rest = spec(7)["cron"][0].split()
    assert (minute, rest) == ("7", ["*", "*", "*"])
    assert abs(int(hour) - dt.datetime.now(dt.UTC).hour) % 24 in (11, 12, 13)
