"""Muster's cron dialect: the five-field standard, as the Temporal server reads it.

Temporal's server parses a schedule's cron strings itself (``parseCronString`` and
``makeRange`` in ``service/worker/scheduler/calendar.go``), and reads some of the standard's
look-alikes differently from Vixie/Debian cron: a sixth field is a *year* and seven fields
start with *seconds* (so Quartz's ``0 0 6 * * *`` runs at 00:00 on the 6th), ``#`` starts
a comment (``0 9 * * 1#2`` runs every Monday), ``1-7`` as days of the week loses Sunday,
and a day of the month together with a day of the week must *both* match (the standard
runs on days that match either).

:func:`temporal_reading` is Temporal's reading, step for step. :func:`parse_cron` accepts
an expression only when it has the standard's meaning *and* Temporal reads it the same way,
and otherwise says what to write instead. :func:`field_values` and :func:`temporal_ranges`
read one field of a structured calendar with the same grammar. :func:`cel_cron_rule` and
:func:`cel_field_rule` give the CRD the same grammar as CEL rules, so the API server refuses
most mistakes even when the operator is down. :meth:`CronExpression.next_after` finds the
next time Temporal would run, daylight-saving quirks included (``compiledCalendar.next``).
"""

from __future__ import annotations

import calendar as _calendar
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import JsonValue

MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The named expressions both the standard and Temporal know, with their five fields."""

MIN_YEAR, MAX_YEAR = 2000, 2100
"""The years Temporal's calendars know (``minCalendarYear``, ``maxCalendarYear``)."""


class CronError(ValueError):
    """An expression or a calendar field Muster does not accept; the message says why."""


@dataclass(frozen=True)
class Field:
    """One field of a cron expression or a calendar."""

    key: str
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0
    digits: int = 2
    """Longest number the field takes (leading zeros included)."""

    def hint(self) -> str:
        """What the field's values look like, for messages."""
        if self.key == "day_of_week":
            return "0-7 (0 and 7 are Sunday) or SUN-SAT"
        if self.key == "month":
            return "1-12 or JAN-DEC"
        return f"{self.low}-{self.high}"


SECOND = Field("second", "second", 0, 59)
MINUTE = Field("minute", "minute", 0, 59)
HOUR = Field("hour", "hour", 0, 23)
DAY_OF_MONTH = Field("day_of_month", "day of month", 1, 31)
MONTH = Field("month", "month", 1, 12, MONTH_NAMES, 1)
DAY_OF_WEEK = Field("day_of_week", "day of week", 0, 7, DAY_NAMES)
YEAR = Field("year", "year", MIN_YEAR, MAX_YEAR, digits=4)

