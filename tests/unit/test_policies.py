"""The policy parts of ``muster_api.v1alpha1`` and ``muster_runtime.policies`` on their own:
durations (parse, format, bad input), which
requests a policy governs (``PolicySnapshot.applies``), policy files (the field an error
names, duplicates), and the directory of people (load, members of users and groups, e-mail,
and files that are missing, not YAML or not a directory)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from muster_api.approval import PolicySnapshot
from muster_api.common import Money
from muster_api.v1alpha1 import ApproverSet, Duration, format_duration, parse_duration
from muster_runtime.policies import Directory, PolicyError, load_policy_dir, parse_policies


def table(*rows: tuple[Any, ...]) -> list[Any]:
    """One case a row; the first column is its name."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


# -- durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    table(
        ("days", "7d", timedelta(days=7)),
        ("hours", "72h", timedelta(hours=72)),
        ("hours-and-minutes", "1h30m", timedelta(minutes=90)),
        ("seconds", "90s", timedelta(seconds=90)),
        ("every-unit", "1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("surrounding-space", " 3d ", timedelta(days=3)),
        ("zero-units-beside-others", "0d5m", timedelta(minutes=5)),
        ("int-seconds", 30, timedelta(seconds=30)),
        ("float-seconds", 1.5, timedelta(seconds=1.5)),
        ("timedelta", timedelta(hours=2), timedelta(hours=2)),
    ),
)
def test_parse_duration(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    table(
        ("empty", "", "is not a duration like 7d"),
        ("blank", "   ", "is not a duration like 7d"),
        ("no-unit", "7", "is not a duration like 7d"),
        ("unknown-unit", "2w", "is not a duration like 7d"),
        ("units-out-of-order", "30m1h", "is not a duration like 7d"),
        ("space-inside", "7 d", "is not a duration like 7d"),
        ("negative-text", "-1h", "is not a duration like 7d"),
        ("iso-8601", "PT1H", "is not a duration like 7d"),
        ("zero", "0s", "must be longer than zero"),
        ("zero-days", "0d", "must be longer than zero"),
        ("negative-seconds", -5, "must be longer than zero"),
        ("zero-timedelta", timedelta(0), "must be longer than zero"),
        ("bool", True, "is not a duration like 7d"),
        ("none", None, "is not a duration like 7d"),
        ("list", ["7d"], "is not a duration like 7d"),
    ),
)
def test_parse_duration_refuses(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "text"),
    table(
        ("days", timedelta(days=7), "7d"),
        ("days-and-hours", timedelta(days=3, hours=12), "3d12h"),
        ("minutes-carry-into-hours", timedelta(minutes=90), "1h30m"),
        ("every-unit", timedelta(days=1, hours=2, minutes=3, seconds=4), "1d2h3m4s"),
        ("sub-second-dropped", timedelta(seconds=1, milliseconds=500), "1s"),
        ("zero", timedelta(0), "0s"),
    ),
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize("text", ["7d", "3d12h", "1h30m", "90s", "1d2h3m4s", "100h"])
def test_duration_round_trip(text: str) -> None:
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


class _Timed(BaseModel):
    timeout: Duration


def test_duration_in_a_model_reads_text_and_writes_it_back() -> None:
    timed = _Timed.model_validate({"timeout": "36h"})
    assert timed.timeout == timedelta(hours=36)
    assert timed.model_dump(mode="json") == {"timeout": "1d12h"}
    with pytest.raises(ValidationError, match="timeout") as bad:
        _Timed.model_validate({"timeout": "soon"})
    assert "'soon' is not a duration like 7d, 72h, 1h30m or 90s" in str(bad.value)


# -- which requests a policy governs --------------------------------------------------------


def _snapshot(name: str = "p", **spec: Any) -> PolicySnapshot:
    text = "apiVersion: muster.io/v1alpha1\nkind: ApprovalPolicy\n"
    body = {"approvers": {"groups": ["finance"]}, **spec}
    (policy,) = parse_policies(text + f"metadata: {{name: {name}}}\nspec: {body!r}\n")
    return PolicySnapshot.of(policy)


def _eur(cents: int, currency: str = "EUR") -> Money:
    return Money(amount_minor=cents, currency=currency)


THOUSAND = {"minAmount": {"amountMinor": 100_000, "currency": "EUR"}}


