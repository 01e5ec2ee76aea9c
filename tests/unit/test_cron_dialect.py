"""Muster's cron dialect (muster_api.cron): which expressions are accepted and what each
refusal says; the port of Temporal's own parser (its misreadings included); the CEL rules
of the CRD agree with the parser on every accepted expression; and Temporal's next-run
arithmetic around daylight-saving changes. The agreement with the real Temporal server is
proven in tests/temporal/test_cron_dialect_temporal.py."""

from __future__ import annotations

import itertools
import random
import re
from datetime import UTC, datetime

import pytest

from muster_api import cron
from muster_api.cron import (
    CALENDAR_FIELDS,
    CRON_FIELDS,
    CronError,
    TemporalRefuses,
    field_pattern,
    field_values,
    parse_cron,
    temporal_ranges,
    temporal_reading,
)

ACCEPTED = [
    "0 9 * * 1-5",
    "*/15 * * * *",
    "0 0 1 1 *",
    "5/15 9-17 * JAN-MAR mon-fri",
    "0,30 8-18/2 * * *",
    "0 9 * * 5-7",  # Friday to Sunday: Temporal reads this one right
    "0 9 * * 7",
    "0 9 * * sun",
    "0 9 */2 * MON",  # '*/2' counts as unrestricted: both read it as AND
    "0 0 29 2 *",  # leap days only, but it does run
    "  0 9 * * *\t",
    "00 09 01 01 *",
    *cron.MACROS,
]


@pytest.mark.parametrize("expression", ACCEPTED)
def test_accepted_expressions(expression: str) -> None:
    parsed = parse_cron(expression)
    assert parsed.text == expression


REFUSED = [
    ("0 0 6 * * *", "six fields: Temporal reads the sixth as a year"),
    ("0 0 6 * * * 2030", "seven fields"),
    ("0 9 * * 1#2", "contains '#'"),
    ("0 9 * * 1 # every monday", "contains '#'"),
    ("61 * * * *", "minute 61 is outside 0-59"),
    ("not a cron", "has 3 fields"),
    ("1 2 3 4 5 6 7 8", "has 8 fields"),
    ("", "is empty"),
    ("0 9 * * 1-7", "Temporal reads day of week '1-7' as MON,TUE,WED,THU,FRI,SAT"),
    ("0 9 * * MON-7", "Temporal reads day of week 'MON-7'"),
    ("0 9 * * 1/1", "Temporal reads day of week '1/1'"),
    ("0 9 1 * MON", "both the day of the month and the day of the week"),
    ("0 9 1-7 * 1", "both the day of the month"),
    ("0 0 31 2 *", "never runs: no month in '2' has day 31"),
    ("0 9-5 * * *", "the range '9-5' runs backwards"),
    ("0 9 * * MON-SUN", "runs backwards"),
    ("*/0 * * * *", "must be at least 1"),
    ("+5 * * * *", "'+5' is not a number"),
    ("0 9 ? * *", "'?' is not a number"),
    ("0 9 L * *", "'L' is not a number"),
    ("0 9 * * Tuesday", "'Tuesday' is neither a number nor a name"),
    ("0 9 * FOO *", "'FOO' is neither a number nor a name"),
    ("@every 1h", "write it as intervals"),
    ("@reboot", "is not one of @yearly"),
    ("TZ=Europe/Berlin 0 9 * * *", "set spec.timeZone"),
    ("0 9 * * *\n", "characters other than"),
    ("0 9 * * 1\u20135", "characters other than"),  # an en dash
    ("0 9 * * 1,,2", "is not a number"),
]


@pytest.mark.parametrize(("expression", "message"), REFUSED)
def test_refused_expressions_say_why(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"'{expression}' "), "the message quotes the expression"


def test_the_port_reads_what_temporal_reads() -> None:
    # Quartz's 06:00:00 daily is 00:00 on the 6th to Temporal.
    six = temporal_reading("0 0 6 * * *")
    assert six.fields is not None
    assert six.fields["day_of_month"] == {6}
    assert six.fields["hour"] == {0}
    assert "year" not in six.fields  # '*': every year
    # '#' starts a comment: every Monday.
    nth = temporal_reading("0 9 * * 1#2")
    assert nth.fields is not None
    assert nth.fields["day_of_week"] == {1}
    assert nth.comment == "2"
    # Sunday as 7: kept in 5-7, lost in 1-7.
    assert temporal_reading("0 9 * * 5-7").fields["day_of_week"] == {0, 5, 6}  # type: ignore[index]
    assert temporal_reading("0 9 * * 1-7").fields["day_of_week"] == set(range(1, 7))  # type: ignore[index]
    # Names by prefix, and '@every'.
    assert temporal_reading("0 9 * * Tuesday").fields["day_of_week"] == {2}  # type: ignore[index]
    assert temporal_reading("@every 1h/15m").interval == "1h/15m"
    with pytest.raises(TemporalRefuses, match="Minute is not in range"):
        temporal_reading("61 * * * *")
    with pytest.raises(TemporalRefuses, match="DayOfWeek End is before Start"):
        temporal_reading("0 9 * * mon-sun")
    with pytest.raises(TemporalRefuses, match="does not have 5-7 fields"):
        temporal_reading("not a cron")


