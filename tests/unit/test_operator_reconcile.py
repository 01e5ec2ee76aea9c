"""The operator's pure reconcile core: resources → desired Temporal state, without a cluster."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.api.schedule.v1 import Schedule as ScheduleProto
from temporalio.client import (
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    ScheduleRange,
)

from muster_api import v1alpha1
from muster_api.search_attributes import pending_approvals_query
from muster_api.v1alpha1 import REMINDERS_ANNOTATION, ApprovalPolicy
from muster_operator import crdgen
from muster_operator.policies import (
    parse_policy,
    policy_document,
    policy_key,
    reminder_schedule,
)
from muster_operator.reconcile import (
    SpecError,
    Want,
    calendar_ranges,
    desired_schedule,
    fingerprint,
    merge_conditions,
    parse_backfill,
    parse_schedule,
    request_id,
    schedule_conditions,
    schedule_id,
    schedule_memo,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def schedule(spec: dict[str, Any], name: str = "report", namespace: str = "team-a") -> Any:
    body = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": namespace, "generation": 3},
        "spec": spec,
    }
    return parse_schedule(body)


WORKFLOW = {"type": "DailyReport", "taskQueue": "muster-scheduling"}


# -- calendar fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        ("*", "minute", [(0, 59, 1)]),
        ("5", "hour", [(5, 5, 1)]),
        ("1-5", "day_of_week", [(1, 5, 1)]),
        ("MON-FRI", "day_of_week", [(1, 5, 1)]),
        ("sun", "day_of_week", [(0, 0, 1)]),
        ("7", "day_of_week", [(0, 0, 1)]),
        ("*/15", "minute", [(0, 59, 15)]),
        ("10/20", "second", [(10, 59, 20)]),
        ("JAN,JUL-SEP", "month", [(1, 1, 1), (7, 9, 1)]),
        ("0,30", "minute", [(0, 0, 1), (30, 30, 1)]),
        ("1-31/2", "day_of_month", [(1, 31, 2)]),
    ],
)
def test_calendar_fields_become_temporal_ranges(
    text: str, field: str, expected: list[tuple[int, int, int]]
) -> None:
    assert calendar_ranges(text, field) == tuple(ScheduleRange(a, b, s) for a, b, s in expected)


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("60", "minute", "outside 0-59"),
        ("0", "day_of_month", "outside 1-31"),
        ("5-1", "hour", "runs backwards"),
        ("FOO", "month", "neither a number nor a name"),
        ("*/0", "minute", "at least 1"),
        ("1..5", "hour", "is not a number"),
        ("2150", "year", "outside 2000-2100"),
    ],
)
def test_bad_calendar_fields_say_what_is_wrong(text: str, field: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        calendar_ranges(text, field)


# -- the desired schedule --------------------------------------------------------------------


def test_desired_schedule_carries_spec_action_policy_and_state() -> None:
    resource = schedule(
        {
            "cron": ["0 6 * * *"],
            "intervals": [{"every": "5m", "offset": "1m"}],
            "calendars": [{"hour": "9", "minute": "0", "dayOfWeek": "MON-FRI"}],
            "skip": [{"month": "DEC", "dayOfMonth": "25"}],
            "timeZone": "Europe/Berlin",
            "startAt": "2026-01-01T00:00:00Z",
            "endAt": "2027-01-01T00:00:00+01:00",
            "jitter": "30s",
            "policy": {"overlap": "Skip", "catchupWindow": "10m", "pauseOnFailure": True},
            "suspend": True,
            "remainingActions": 4,
            "workflow": {
                **WORKFLOW,
                "args": [{"day": "x"}, 2],
                "executionTimeout": "1h",
                "retryPolicy": {"maximumAttempts": 3, "initialInterval": "2s"},
                "memo": {"team": "a"},
                "searchAttributes": {"CustomKeywordField": "v"},
            },
        }
    )
    desired = desired_schedule(resource)
    action = desired.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "DailyReport"
    assert action.task_queue == "muster-scheduling"
    assert action.id == "team-a.report"  # the schedule id; Temporal appends the time
    assert action.args == [{"day": "x"}, 2]
    assert action.execution_timeout == timedelta(hours=1)
    assert action.retry_policy is not None
    assert action.retry_policy.maximum_attempts == 3
    assert action.retry_policy.initial_interval == timedelta(seconds=2)
    assert action.memo == {"team": "a"}
    attributes = {p.key.name: p.value for p in action.typed_search_attributes}
    assert attributes == {
        "MusterPattern": "schedule",
        "MusterSchedule": "team-a/report",
        "CustomKeywordField": "v",
    }

    spec = desired.spec
    assert spec.cron_expressions == ["0 6 * * *"]
    assert [(i.every, i.offset) for i in spec.intervals] == [
        (timedelta(minutes=5), timedelta(minutes=1))
    ]
    (weekday,) = spec.calendars
    assert weekday.hour == (ScheduleRange(9, 9, 1),)
    assert weekday.day_of_week == (ScheduleRange(1, 5, 1),)
    assert weekday.month == (ScheduleRange(1, 12, 1),)
    assert spec.skip[0].month == (ScheduleRange(12, 12, 1),)
    assert spec.time_zone_name == "Europe/Berlin"
    assert spec.start_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert spec.end_at == datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert spec.jitter == timedelta(seconds=30)

    assert desired.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert desired.policy.catchup_window == timedelta(minutes=10)
    assert desired.policy.pause_on_failure is True
    assert desired.state.paused is True
    assert desired.state.note == "suspended by spec.suspend"
    assert desired.state.limited_actions is True
    assert desired.state.remaining_actions == 4


def test_ids_memo_and_defaults() -> None:
    plain = schedule({"intervals": [{"every": "5m"}], "workflow": WORKFLOW})
    assert schedule_id(plain) == "team-a.report"
    assert schedule_memo(plain)["muster.io/owner"] == "team-a/report"
    desired = desired_schedule(plain)
    assert desired.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert desired.state.paused is False
    assert desired.state.limited_actions is False

    named = schedule(
        {
            "cron": ["@hourly"],
            "workflow": {**WORKFLOW, "id": "hourly-report"},
            "temporal": {"scheduleId": "legacy-report", "namespace": "reports"},
        }
    )
    assert schedule_id(named) == "legacy-report"
    action = desired_schedule(named).action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.id == "hourly-report"


def test_reserved_search_attributes_are_refused() -> None:
    with pytest.raises(SpecError, match=r"searchAttributes\.MusterPattern is set by"):
        schedule(
            {
                "cron": ["0 6 * * *"],
                "workflow": {**WORKFLOW, "searchAttributes": {"MusterPattern": "x"}},
            }
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"workflow": WORKFLOW}, "at least one of cron, intervals or calendars"),
        ({"cron": ["0 6 * * *"]}, "spec.workflow: Field required"),
        ({"cron": ["0 6 * *"], "workflow": WORKFLOW}, "cron"),
        ({"cron": ["0 6 * * *"], "timeZone": "Mars/Olympus", "workflow": WORKFLOW}, "time zone"),
        (
            {
                "cron": ["0 6 * * *"],
                "startAt": "2026-02-01T00:00:00Z",
                "endAt": "2026-01-01T00:00:00Z",
                "workflow": WORKFLOW,
            },
            "endAt",
        ),
        ({"intervals": [{"every": "0s"}], "workflow": WORKFLOW}, "every"),
        ({"cron": ["0 6 * * *"], "workflow": WORKFLOW, "colour": "red"}, "colour"),
        # The late refusals of issue 18, now refused by the same core the webhook runs:
        ({"cron": ["not a cron"], "workflow": WORKFLOW}, r"spec.cron\[0\]: 'not a cron' has 3"),
        ({"cron": ["61 * * * *"], "workflow": WORKFLOW}, "minute 61 is outside 0-59"),
        ({"cron": ["0 0 0 1 1 1 2030 5"], "workflow": WORKFLOW}, "has 8 fields"),
        ({"cron": ["0 0 6 * * *"], "workflow": WORKFLOW}, "reads the sixth as a year"),
        ({"cron": ["0 0 6 * * * 2030"], "workflow": WORKFLOW}, "has seven fields"),
        ({"cron": ["0 9 * * 1#2"], "workflow": WORKFLOW}, "'#': Temporal treats"),
        ({"cron": ["0 9 * * 1-7"], "workflow": WORKFLOW}, "Temporal reads day of week '1-7'"),
        ({"cron": ["0 9 1 * MON"], "workflow": WORKFLOW}, "both the day of the month"),
        ({"cron": ["@every 1h"], "workflow": WORKFLOW}, "write it as intervals"),
        ({"cron": ["0 6 * * *"], "timeZone": "+05:00", "workflow": WORKFLOW}, "UTC offset"),
        ({"cron": ["0 6 * * *"], "timeZone": "Local", "workflow": WORKFLOW}, "'Local' is not"),
        ({"calendars": [{"hour": "25"}], "workflow": WORKFLOW}, "hour 25 is outside 0-23"),
        (
            {"calendars": [{"dayOfWeek": "FUNDAY"}], "workflow": WORKFLOW},
            r"spec.calendars\[0\].dayOfWeek: day of week 'FUNDAY'",
        ),
        (
            {"intervals": [{"every": "1h", "offset": "1h"}], "workflow": WORKFLOW},
            "offset must be shorter than every",
        ),
        ({"cron": ["0 6 * * *"], "remainingActions": 0, "workflow": WORKFLOW}, "equal to 1"),
        ({"cron": ["0 6 * * *"], "jitter": "9999999999d", "workflow": WORKFLOW}, "36500d"),
        ({"cron": ["0 6 * * *"], "jitter": "36501d", "workflow": WORKFLOW}, "at most 36500d"),
    ],
)
def test_invalid_specs_are_refused_with_the_field_named(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        schedule(spec)


@pytest.mark.parametrize(
    ("name", "namespace", "accepted"),
    [
        ("a" * 64, "team-a", True),  # longer than a label: fine, it is an object name
        ("daily.report", "team-a", True),  # dots: fine
        ("a" * 224, "team-a", True),  # "team-a." + 224 = 231 characters
        ("a" * 226, "team-a", False),  # 233: the id would not fit Temporal's columns
    ],
)
def test_names_are_refused_only_when_the_schedule_id_cannot_fit(
    name: str, namespace: str, accepted: bool
) -> None:
    spec = {"cron": ["0 6 * * *"], "workflow": WORKFLOW}
    if accepted:
        resource = schedule(spec, name=name, namespace=namespace)
        assert schedule_id(resource) == f"{namespace}.{name}"
        assert len(f"temporal-sys-scheduler:{schedule_id(resource)}") <= 255
        return
    with pytest.raises(SpecError, match=r"metadata\.name: the Temporal schedule id"):
        schedule(spec, name=name, namespace=namespace)
    # Its own schedule id lifts the limit (the owner marker still fits 255 characters).
    named = {**spec, "temporal": {"scheduleId": "short"}}
    assert schedule_id(schedule(named, name=name, namespace=namespace)) == "short"


def test_a_policy_name_must_leave_room_for_its_reminder_schedule_id() -> None:
    spec: dict[str, Any] = {
        "approvers": {"users": ["ana"]},
        "reminders": {"cron": "0 9 * * 1-5"},
    }
    body: dict[str, Any] = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "ApprovalPolicy",
        "metadata": {"name": "p" * 71, "namespace": "team-a"},
        "spec": spec,
    }
    policy = parse_policy(body)  # 71 characters: fine
    reminders = reminder_schedule(policy, "q")
    assert reminders is not None
    assert schedule_id(reminders) == f"team-a.{'p' * 71}.reminders"
    with pytest.raises(SpecError, match=r"metadata\.name: the Temporal schedule id of the remind"):
        parse_policy({**body, "metadata": {"name": "p" * 216, "namespace": "team-a"}})
    with pytest.raises(SpecError, match=r"spec.reminders.cron: '0 9 \* \* 1#2' contains '#'"):
        parse_policy({**body, "spec": {**spec, "reminders": {"cron": "0 9 * * 1#2"}}})


# -- drift, conditions, requests -------------------------------------------------------------


def test_fingerprint_ignores_countdown_and_notes_but_not_edits() -> None:
    proto = ScheduleProto()
    proto.spec.cron_string.append("0 6 * * *")
    proto.state.remaining_actions = 5
    proto.state.notes = "written by the operator"
    base = fingerprint(proto)
    proto.state.remaining_actions = 4
    proto.state.notes = "someone wrote a note"
    assert fingerprint(proto) == base
    proto.spec.cron_string[0] = "0 7 * * *"
    assert fingerprint(proto) != base


def test_conditions_keep_their_transition_time_until_status_flips() -> None:
    synced = Want("Synced", "True", "Synced", "ok")
    first = merge_conditions([], schedule_conditions(synced, False, 1, "q"), NOW, 1)
    by_type = {c["type"]: c for c in first}
    assert set(by_type) == {"Ready", "Synced", "Suspended", "WorkerAvailable"}
    assert by_type["Ready"]["status"] == "True"
    assert by_type["WorkerAvailable"]["reason"] == "PollersPresent"
    assert by_type["Suspended"]["status"] == "False"

    later = NOW + timedelta(minutes=5)
    same = merge_conditions(first, schedule_conditions(synced, False, 0, "q"), later, 2)
    by_type = {c["type"]: c for c in same}
    assert by_type["Ready"]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert by_type["Ready"]["observedGeneration"] == 2
    assert by_type["WorkerAvailable"]["status"] == "False"
    assert by_type["WorkerAvailable"]["lastTransitionTime"] == "2026-11-25T12:05:00Z"
    assert "no worker polls task queue q" in by_type["WorkerAvailable"]["message"]

    down = Want("Synced", "False", "TemporalUnavailable", "cannot reach Temporal at x")
    failed = {
        c["type"]: c
        for c in merge_conditions(same, schedule_conditions(down, True, None, "q"), later, 2)
    }
    assert failed["Ready"]["reason"] == "TemporalUnavailable"
    assert failed["Ready"]["message"] == "cannot reach Temporal at x"
    assert failed["WorkerAvailable"]["status"] == "Unknown"
    assert failed["Suspended"]["reason"] == "SuspendedBySpec"


def test_backfill_annotation_parses_or_says_how_to_write_it() -> None:
    request = parse_backfill(
        json.dumps(
            {"token": "b1", "startAt": "2026-11-01T00:00:00Z", "endAt": "2026-11-02T00:00:00Z"}
        )
    )
    assert request.token == "b1"
    assert request.overlap == "AllowAll"
    with pytest.raises(SpecError, match="write it like"):
        parse_backfill('{"token": "b1"}')
    with pytest.raises(SpecError, match="write it like"):
        parse_backfill("last tuesday")
    with pytest.raises(SpecError, match="endAt must be after startAt"):
        parse_backfill(
            '{"token": "b", "startAt": "2026-11-02T00:00:00Z", "endAt": "2026-11-01T00:00:00Z"}'
        )


def test_request_ids_are_stable_per_token() -> None:
    assert request_id("s", "trigger", "t1") == request_id("s", "trigger", "t1")
    assert request_id("s", "trigger", "t1") != request_id("s", "trigger", "t2")
    assert request_id("s", "trigger", "t1") != request_id("s", "backfill", "t1")


# -- approval policies -----------------------------------------------------------------------


def large_orders(**changes: Any) -> ApprovalPolicy:
    body = yaml.safe_load((ROOT / "examples/policies/large-orders.yaml").read_text())
    body["metadata"]["namespace"] = "shop"
    body["spec"].update(changes)
    for key, value in changes.items():
        if value is None:
            del body["spec"][key]
    return parse_policy(body)


def test_policy_document_is_what_the_workers_load() -> None:
    policy = large_orders()
    assert policy_key(policy) == "shop.large-orders.yaml"
    document = policy_document(policy)
    annotations = document["metadata"]["annotations"]
    assert annotations[REMINDERS_ANNOTATION] == "schedule"
    assert len(annotations["muster.io/sha256"]) == 64
    reloaded = ApprovalPolicy.model_validate(document)
    assert reloaded.spec == policy.spec
    # The same spec always hashes the same; a changed one does not.
    assert policy_document(large_orders())["metadata"]["annotations"] == annotations
    changed = large_orders(timeout="3d")
    assert policy_document(changed)["metadata"]["annotations"] != annotations


def test_reminder_schedule_follows_the_policy() -> None:
    reminders = reminder_schedule(large_orders(), "muster-scheduling")
    assert reminders is not None
    assert schedule_id(reminders) == "shop.large-orders.reminders"
    desired = desired_schedule(reminders)
    assert desired.spec.cron_expressions == ["0 9 * * 1-5"]
    assert desired.spec.time_zone_name == "Europe/Berlin"
    action = desired.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "ApprovalReminders"
    assert action.args == [{"policy": "large-orders", "namespace": "shop"}]

    quiet = large_orders(reminders=None)
    assert reminder_schedule(quiet, "muster-scheduling") is None
    assert reminder_schedule(quiet, "muster-scheduling", force=True) is not None


# -- generated CRDs --------------------------------------------------------------------------


def _walk(node: Any, path: str = "") -> list[str]:
    """Paths of everything a structural schema may not contain."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            forbidden = {"$ref", "anyOf", "oneOf", "allOf", "$defs", "definitions", "title"}
            # "title" under "properties" is a field called title, not a keyword.
            if key in forbidden and not (key == "title" and path.endswith("properties")):
                found.append(f"{path}/{key}")
            found += _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _walk(value, f"{path}/{index}")
    return found