@pytest.mark.parametrize(
    ("applies_to", "kind", "amount", "why_not"),
    table(
        ("anything", {}, "purchase", None, None),
        ("any-kind-with-amount", {}, "purchase", _eur(5), None),
        ("listed-kind", {"kinds": ["purchase", "order"]}, "order", None, None),
        ("other-kind", {"kinds": ["vacation"]}, "purchase", None,
         "policy p governs kinds ['vacation'], not 'purchase'"),
        ("at-the-minimum", THOUSAND, "order", _eur(100_000), None),
        ("above-the-minimum", THOUSAND, "order", _eur(250_000), None),
        ("below-the-minimum", THOUSAND, "order", _eur(99_999),
         "policy p governs amounts from 1000.00 EUR, not 999.99 EUR"),
        ("no-amount", THOUSAND, "order", None,
         "policy p governs amounts from 1000.00 EUR; the request has none"),
        ("other-currency", THOUSAND, "order", _eur(900_000, "USD"),
         "policy p governs amounts from 1000.00 EUR, not 9000.00 USD"),
        ("kind-checked-first", {"kinds": ["order"], **THOUSAND}, "purchase", None,
         "policy p governs kinds ['order'], not 'purchase'"),
    ),
)  # fmt: skip
def test_applies(
    applies_to: dict[str, Any], kind: str, amount: Money | None, why_not: str | None
) -> None:
    assert _snapshot(appliesTo=applies_to).applies(kind, amount) == why_not


def test_snapshot_hash_follows_the_spec_not_the_name() -> None:
    assert _snapshot("a").sha256 == _snapshot("b").sha256
    assert _snapshot("a").sha256 != _snapshot("a", requiredApprovals=2).sha256


# -- policy files -------------------------------------------------------------------------------


def test_an_invalid_policy_names_the_file_and_the_field() -> None:
    text = (
        "apiVersion: muster.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: p}\n"
        "spec: {approvers: {users: [alice]}, timeout: soon}\n"
    )
    with pytest.raises(PolicyError, match=r"^p\.yaml: spec\.timeout: 'soon' is not a duration"):
        parse_policies(text, "p.yaml")


def test_a_policy_folder_with_a_duplicate_is_refused(tmp_path: Path) -> None:
    doc = (
        "apiVersion: muster.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: twice}\n"
        "spec: {approvers: {users: [alice]}}\n"
    )
    (tmp_path / "a.yaml").write_text(doc)
    assert set(load_policy_dir(tmp_path)) == {"twice", "default/twice"}
    (tmp_path / "b.yml").write_text(doc)
    with pytest.raises(PolicyError, match="policy default/twice is defined twice"):
        load_policy_dir(tmp_path)
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy_dir(tmp_path / "missing")


# -- the directory --------------------------------------------------------------------------


PEOPLE = """
users:
  alice: {email: alice@example.com, name: Alice, groups: [finance, team-leads]}
  bob: {email: bob@example.com, groups: [finance]}
  carol: {email: carol@example.com, groups: [managers]}
  dave: {email: dave@example.com}
"""


@pytest.fixture
def people(tmp_path: Path) -> Directory:
    path = tmp_path / "directory.yaml"
    path.write_text(PEOPLE)
    return Directory.load(path)


@pytest.mark.parametrize(
    ("approvers", "members"),
    table(
        ("users-only", ApproverSet(users=["dave", "alice"]), ["alice", "dave"]),
        ("one-group", ApproverSet(groups=["finance"]), ["alice", "bob"]),
        ("two-groups", ApproverSet(groups=["finance", "managers"]), ["alice", "bob", "carol"]),
        ("users-and-groups", ApproverSet(users=["dave"], groups=["managers"]), ["carol", "dave"]),
        ("user-also-in-group", ApproverSet(users=["alice"], groups=["finance"]), ["alice", "bob"]),
        ("unknown-group", ApproverSet(groups=["nobody"]), []),
        ("unknown-user-kept", ApproverSet(users=["zoe"]), ["zoe"]),
    ),
)
def test_members(people: Directory, approvers: ApproverSet, members: list[str]) -> None:
    assert people.members(approvers) == members


def test_email(people: Directory) -> None:
    assert people.email("alice") == "alice@example.com"
    assert people.email("zoe") is None
    assert people.users["alice"].name == "Alice"


def test_a_json_directory_loads(tmp_path: Path) -> None:
    path = tmp_path / "directory.json"
    path.write_text('{"users": {"erin": {"email": "erin@example.com", "groups": ["ops"]}}}')
    assert Directory.load(path).members(ApproverSet(groups=["ops"])) == ["erin"]


def test_an_empty_directory_file_has_nobody(tmp_path: Path) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text("")
    assert Directory.load(path).users == {}


@pytest.mark.parametrize(
    ("content", "message"),
    table(
        ("not-yaml", "users: [unclosed", "directory .*directory.yaml: while parsing"),
        ("bad-email", "users: {alice: {email: not-an-address}}", r"users\.alice\.email"),
        ("no-email", "users: {alice: {groups: [finance]}}", r"users\.alice\.email: Field required"),
        ("unknown-field", "users: {alice: {email: a@b.io, phone: '1'}}", r"users\.alice\.phone"),
        ("top-level-typo", "people: {}", "people: Extra inputs are not permitted"),
        ("a-list", "- alice", "Input should be a valid dictionary"),
    ),
)
def test_a_bad_directory_file_says_what_is_wrong(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text(content)
    with pytest.raises(PolicyError, match=message):
        Directory.load(path)


def test_a_missing_directory_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(PolicyError, match=f"directory {missing}: .*No such file"):
        Directory.load(missing)