CRON_FIELDS = (MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
CALENDAR_FIELDS = {f.key: f for f in (SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK, YEAR)}

FIELD_EXAMPLES = "'*', '5', '1-5', '*/15', '10-50/20' or lists of those like '0,30'"


# -- one field, the standard's way ---------------------------------------------------------


def _value(text: str, field: Field, whole: str) -> int:
    upper = text.upper()
    if field.names and upper in field.names:
        return field.names.index(upper) + field.name_base
    if not text.isascii() or not text.isdigit() or len(text) > field.digits:
        if field.names and text.isalpha():
            raise CronError(
                f"{field.label} '{whole}': {text!r} is neither a number nor a name "
                f"({field.hint()}; names are the three-letter English ones)"
            )
        raise CronError(
            f"{field.label} '{whole}': {text!r} is not a number {field.hint()} "
            f"(write {FIELD_EXAMPLES})"
        )
    number = int(text)
    if not field.low <= number <= field.high:
        raise CronError(f"{field.label} {number} is outside {field.hint()}")
    return number


@dataclass(frozen=True)
class Item:
    """One comma-separated part of a field: start to end, every step."""

    start: int
    end: int
    step: int

    def values(self) -> range:
        """The values it matches (day of week 7 included: callers fold it onto 0)."""
        return range(self.start, self.end + 1, self.step)


def field_items(text: str, field: Field) -> tuple[Item, ...]:
    """A field as the standard reads it: ``*``, ``5``, ``1-5``, ``*/15``, ``5/15`` (5 to the
    end, every 15), ``1-5/2``, names for months and days of the week, lists of those."""
    if not text or text != text.strip():
        raise CronError(f"{field.label} {text!r} is empty or has spaces; write {FIELD_EXAMPLES}")
    items = []
    for part in text.split(","):
        body, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isascii() or not step_text.isdigit() or len(step_text) > field.digits:
                raise CronError(
                    f"{field.label} '{text}': the step in {part!r} must be a number (like '*/15')"
                )
            step = int(step_text)
            if step < 1:
                raise CronError(f"{field.label} '{text}': the step in {part!r} must be at least 1")
        if body == "*":
            start, end = field.low, field.high
        elif "-" in body:
            first, _, last = body.partition("-")
            start, end = _value(first, field, text), _value(last, field, text)
            if end < start:
                raise CronError(
                    f"{field.label} '{text}': the range {body!r} runs backwards "
                    f"(ranges do not wrap around; write two, like '22-23,0-2')"
                )
        else:
            start = _value(body, field, text)
            end = field.high if slash else start
        if field.key == "day_of_week" and body == "*":
            end = 6  # the standard's '*' is every day once; 7 is only Sunday's other name
        items.append(Item(start, end, step))
    return tuple(items)


def field_values(text: str, field: Field) -> frozenset[int]:
    """The values a field matches (days of the week 0-6, Sunday 0)."""
    values: set[int] = set()
    for item in field_items(text, field):
        values.update(item.values())
    if field.key == "day_of_week" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


def temporal_ranges(text: str, field: Field) -> tuple[tuple[int, int, int], ...]:
    """A calendar field as the (start, end, step) ranges Temporal's structured calendars
    take, meaning exactly what the standard means (Sunday as 7 becomes 0, correctly).

    ``*`` for the year is the empty tuple, Temporal's "every year".
    """
    if field.key == "year" and text == "*":
        return ()
    ranges: list[tuple[int, int, int]] = []
    for item in field_items(text, field):
        start, end, step = item.start, item.end, item.step
        if field.key == "day_of_week" and end == 7:
            if 7 in item.values():
                ranges.append((0, 0, 1))
                if start == 7:
                    continue
            end = 6
        ranges.append((start, end, step))
    return tuple(ranges)


# -- Temporal's reading -----------------------------------------------------------------------

_ATOI = re.compile(r"[+-]?[0-9]+")
_GO_MONTHS = tuple(_calendar.month_name[i].lower() for i in range(1, 13))
_GO_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")


@dataclass(frozen=True)
class TemporalReading:
    """What Temporal makes of a cron string."""

    fields: dict[str, frozenset[int]] | None
    """Values per field (``second`` to ``year``; ``year`` None is every year); None for
    ``@every``."""
    interval: str | None
    """The ``@every`` interval, when it is one."""
    time_zone: str
    """A ``TZ=``/``CRON_TZ=`` prefix's zone ("" without one)."""
    comment: str
    """What followed ``#``."""


class TemporalRefuses(CronError):
    """Temporal's own parser refuses the expression (its message, as the server words it)."""


def _go_value(text: str, low: int, high: int, mode: str) -> int:
    """``parseValue``: a number, or a month (3+ letters) or day (2+ letters) name prefix."""
    lowered = text.lower()
    if mode == "month" and len(text) >= 3:
        for index, name in enumerate(_GO_MONTHS):
            if name.startswith(lowered):
                if not low <= index + 1 <= high:
                    raise ValueError("out of range")
                return index + 1
    elif mode == "dow" and len(text) >= 2:
        for index, name in enumerate(_GO_DAYS):
            if name.startswith(lowered):
                if not low <= index <= high:
                    raise ValueError("out of range")
                return index
    if not _ATOI.fullmatch(text):
        raise ValueError("not a number")
    number = int(text)
    if not low <= number <= high:
        raise ValueError("out of range")
    return number


def _go_make_range(
    text: str, name: str, default: str, *, low: int, high: int, mode: str
) -> list[tuple[int, int, int]] | None:
    """``makeRange``: one field to Temporal's ranges (None: every year)."""
    text = text.strip() or default
    if text == "*" and mode == "year":
        return None
    ranges: list[tuple[int, int, int]] = []
    for whole in text.split(","):
        part, step, has_step = whole, 1, False
        if part.count("/") > 1:
            raise TemporalRefuses(f"{name} has too many slashes")
        if "/" in part:
            part, step_text = whole.split("/", 1)
            if not step_text:
                raise TemporalRefuses(f"{name} missing step value")
            if not _ATOI.fullmatch(step_text):
                raise TemporalRefuses(f'strconv.Atoi: parsing "{step_text}": invalid syntax')
            step = int(step_text)
            if step < 1:
                raise TemporalRefuses(f"{name} has invalid Step")
            has_step = True
        start, end = low, high
        if part != "*":
            if "-" in part:
                if part.count("-") > 1:
                    raise TemporalRefuses(f"{name} has too many dashes")
                first, last = part.split("-", 1)
                try:
                    start = _go_value(first, low, high, mode)
                except ValueError:
                    raise TemporalRefuses(f"{name} Start is not in range [{low}-{high}]") from None
                try:
                    end = _go_value(last, start, high, mode)
                except ValueError:
                    raise TemporalRefuses(
                        f"{name} End is before Start or not in range [{low}-{high}]"
                    ) from None
            else:
                try:
                    start = _go_value(part, low, high, mode)
                except ValueError:
                    raise TemporalRefuses(f"{name} is not in range [{low}-{high}]") from None
                if not has_step:
                    end = start
        # Temporal's handling of Sunday as 7, as written (it drops Sunday from "1-7").
        if mode == "dow" and end == 7:
            if (7 - start) % step == 0 and (step > 1 or (step == 1 and start > 1)):
                ranges.append((0, 0, 1))
                if start == 7:
                    continue
            end = 6
        ranges.append((start, end, step))
    return ranges


def _expand(ranges: Iterable[tuple[int, int, int]]) -> frozenset[int]:
    values: set[int] = set()
    for start, end, step in ranges:
        values.update(range(start, max(start, end) + 1, max(step, 1)))
    return frozenset(values)


def temporal_reading(expression: str) -> TemporalReading:
    """What Temporal's ``parseCronString`` makes of ``expression`` (raises
    :class:`TemporalRefuses` with the server's message where the server refuses it)."""
    text = expression.strip()
    zone = ""
    if text.startswith(("TZ=", "CRON_TZ=")):
        prefix, space, rest = text.partition(" ")
        if not space:
            raise TemporalRefuses("CronString has time zone but missing fields")
        text = rest
        zone = prefix.partition("=")[2]
    text, _, comment = text.partition("#")
    text, comment = text.strip(), comment.strip()
    if text.startswith("@every"):
        _, space, interval = text.partition(" ")
        if not space:
            raise TemporalRefuses("CronString does not have interval after @every")
        return TemporalReading(None, interval, "", "")
    text = MACROS.get(text, text)
    tokens = text.split()
    if len(tokens) == 5:
        minute, hour, dom, month, dow = tokens
        second, year = "", ""
    elif len(tokens) == 6:
        minute, hour, dom, month, dow, year = tokens
        second = ""
    elif len(tokens) == 7:
        second, minute, hour, dom, month, dow, year = tokens
    else:
        raise TemporalRefuses("CronString does not have 5-7 fields")
    specs = [
        ("second", second, "Second", "0", 0, 59, "int"),
        ("minute", minute, "Minute", "0", 0, 59, "int"),
        ("hour", hour, "Hour", "0", 0, 23, "int"),
        ("day_of_week", dow, "DayOfWeek", "*", 0, 7, "dow"),
        ("day_of_month", dom, "DayOfMonth", "*", 1, 31, "int"),
        ("month", month, "Month", "*", 1, 12, "month"),
        ("year", year, "Year", "*", MIN_YEAR, MAX_YEAR, "year"),
    ]
    fields: dict[str, frozenset[int]] = {}
    errors: list[str] = []
    years: frozenset[int] | None = None
    for key, value, name, default, low, high, mode in specs:
        try:
            ranges = _go_make_range(value, name, default, low=low, high=high, mode=mode)
        except TemporalRefuses as exc:
            errors.append(str(exc))
            continue
        if key == "year":
            years = None if ranges is None else _expand(ranges)
        else:
            fields[key] = _expand(ranges or [])
    if errors:
        raise TemporalRefuses(", ".join(errors))
    if years is not None:
        fields["year"] = years
    return TemporalReading(fields, None, zone, comment)


# -- the dialect Muster accepts -----------------------------------------------------------------


def _describe(values: frozenset[int], field: Field) -> str:
    names = field.names
    shown = [
        names[v - field.name_base] if names and 0 <= v - field.name_base < len(names) else str(v)
        for v in sorted(values)
    ]
    return ",".join(shown) if shown else "nothing"


@dataclass(frozen=True)
class CronExpression:
    """A cron expression Muster accepts, with the values each field matches."""

    text: str
    minute: frozenset[int]
    hour: frozenset[int]
    day_of_month: frozenset[int]
    month: frozenset[int]
    day_of_week: frozenset[int]

    def matches(self, moment: datetime) -> bool:
        """Whether a wall-clock time matches (seconds must be 0)."""
        return (
            moment.second == 0
            and moment.minute in self.minute
            and moment.hour in self.hour
            and moment.day in self.day_of_month
            and moment.month in self.month
            and (moment.weekday() + 1) % 7 in self.day_of_week
        )

    def next_after(self, moment: datetime, time_zone: str) -> datetime | None:
        """The first time strictly after ``moment`` (aware) at which Temporal would run the
        expression in ``time_zone``, in UTC; None when there is none before 2101.

        Temporal's own arithmetic (``compiledCalendar.next``): a time that does not exist
        because clocks go forward does not run that day; on the day clocks go back, a time
        in the repeated hour runs once, and further times in that hour may run an hour late.
        """
        return _next_time(self, ZoneInfo(time_zone), moment)

    def times(self, after: datetime, time_zone: str) -> Iterator[datetime]:
        """Every run after ``after`` (UTC), as :meth:`next_after` finds them."""
        zone = ZoneInfo(time_zone)
        current = _next_time(self, zone, after)
        while current is not None:
            yield current
            current = _next_time(self, zone, current)


def _refuse(expression: str, why: str) -> CronError:
    return CronError(f"'{expression}' {why}")


SIX_FIELDS = (
    "has six fields: Temporal reads the sixth as a year, so a Quartz-style '0 0 6 * * *' "
    "would run at 00:00 on the 6th of each month, not daily at 06:00:00. Write five fields "
    "(minute hour day-of-month month day-of-week), or use calendars for seconds or years"
)
SEVEN_FIELDS = (
    "has seven fields (second minute hour day-of-month month day-of-week year), which "
    "Temporal reads differently from Quartz (no '?', 'L', 'W' or '#'). Write five fields "
    "(minute hour day-of-month month day-of-week), or use calendars for seconds or years"
)
HASH = (
    "contains '#': Temporal treats everything after '#' as a comment (so '0 9 * * 1#2' runs "
    "every Monday, not on the second Monday). For an n-th weekday use calendars, e.g. "
    "{dayOfWeek: MON, dayOfMonth: 8-14, hour: '9'} for the second Monday"
)
EVERY = "uses '@every': write it as intervals, e.g. intervals: [{every: 1h, offset: 15m}]"
ZONE_PREFIX = "starts with a time zone: set spec.timeZone (or reminders.timeZone) instead"
BOTH_DAYS = (
    "restricts both the day of the month and the day of the week: standard cron runs on days "
    "that match either, Temporal only on days that match both. Write two expressions (one "
    "per field) to run on either, or a calendar to run when both match"
)


_FOREIGN = re.compile(r"[^\x21-\x7e \t]")


def parse_cron(expression: str) -> CronExpression:
    """Accept ``expression`` when it is a five-field cron expression (or @hourly ...
    @yearly) that Temporal reads exactly as the standard does; raise :class:`CronError`
    saying what is wrong and what to write otherwise."""
    text = expression.strip(" \t")
    if _FOREIGN.search(expression):
        raise _refuse(
            expression, "has characters other than ASCII letters, digits, punctuation and spaces"
        )
    if not text:
        raise _refuse(expression, "is empty; write five fields like '0 9 * * 1-5'")
    if "#" in text:
        raise _refuse(expression, HASH)
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise _refuse(expression, ZONE_PREFIX)
    if text.startswith("@every"):
        raise _refuse(expression, EVERY)
    if text.startswith("@"):
        if text not in MACROS:
            raise _refuse(expression, f"is not one of {', '.join(MACROS)} (nor five cron fields)")
        text = MACROS[text]
    tokens = text.split()
    if len(tokens) == 6:
        raise _refuse(expression, SIX_FIELDS)
    if len(tokens) == 7:
        raise _refuse(expression, SEVEN_FIELDS)
    if len(tokens) != 5:
        raise _refuse(
            expression,
            f"has {len(tokens)} field{'s' if len(tokens) != 1 else ''}; write five: minute "
            "hour day-of-month month day-of-week, like '0 9 * * 1-5'",
        )
    values: dict[str, frozenset[int]] = {}
    for field, token in zip(CRON_FIELDS, tokens, strict=True):
        try:
            values[field.key] = field_values(token, field)
        except CronError as exc:
            raise _refuse(expression, f"is not valid: {exc}") from None
    dom, dow = tokens[2], tokens[4]
    if not dom.startswith("*") and not dow.startswith("*"):
        raise _refuse(expression, BOTH_DAYS)
    try:
        reading = temporal_reading(expression)
    except TemporalRefuses as exc:
        raise _refuse(expression, f"is refused by Temporal: {exc}") from None
    assert reading.fields is not None  # @every was refused above
    for field, token in zip(CRON_FIELDS, tokens, strict=True):
        theirs = reading.fields[field.key]
        if theirs != values[field.key]:
            raise _refuse(
                expression,
                f"would not do what it says: Temporal reads {field.label} '{token}' as "
                f"{_describe(theirs, field)}, the standard as "
                f"{_describe(values[field.key], field)}"
                + (". Write '*' or '0-6' for every day" if field.key == "day_of_week" else ""),
            )
    if reading.fields["second"] != {0} or "year" in reading.fields:
        raise _refuse(expression, "would not run on whole minutes in every year")
    if values["day_of_week"] == frozenset(range(7)):
        longest = max(29 if m == 2 else _calendar.monthrange(2001, m)[1] for m in values["month"])
        if min(values["day_of_month"]) > longest:
            raise _refuse(
                expression,
                f"never runs: no month in '{tokens[3]}' has day {min(values['day_of_month'])}",
            )
    return CronExpression(
        text=expression,
        minute=values["minute"],
        hour=values["hour"],
        day_of_month=values["day_of_month"],
        month=values["month"],
        day_of_week=values["day_of_week"],
    )


# -- Temporal's next matching time ------------------------------------------------------------


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def _go_date(zone: ZoneInfo, y: int, mo: int, d: int, *clock: int) -> datetime:
    """Go's ``time.Date`` in a zone (as UTC): out-of-range parts roll over; a wall time
    that happens twice gets the offset in effect at ``wall - offset(wall as UTC)``, one
    that does not exist moves by the size of the gap."""
    h, mi, s = clock
    wall = datetime(y, mo, 1, tzinfo=UTC) + timedelta(days=d - 1, hours=h, minutes=mi, seconds=s)
    guess = wall - _offset(wall, zone)
    return wall - _offset(guess, zone)


def _hour(instant: datetime, zone: ZoneInfo) -> int:
    return instant.astimezone(zone).hour


def _weekday(instant: datetime, zone: ZoneInfo) -> int:
    return (instant.astimezone(zone).weekday() + 1) % 7


def _days_in_month(month: int, year: int) -> int:
    # Go's daysInMonth answers for month 13 too (the day is 1 then, so any answer >= 1 does).
    return _calendar.monthrange(year, month)[1] if month <= 12 else 31


def _next_time(cron: CronExpression, zone: ZoneInfo, after: datetime) -> datetime | None:
    """``compiledCalendar.next``, ported line for line (``second`` is always 0 and every
    year matches)."""
    after = after.astimezone(UTC)  # aware arithmetic below must be on instants
    local = after.astimezone(zone)
    y, mo, d = local.year, local.month, local.day
    h, m, s = local.hour, local.minute, local.second
    hour = timedelta(hours=1)
    dst = timedelta(0)
    if _hour(after - hour, zone) == h:
        dst = hour  # in the second copy of an hour that clocks went back over
    s += 1
    while True:
        if s >= 60:
            m, s = m + 1, 0
        if m >= 60:
            previous = _go_date(zone, y, mo, d, h, 0, 0)
            h, m = h + 1, 0
            following = _go_date(zone, y, mo, d, h, 0, 0)
            if not dst and following - previous > hour:
                h -= 1
                dst = hour
            else:
                dst = timedelta(0)
        if h >= 24:
            d, h = d + 1, 0
        if d > _days_in_month(mo, y):
            mo, d = mo + 1, 1
        if mo > 12:
            y, mo = y + 1, 1
        if y > MAX_YEAR:
            return None
        restart = False
        while mo not in cron.month:
            mo, d, h, m, s = mo + 1, 1, 0, 0, 0
            dst = timedelta(0)
            if mo > 12:
                restart = True
                break
        if restart:
            continue
        while d not in cron.day_of_month or (
            _weekday(_go_date(zone, y, mo, d, h, m, s), zone) not in cron.day_of_week
        ):
            d, h, m, s = d + 1, 0, 0, 0
            dst = timedelta(0)
            if d > _days_in_month(mo, y):
                restart = True
                break
        if restart:
            continue
        while h not in cron.hour:
            h, m, s = h + 1, 0, 0
            dst = timedelta(0)
            if h >= 24:
                restart = True
                break
        if restart:
            continue
        while m not in cron.minute:
            m, s = m + 1, 0
            if m >= 60:
                restart = True
                break
        if restart:
            continue
        while s != 0:
            s += 1
            if s >= 60:
                restart = True
                break
        if restart:
            continue
        found = _go_date(zone, y, mo, d, h, m, s)
        if _hour(found, zone) != h:
            # A wall time that clocks jumped over: Temporal moves on to the next hour.
            h, m, s = h + 1, 0, 0
            continue
        return found + dst


# -- the same grammar as CEL rules for the CRD --------------------------------------------------


def _numbers(low: int, high: int, digits: int) -> str:
    """A regular expression for the numbers low..high (leading zeros allowed up to
    ``digits`` characters)."""
    if digits == 4:
        assert (low, high) == (MIN_YEAR, MAX_YEAR)
        return "20[0-9][0-9]|2100"
    parts = []
    if low <= 9:
        first = max(low, 0)
        last = min(high, 9)
        parts.append(f"0?[{first}-{last}]" if first != last else f"0?{first}")
    tens_full = [t for t in range(1, 10) if t * 10 >= low and t * 10 + 9 <= high]
    if tens_full:
        lo, hi = tens_full[0], tens_full[-1]
        parts.append(f"[{lo}-{hi}][0-9]" if lo != hi else f"{lo}[0-9]")
    top = high // 10
    if top >= 1 and top not in tens_full:
        parts.append(f"{top}[0-{high % 10}]" if high % 10 else f"{top}0")
    return "|".join(parts)


def field_pattern(field: Field) -> str:
    """An unanchored regular expression (RE2 and Python agree on it) for one field."""
    value = _numbers(field.low, field.high, field.digits)
    if field.names:
        value += "|(?i:" + "|".join(n.lower() for n in field.names) + ")"
    step = "[1-9]" + (f"[0-9]{{0,{field.digits - 1}}}" if field.digits > 1 else "")
    item = rf"(?:\*|(?:{value})(?:-(?:{value}))?)(?:/(?:0*{step}))?"
    return rf"{item}(?:,{item})*"


def cron_pattern() -> str:
    """An unanchored regular expression for five cron fields or a macro."""
    fields = r"[ \t]+".join(f"(?:{field_pattern(f)})" for f in CRON_FIELDS)
    macros = "|".join(re.escape(m) for m in MACROS)
    return rf"[ \t]*(?:{fields}|{macros})[ \t]*"


def _cel_string(pattern: str) -> str:
    return "'" + pattern.replace("\\", "\\\\").replace("'", "\\'") + "'"


CRON_RULE_MESSAGE = (
    "must be five cron fields as Temporal reads them (minute 0-59, hour 0-23, day of month "
    "1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT; like '0 9 * * 1-5'; no seconds "
    "or year field, no '#') or one of @hourly, @daily, @weekly, @monthly, @yearly; see "
    "kubectl explain schedule.spec.cron"
)


BOTH_DAYS_PATTERN = r"[ \t]*\S+[ \t]+\S+[ \t]+[^*\s]\S*[ \t]+\S+[ \t]+[^*\s]\S*[ \t]*"
"""Five fields whose day of month and day of week both do not start with '*'."""


def cel_cron_rules() -> list[JsonValue]:
    """``x-kubernetes-validations`` for one cron string (the grammar, and the rule that
    the two day fields are not both restricted)."""
    both = BOTH_DAYS_PATTERN
    return [
        {
            "rule": f"self.matches({_cel_string('^(?:' + cron_pattern() + ')$')})",
            "messageExpression": f'"\'" + self + "\' {CRON_RULE_MESSAGE}"',
        },
        {
            "rule": f"!self.matches({_cel_string('^' + both + '$')})",
            "messageExpression": f'"\'" + self + "\' {BOTH_DAYS}"',
        },
    ]


def cel_field_rules(field: Field) -> list[JsonValue]:
    """``x-kubernetes-validations`` for one calendar field."""
    return [
        {
            "rule": f"self.matches({_cel_string('^(?:' + field_pattern(field) + ')$')})",
            "messageExpression": (
                f'"{field.label} \'" + self + "\' is not {field.hint()} '
                f'written as {FIELD_EXAMPLES}"'
            ),
        }
    ]
