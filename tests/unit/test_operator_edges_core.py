"""The reconcile core at the edges the API server admits (issue 18), without a cluster:
values that overflow are invalid specs naming the problem, ``remainingActions: 0`` is a
schedule with no runs left, condition messages are bounded, the schedules status records
are read back (also from a status an earlier operator wrote), and ``deletionPolicy`` is
read from a spec that is otherwise invalid."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from muster_operator.policies import parse_policy
from muster_operator.reconcile import (
    MESSAGE_LIMIT,
    Owned,
    SpecError,
    Want,
    bounded,
    classify,
    deletion_policy,
    desired_schedule,
    invalid_spec_note,
    merge_conditions,
    parse_backfill,
    parse_schedule,
    recorded_schedules,
)

WORKFLOW = {"type": "W", "taskQueue": "q"}


def document(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "x", "namespace": "n"},
        "spec": {"cron": ["0 6 * * *"], "workflow": WORKFLOW, **spec},
    }


def test_an_overflowing_duration_is_an_invalid_spec() -> None:
    with pytest.raises(SpecError, match=r"at most 36500d"):
        parse_schedule(document({"jitter": "9999999999d"}))
    with pytest.raises(SpecError, match=r"at most 36500d"):
        parse_policy(
            {
                "apiVersion": "muster.io/v1alpha1",
                "kind": "ApprovalPolicy",
                "metadata": {"name": "p", "namespace": "n"},
                "spec": {"approvers": {"users": ["a"]}, "timeout": "9999999999d"},
            }
        )


def test_a_time_outside_utcs_years_is_an_invalid_spec() -> None:
    resource = parse_schedule(document({"startAt": "0001-01-01T00:00:00+01:00"}))
    with pytest.raises(SpecError, match=r"startAt: .* is out of range in UTC"):
        desired_schedule(resource)


def test_a_backfill_outside_utcs_years_is_refused() -> None:
    text = '{"token": "b", "startAt": "0001-01-01T00:00:00+01:00", "endAt": "2026-01-01T00:00:00Z"}'
    with pytest.raises(SpecError, match=r"muster.io/backfill startAt: .* is out of range"):
        parse_backfill(text)


def test_no_remaining_actions_is_an_invalid_spec() -> None:
    with pytest.raises(SpecError, match=r"remainingActions"):
        parse_schedule(document({"remainingActions": 0}))
    state = desired_schedule(parse_schedule(document({"remainingActions": 3}))).state
    assert (state.limited_actions, state.remaining_actions) == (True, 3)
    state = desired_schedule(parse_schedule(document({}))).state
    assert (state.limited_actions, state.remaining_actions) == (False, 0)


def test_messages_are_bounded() -> None:
    long = "x" * 50_000
    assert len(bounded(long)) == MESSAGE_LIMIT
    assert bounded(long).endswith("more characters in the operator's log)")
    assert bounded("short") == "short"
    assert len(classify(ValueError(long)).message) == MESSAGE_LIMIT
    assert len(classify(SpecError(long)).message) == MESSAGE_LIMIT
    assert len(invalid_spec_note("n/x", long)) == 400
    merged = merge_conditions(
        [], [Want("Ready", "False", "InvalidSpec", long)], datetime.now(UTC), 1
    )
    assert len(merged[0]["message"]) == MESSAGE_LIMIT


def test_a_hand_edited_condition_starts_afresh() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    broken = [{"type": "Ready", "status": "True", "lastTransitionTime": "yesterday"}]
    merged = merge_conditions(broken, [Want("Ready", "True", "Synced")], now, 2)
    assert merged[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_recorded_schedules_come_from_status() -> None:
    status = {
        "ownedSchedules": [
            {"scheduleId": "n.a", "namespace": "default"},
            {"scheduleId": "n.a", "namespace": "default"},
            {"scheduleId": "n.b", "namespace": "other"},
            {"scheduleId": "", "namespace": "default"},
            "nonsense",
        ],
        "scheduleId": "ignored",
        "temporalNamespace": "default",
    }
    assert recorded_schedules(status) == [Owned("n.a", "default"), Owned("n.b", "other")]
    assert recorded_schedules({"ownedSchedules": []}) == []
    # Written by an operator that did not record them: its one schedule.
    legacy = {"scheduleId": "n.a", "temporalNamespace": "default"}
    assert recorded_schedules(legacy) == [Owned("n.a", "default")]
    assert recorded_schedules({}) == []
    assert str(Owned("n.a", "default")) == "default/n.a"
    assert Owned("n.a", "default").as_status() == {"scheduleId": "n.a", "namespace": "default"}


def test_deletion_policy_is_read_from_any_spec() -> None:
    assert deletion_policy({"spec": {"deletionPolicy": "Orphan", "jitter": "9999999999d"}}) == (
        "Orphan"
    )
    assert deletion_policy({"spec": {"deletionPolicy": "Delete"}}) == "Delete"
    assert deletion_policy({"spec": {}}) == "Delete"
    assert deletion_policy({}) == "Delete"