def test_generated_crds_are_structural_and_committed() -> None:
    generated = crdgen.crds()
    assert set(generated) == {
        "muster.io_schedules.yaml",
        "muster.io_approvalpolicies.yaml",
        "muster.io_workerdeployments.yaml",
    }
    for file_name, document in generated.items():
        (version,) = document["spec"]["versions"]
        schema = version["schema"]["openAPIV3Schema"]
        assert _walk(schema) == [], file_name
        assert version["subresources"]["status"] == {}
        # Only a WorkerDeployment scales (an autoscaler scales its current build).
        assert ("scale" in version["subresources"]) == ("workerdeployments" in file_name)
        assert document["spec"]["names"]["categories"] == ["muster"]
        committed = (ROOT / "charts/muster/files/crds" / file_name).read_text()
        assert committed == crdgen.render(document), f"{file_name}: run make generate"

    schedules = generated["muster.io_schedules.yaml"]["spec"]
    columns = {
        c["name"]: c.get("priority", 0)
        for c in schedules["versions"][0]["additionalPrinterColumns"]
    }
    assert list(columns) == [
        "Schedule",
        "Time Zone",
        "Suspended",
        "Ready",
        "Reason",
        "Last Run",
        "Next Run",
        "Pending",
        "Age",
    ]
    assert columns["Pending"] == 1, "pending edits show with -o wide"
    policies = generated["muster.io_approvalpolicies.yaml"]["spec"]["versions"][0]
    assert "Reason" in [c["name"] for c in policies["additionalPrinterColumns"]]
    assert schedules["names"]["shortNames"] == ["msched"]
    spec = schedules["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec.get("x-kubernetes-validations", [])]
    assert any("cron" in r and "intervals" in r and "calendars" in r for r in rules)
    overlap = spec["properties"]["policy"]["properties"]["overlap"]
    assert overlap["enum"] == [
        "Skip",
        "BufferOne",
        "BufferAll",
        "CancelOther",
        "TerminateOther",
        "AllowAll",
    ]
    assert overlap["default"] == "Skip"


def test_check_mode_names_drifted_files(tmp_path: Path) -> None:
    assert crdgen.main([str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "muster.io_schedules.yaml").write_text("# edited by hand\n")
    assert crdgen.main(["--check", str(tmp_path)]) == 1


def test_models_round_trip_the_examples() -> None:
    for path in sorted((ROOT / "examples/schedules").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        body["metadata"]["namespace"] = "default"
        resource = parse_schedule(body)
        desired_schedule(resource)  # every example becomes a Temporal schedule
        assert isinstance(resource, v1alpha1.Schedule)


def test_pending_query_takes_only_policy_names() -> None:
    assert pending_approvals_query("large-orders") == (
        "MusterPattern = 'approval' AND ExecutionStatus = 'Running' AND "
        "MusterPolicy = 'large-orders'"
    )
    with pytest.raises(ValueError, match="is not an ApprovalPolicy name"):
        pending_approvals_query("x' OR MusterPolicy != '")