@pytest.mark.parametrize(
    ("text", "field", "values"),
    [
        ("*", "day_of_week", set(range(7))),
        ("5-7", "day_of_week", {0, 5, 6}),
        ("*/2", "day_of_week", {0, 2, 4, 6}),
        ("10/20", "second", {10, 30, 50}),
        ("JAN,jul-SEP", "month", {1, 7, 8, 9}),
        ("2027-2030/2", "year", {2027, 2029}),
    ],
)
def test_calendar_fields(text: str, field: str, values: set[int]) -> None:
    assert field_values(text, CALENDAR_FIELDS[field]) == values
    expanded = {
        v for a, b, c in temporal_ranges(text, CALENDAR_FIELDS[field]) for v in range(a, b + 1, c)
    }
    assert expanded == values, "the structured ranges mean what the field means"


def test_an_every_year_calendar_is_temporals_empty_year_list() -> None:
    assert temporal_ranges("*", CALENDAR_FIELDS["year"]) == ()


# -- the CRD's CEL rules agree with the parser ------------------------------------------------


def _item(pick: random.Random, field: cron.Field) -> str:
    low, high = field.low, field.high
    kind = pick.randrange(9)
    a, b = sorted(pick.randint(low, high) for _ in range(2))
    if kind == 0:
        return "*"
    if kind == 1:
        return f"*/{pick.randint(1, 30)}"
    if kind == 2:
        return f"{a}-{b}"
    if kind == 3:
        return f"{a}-{b}/{pick.randint(1, 9)}"
    if kind == 4:
        return f"{a}/{pick.randint(1, 9)}"
    if kind == 5 and field.names:
        names = sorted(pick.sample(range(len(field.names)), 2))
        return "-".join(field.names[i] for i in names).lower()
    if kind == 6:
        return pick.choice(["60", "32", "13", "8", "L", "?", "+5", "1#2", "FOO", "b-a", "9-1"])
    return f"{a:02d}" if pick.random() < 0.2 else str(a)


def _corpus(seed: int, count: int) -> list[str]:
    """Random expressions from every kind of item, some of them invalid."""
    pick = random.Random(seed)
    out = []
    for _ in range(count):
        fields = [
            ",".join(_item(pick, f) for _ in range(pick.choice([1, 1, 2]))) for f in CRON_FIELDS
        ]
        if pick.random() < 0.5:
            fields[2 if pick.random() < 0.5 else 4] = "*"
        out.append(" ".join(fields))
    return out


def test_cel_grammar_accepts_every_expression_the_parser_accepts() -> None:
    grammar = re.compile(cron.cron_pattern())
    both_days = re.compile(cron.BOTH_DAYS_PATTERN)
    accepted = 0
    for expression in [*ACCEPTED, *_corpus(18, 4000)]:
        try:
            parse_cron(expression)
        except CronError:
            continue
        accepted += 1
        assert grammar.fullmatch(expression), expression
        assert not both_days.fullmatch(expression), expression
    assert accepted > 100
    for expression, _ in REFUSED:
        if grammar.fullmatch(expression) and not both_days.fullmatch(expression):
            # What only the webhook can refuse (ranges, Temporal's misreadings).
            assert any(s in expression for s in ("-", "/", "31 2", "#")), expression


@pytest.mark.parametrize("field", sorted(CALENDAR_FIELDS))
def test_cel_field_rules_accept_every_field_the_parser_accepts(field: str) -> None:
    spec = CALENDAR_FIELDS[field]
    pattern = re.compile(field_pattern(spec))
    values = [str(v) for v in range(spec.low - 1, spec.high + 2)]
    values += [n.lower() for n in spec.names] + [f"{n}-{m}" for n, m in zip(spec.names,
               spec.names[1:], strict=False)]  # fmt: skip
    candidates = {*values, "*", "*/5", "*/0", "1-2", "2-1", "0-7/2", "2030-2040", "1,2", "x"}
    candidates |= {f"{a},{b}" for a, b in itertools.product(values[:5], values[-3:])}
    for text in candidates:
        try:
            field_items = cron.field_items(text, spec)
        except CronError:
            continue
        assert field_items
        assert pattern.fullmatch(text), (field, text)


def test_every_cron_field_has_a_pattern() -> None:
    for field in CRON_FIELDS:
        assert re.compile(field_pattern(field))


# -- Temporal's next run, daylight saving included -------------------------------------------


def _berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_no_run_on_the_day_clocks_go_forward() -> None:
    times = parse_cron("30 2 * * *").times(_berlin("2027-03-26T00:00+01:00"), "Europe/Berlin")
    got = [next(times) for _ in range(3)]
    assert got == [
        _berlin("2027-03-26T02:30+01:00"),
        _berlin("2027-03-27T02:30+01:00"),
        _berlin("2027-03-29T02:30+02:00"),  # 28 March 02:30 does not exist: no run
    ]


def test_the_repeated_hour_runs_once_and_may_run_late() -> None:
    once = parse_cron("30 2 * * *").times(_berlin("2027-10-31T00:00+02:00"), "Europe/Berlin")
    assert next(once) == _berlin("2027-10-31T02:30+01:00")
    assert next(once) == _berlin("2027-11-01T02:30+01:00")
    # Two times in the repeated hour: the second one an hour late (as Temporal does it).
    twice = parse_cron("*/30 2 * * *").times(_berlin("2027-10-31T00:00+02:00"), "Europe/Berlin")
    assert [next(twice) for _ in range(2)] == [
        _berlin("2027-10-31T02:00+01:00"),
        _berlin("2027-10-31T03:30+01:00"),
    ]


def test_reminders_time_like_their_schedule() -> None:
    from muster_api.v1alpha1 import Reminders  # noqa: PLC0415

    reminders = Reminders(cron="0 9 * * 1-5", time_zone="Europe/Berlin")
    friday_evening = _berlin("2027-01-08T18:00+01:00")
    assert reminders.next_after(friday_evening) == _berlin("2027-01-11T09:00+01:00")
