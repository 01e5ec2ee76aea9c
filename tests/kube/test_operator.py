"""The operator end to end: a real ``python -m muster_operator`` against the real
kube-apiserver and the real Temporal dev server.

Covers: apply → Temporal schedule with the right spec and a filled-in status; edit →
updated; suspend → paused; trigger and backfill annotations → actions happen once per
token (also across an operator restart); out-of-band pause, edit and delete → corrected
with an Event; delete → gone (kept with Orphan); a foreign schedule is not taken over;
invalid resources are rejected by the API server with a readable message; edits made while
the operator is down are applied when it comes back; Temporal down → condition False,
recovers after; ApprovalPolicy → published snapshot + reminder schedule; metrics.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.worker import Worker

from muster_api.search_attributes import cli_types
from muster_dev.kube import KubeAccess
from muster_dev.process import free_port
from muster_dev.temporal import DevServer, DevServerConfig
from muster_runtime.polling import async_wait_until, wait_until
from tests.dashboards import (
    Catalogue,
    catalogue,
    load,
    metrics_used,
    operator_only,
    unknown_metrics,
)
from tests.kube.noop_workflow import Noop
from tests.kube.operator_support import (
    OperatorProcess,
    Resources,
    actions,
    describe_or_none,
    events,
    operator_env,
    spec,
)
from tests.kube.support import Run, status_message

pytestmark = [pytest.mark.kube, pytest.mark.temporal, pytest.mark.slow]


# -- apply, edit, suspend --------------------------------------------------------------------


async def test_apply_creates_the_schedule_and_fills_status(
    schedules: Resources, client: Client, task_queue: str, kubectl: Run, namespace: str
) -> None:
    schedules.create(
        "report",
        spec(
            task_queue,
            policy={"overlap": "Skip", "catchupWindow": "10m"},
            jitter="30s",
            workflow={
                "type": "OperatorTestNoop",
                "taskQueue": task_queue,
                "args": [{"days_back": 1}],
                "executionTimeout": "1h",
                "retryPolicy": {"maximumAttempts": 3},
                "memo": {"team": "finance"},
            },
        ),
    )
    body = schedules.wait_synced("report")
    status = body["status"]
    schedule_id = f"{namespace}.report"
    assert status["scheduleId"] == schedule_id
    assert status["summary"] == "0 6 * * *"
    # A create is not read back; the first resync fills in Temporal's view.

    def filled_in() -> dict[str, Any] | None:
        current: dict[str, Any] = schedules.get("report")["status"]
        return current if current.get("nextActionTimes") else None

    status = wait_until(filled_in, what="next action times in status", timeout=30)
    assert "T06:00:" in status["nextActionTimes"][0]  # plus up to 30s of jitter
    assert status["syncedFingerprint"]  # the first resync adopted the create as its baseline
    assert body["metadata"]["finalizers"] == ["muster.io/finalizer"]

    described = await client.get_schedule_handle(schedule_id).describe()
    calendar = described.schedule.spec.calendars[0]
    assert (calendar.hour[0].start, calendar.minute[0].start) == (6, 0)
    assert described.schedule.spec.time_zone_name == "UTC"
    assert described.schedule.spec.jitter == timedelta(seconds=30)
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    assert described.schedule.policy.catchup_window == timedelta(minutes=10)
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.workflow, action.task_queue, action.id) == (
        "OperatorTestNoop",
        task_queue,
        schedule_id,
    )
    assert action.execution_timeout == timedelta(hours=1)
    assert action.retry_policy is not None
    assert action.retry_policy.maximum_attempts == 3
    assert json.loads(described.raw_description.memo.fields["muster.io/owner"].data) == (
        f"{namespace}/report"
    )

    table = kubectl("get", "schedules", "-n", namespace).stdout
    assert "0 6 * * *" in table, table
    assert "True" in table, table
    # Nothing polls the task queue yet; a worker that does makes it True.
    schedules.wait_condition("report", "WorkerAvailable", "False", "NoPollers")
    async with Worker(client, task_queue=task_queue, workflows=[Noop]):
        # In a thread: the worker polls on this event loop.
        await asyncio.to_thread(
            schedules.wait_condition, "report", "WorkerAvailable", "True", "PollersPresent"
        )


async def test_edit_updates_and_suspend_pauses(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create("edited", spec(task_queue))
    schedules.wait_synced("edited")
    schedule_id = f"{namespace}.edited"

    schedules.patch(
        "edited",
        {
            "spec": {
                "cron": ["30 7 * * 1-5"],
                "timeZone": "Europe/Berlin",
                "policy": {"overlap": "BufferAll"},
            }
        },
    )
    body = schedules.wait_synced("edited")
    assert body["status"]["observedGeneration"] == 2
    described = await client.get_schedule_handle(schedule_id).describe()
    calendar = described.schedule.spec.calendars[0]
    assert (calendar.hour[0].start, calendar.minute[0].start) == (7, 30)
    assert (calendar.day_of_week[0].start, calendar.day_of_week[0].end) == (1, 5)
    assert described.schedule.spec.time_zone_name == "Europe/Berlin"
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.BUFFER_ALL

    schedules.patch("edited", {"spec": {"suspend": True}})
    schedules.wait_condition("edited", "Suspended", "True", "SuspendedBySpec")
    assert (await client.get_schedule_handle(schedule_id).describe()).schedule.state.paused
    schedules.patch("edited", {"spec": {"suspend": False}})
    schedules.wait_condition("edited", "Suspended", "False", "Active")
    assert not (await client.get_schedule_handle(schedule_id).describe()).schedule.state.paused


# -- trigger and backfill --------------------------------------------------------------------


async def test_trigger_and_backfill_act_once_per_token(
    schedules: Resources, client: Client, task_queue: str, namespace: str, operator: OperatorProcess
) -> None:
    schedules.create(
        "hourly", {**spec(task_queue), "cron": ["0 * * * *"], "policy": {"overlap": "AllowAll"}}
    )
    schedules.wait_synced("hourly")
    schedule_id = f"{namespace}.hourly"

    schedules.patch("hourly", {"metadata": {"annotations": {"muster.io/trigger": "t1"}}})
    wait_until(
        lambda: schedules.get("hourly")["status"].get("lastHandledTrigger") == "t1",
        what="trigger t1 handled",
    )
    await async_wait_until(lambda: _count_is(client, schedule_id, 1), what="one action")

    backfill = {
        "token": "b1",
        "startAt": "2026-01-01T00:30:00Z",
        "endAt": "2026-01-01T03:30:00Z",
        "overlap": "AllowAll",
    }
    schedules.patch(
        "hourly", {"metadata": {"annotations": {"muster.io/backfill": json.dumps(backfill)}}}
    )
    wait_until(
        lambda: schedules.get("hourly")["status"].get("lastHandledBackfill") == "b1",
        what="backfill b1 handled",
    )
    # 01:00, 02:00 and 03:00 on 2026-01-01, plus the trigger.
    await async_wait_until(lambda: _count_is(client, schedule_id, 4), what="four actions")
    recent = (await client.get_schedule_handle(schedule_id).describe()).info.recent_actions
    assert sorted(a.scheduled_at.isoformat() for a in recent)[:3] == [
        "2026-01-01T01:00:00+00:00",
        "2026-01-01T02:00:00+00:00",
        "2026-01-01T03:00:00+00:00",
    ]

    # Unrelated annotation changes and a restart do not repeat either token. While the
    # operator is down the schedule is paused in Temporal: the restarted operator's
    # correction (a status write) proves it has reconciled this resource, tokens included.
    schedules.patch("hourly", {"metadata": {"annotations": {"example.com/note": "x"}}})
    operator.stop()
    await client.get_schedule_handle(schedule_id).pause(note="while the operator is down")
    before = schedules.get("hourly")["status"]["lastSyncTime"]
    operator.start()
    wait_until(
        lambda: schedules.get("hourly")["status"]["lastSyncTime"] != before,
        what="a reconcile after the restart",
    )
    described = await client.get_schedule_handle(schedule_id).describe()
    assert not described.schedule.state.paused
    assert await actions(client, schedule_id) == 4

    schedules.patch("hourly", {"metadata": {"annotations": {"muster.io/trigger": "t2"}}})
    await async_wait_until(lambda: _count_is(client, schedule_id, 5), what="five actions")

    # A malformed backfill request is reported, not acted on.
    schedules.patch("hourly", {"metadata": {"annotations": {"muster.io/backfill": "{oops"}}})
    wait_until(
        lambda: any(
            reason == "InvalidBackfill"
            for _, reason, _ in events(k8s.CoreV1Api(schedules.api.api_client), namespace, "hourly")
        ),
        what="an InvalidBackfill event",
    )
    assert await actions(client, schedule_id) == 5


async def test_kubectl_muster_plugin(
    schedules: Resources,
    client: Client,
    task_queue: str,
    namespace: str,
    kubectl_muster: Run,
) -> None:
    schedules.create("plugged", {**spec(task_queue), "policy": {"overlap": "AllowAll"}})
    schedules.wait_synced("plugged")
    schedule_id = f"{namespace}.plugged"
    ns = ("-n", namespace)

    async def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = await asyncio.to_thread(
            kubectl_muster, *ns, *args, check=check
        )
        return result

    triggered = await run("trigger", "plugged", "--token", "cli-1")
    assert "schedule.muster.io/plugged triggered" in triggered.stdout
    assert schedules.get("plugged")["status"]["lastHandledTrigger"] == "cli-1"
    await async_wait_until(lambda: _count_is(client, schedule_id, 1), what="one action")
    # The same token again is a no-op: the operator already acted on it.
    await run("trigger", "plugged", "--token", "cli-1")
    assert await actions(client, schedule_id) == 1

    backfilled = await run(
        "backfill", "plugged", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-03T12:00:00Z"
    )
    assert "backfilled 2026-01-01T00:00:00+00:00 to 2026-01-03T12:00:00+00:00" in backfilled.stdout
    # 06:00 on the 1st, 2nd and 3rd, plus the trigger.
    await async_wait_until(lambda: _count_is(client, schedule_id, 4), what="four actions")

    await run("suspend", "plugged")
    assert (await client.get_schedule_handle(schedule_id).describe()).schedule.state.paused
    assert schedules.get("plugged")["spec"]["suspend"] is True
    again = await run("suspend", "plugged")
    assert "already suspended" in again.stdout

    described = await run("describe", "plugged", "-o", "json")
    view = json.loads(described.stdout)
    assert view["scheduleId"] == schedule_id
    assert view["owner"] == f"{namespace}/plugged"
    assert view["state"]["paused"] is True
    assert view["actions"]["taken"] == 4
    assert view["spec"]["calendars"][0]["hour"] == "6"
    assert view["workflow"] == {
        "type": "OperatorTestNoop",
        "taskQueue": task_queue,
        "id": schedule_id,
    }
    assert view["kubernetes"]["conditions"]["Suspended"] == "True (SuspendedBySpec)"
    text = (await run("describe", "plugged")).stdout
    assert f"Schedule ID:      {schedule_id}" in text
    assert "State:            paused (suspended by spec.suspend)" in text

    await run("resume", "plugged")
    assert not (await client.get_schedule_handle(schedule_id).describe()).schedule.state.paused

    # Mistakes get a clear message and change nothing.
    missing = await run("trigger", "nope", check=False)
    assert missing.returncode == 1
    assert 'Schedule "nope" not found in namespace' in missing.stderr
    backwards = await run(
        "backfill", "plugged", "--start", "2026-01-03T00:00:00Z", "--end", "2026-01-01T00:00:00Z",
        check=False,
    )  # fmt: skip
    assert backwards.returncode == 2
    assert "--end must be after --start" in backwards.stderr
    naive = await run("backfill", "plugged", "--start", "2026-01-03", "--end", "x", check=False)
    assert naive.returncode == 2
    assert "has no time zone" in naive.stderr
    assert await actions(client, schedule_id) == 4


async def _count_is(client: Client, schedule_id: str, wanted: int) -> bool:
    count = await actions(client, schedule_id)
    assert count <= wanted, f"{count} actions, expected {wanted}: an action was repeated"
    return count == wanted


# -- drift -----------------------------------------------------------------------------------


async def test_out_of_band_changes_are_corrected(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create("drifty", spec(task_queue))
    schedules.wait_synced("drifty")
    schedule_id = f"{namespace}.drifty"
    handle = client.get_schedule_handle(schedule_id)
    core = k8s.CoreV1Api(schedules.api.api_client)

    await handle.pause(note="someone in the UI")

    async def unpaused() -> bool:
        return not (await handle.describe()).schedule.state.paused

    await async_wait_until(unpaused, what="the pause to be undone", timeout=30)

    def edited(state: ScheduleUpdateInput) -> ScheduleUpdate:
        state.description.schedule.spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=1))]
        )
        return ScheduleUpdate(schedule=state.description.schedule)

    await handle.update(edited)

    async def cron_again() -> bool:
        described = await handle.describe()
        return not described.schedule.spec.intervals and bool(described.schedule.spec.calendars)

    await async_wait_until(cron_again, what="the edit to be undone", timeout=30)

    await handle.delete()

    async def recreated() -> bool:
        return await describe_or_none(client, schedule_id) is not None

    await async_wait_until(recreated, what="the schedule to be recreated", timeout=30)
    wait_until(
        lambda: sum(r == "DriftCorrected" for _, r, _ in events(core, namespace, "drifty")) >= 1,
        what="DriftCorrected events",
    )
    messages = " | ".join(m or "" for _, r, m in events(core, namespace, "drifty"))
    assert "paused in Temporal" in messages
    assert "deleted in Temporal" in messages or "edited in Temporal" in messages


# -- delete, orphan, foreign -----------------------------------------------------------------


async def test_delete_removes_and_orphan_keeps(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create("doomed", spec(task_queue))
    schedules.create("kept", spec(task_queue, deletionPolicy="Orphan"))
    schedules.wait_synced("doomed")
    schedules.wait_synced("kept")

    schedules.delete("doomed")
    schedules.delete("kept")
    wait_until(lambda: schedules.gone("doomed"), what="doomed to be deleted")
    wait_until(lambda: schedules.gone("kept"), what="kept to be deleted")
    assert await describe_or_none(client, f"{namespace}.doomed") is None
    orphan = await describe_or_none(client, f"{namespace}.kept")
    assert orphan is not None, "deletionPolicy Orphan must keep the Temporal schedule"
    await client.get_schedule_handle(f"{namespace}.kept").delete()


async def test_foreign_schedule_is_not_taken_over(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedule_id = f"{namespace}.foreign"
    await client.create_schedule(
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow("SomebodyElse", id="x", task_queue=task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        ),
    )
    schedules.create("foreign", spec(task_queue))
    found = schedules.wait_condition("foreign", "Synced", "False", "ForeignSchedule")
    assert "does not take over" in found["message"]
    described = await client.get_schedule_handle(schedule_id).describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "SomebodyElse"
    # Deleting the resource must not delete somebody else's schedule either.
    schedules.delete("foreign")
    wait_until(lambda: schedules.gone("foreign"), what="the resource to go")
    assert await describe_or_none(client, schedule_id) is not None
    await client.get_schedule_handle(schedule_id).delete()


# -- restart ---------------------------------------------------------------------------------


async def test_edits_while_the_operator_is_down_are_applied(
    schedules: Resources, client: Client, task_queue: str, namespace: str, operator: OperatorProcess
) -> None:
    schedules.create("restart", spec(task_queue))
    schedules.patch("restart", {"metadata": {"annotations": {"muster.io/trigger": "once"}}})
    schedule_id = f"{namespace}.restart"
    wait_until(
        lambda: schedules.get("restart").get("status", {}).get("lastHandledTrigger") == "once",
        what="the trigger to be handled",
    )
    await async_wait_until(lambda: _count_is(client, schedule_id, 1), what="one action")

    operator.stop()
    try:
        schedules.patch("restart", {"spec": {"cron": ["15 4 * * *"]}})
    finally:
        operator.start()
    body = schedules.wait_synced("restart")
    assert body["status"]["observedGeneration"] == 2
    calendar = (await client.get_schedule_handle(schedule_id).describe()).schedule.spec.calendars[0]
    assert (calendar.hour[0].start, calendar.minute[0].start) == (4, 15)
    assert await actions(client, schedule_id) == 1, "the restart repeated a trigger"


# -- Temporal down ---------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def down_namespace(core_api: k8s.CoreV1Api) -> AsyncIterator[str]:
    name = f"down-{uuid.uuid4().hex[:8]}"
    core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core_api.delete_namespace(name)


async def test_temporal_down_is_reported_and_recovers(
    kube: KubeAccess,
    crds: None,
    api_client: k8s.ApiClient,
    down_namespace: str,
    policy_namespace: str,
    tmp_path: Path,
    task_queue: str,
) -> None:
    port = free_port()
    env = operator_env(
        kube, f"127.0.0.1:{port}", namespaces=[down_namespace], policy_namespace=policy_namespace
    )
    lonely = OperatorProcess(env, tmp_path / "operator")
    lonely.start()
    server: DevServer | None = None
    try:
        schedules = Resources(
            k8s.CustomObjectsApi(api_client), down_namespace, "schedules", "Schedule"
        )
        schedules.create("waiting", spec(task_queue))
        found = schedules.wait_condition("waiting", "Ready", "False", "TemporalUnavailable")
        assert "cannot reach Temporal" in found["message"]
        assert lonely.process is not None
        assert lonely.process.running(), "the operator died"
        assert "muster_operator_temporal_up 0.0" in lonely.metrics()

        server = DevServer(
            DevServerConfig(port=port, ui_port=None, search_attributes=cli_types()),
            log_path=tmp_path / "temporal.log",
        )
        server.start()
        schedules.wait_synced("waiting", timeout=60)
        schedules.delete("waiting")
        wait_until(lambda: schedules.gone("waiting"), what="the resource to go", timeout=30)
    finally:
        lonely.stop()
        if server is not None:
            server.stop()


# -- ApprovalPolicy --------------------------------------------------------------------------


async def test_policy_is_published_with_a_reminder_schedule(
    policies: Resources,
    client: Client,
    core_api: k8s.CoreV1Api,
    policy_namespace: str,
    namespace: str,
    kubectl: Run,
    operator: OperatorProcess,
) -> None:
    policies.create(
        "purchases",
        {
            "approvers": {"users": ["ana", "ben"]},
            "requiredApprovals": 2,
            "timeout": "3d",
            "reminders": {"cron": "0 9 * * 1-5", "timeZone": "Europe/Berlin"},
        },
    )
    body = policies.wait_synced("purchases")
    key = f"{namespace}.purchases.yaml"

    def published() -> dict[str, Any] | None:
        data = core_api.read_namespaced_config_map(
            "muster-approval-policies", policy_namespace
        ).data
        return yaml.safe_load(data[key]) if data and key in data else None

    document = wait_until(published, what="the published snapshot")
    assert document["spec"]["requiredApprovals"] == 2
    assert document["metadata"]["annotations"]["muster.io/reminders"] == "schedule"
    assert (
        document["metadata"]["annotations"]["muster.io/sha256"] == body["status"]["publishedSha256"]
    )
    reminder_id = body["status"]["reminderScheduleId"]
    assert reminder_id == f"{namespace}.purchases.reminders"
    described = await client.get_schedule_handle(reminder_id).describe()
    assert described.schedule.spec.time_zone_name == "Europe/Berlin"
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "ApprovalReminders"
    assert body["status"]["pendingRequests"] == 0
    assert "purchases" in kubectl("get", "apol", "-n", namespace).stdout
    assert 'muster_approvals_pending{policy="purchases"} 0.0' in operator.metrics()

    # Reminders removed → the schedule goes; the policy deleted → unpublished.
    policies.patch("purchases", {"spec": {"reminders": None}})
    await async_wait_until(
        lambda: _gone(client, reminder_id), what="the reminder schedule to go", timeout=30
    )
    policies.delete("purchases")
    wait_until(lambda: published() is None, what="the snapshot to be unpublished")
    wait_until(
        lambda: 'policy="purchases"' not in operator.metrics(),
        what="the policy's pending gauge to go",
    )


async def _gone(client: Client, schedule_id: str) -> bool:
    return await describe_or_none(client, schedule_id) is None


def test_operator_metrics_use_controller_runtime_names(
    schedules: Resources, task_queue: str, operator: OperatorProcess
) -> None:
    schedules.create("measured", spec(task_queue))
    schedules.wait_synced("measured")
    text = operator.metrics()
    assert 'controller_runtime_reconcile_total{controller="schedule",result="success"}' in text
    assert "controller_runtime_reconcile_time_seconds_bucket" in text
    assert 'controller_runtime_active_workers{controller="schedule"}' in text
    assert "muster_operator_schedule_syncs_total" in text
    # Nothing polls the test's task queue: the gauge behind the MusterNoPollers alert says so.
    assert f'muster_task_queue_pollers{{task_queue="{task_queue}"}} 0.0' in text


async def test_dashboards_read_what_the_operator_exposes(
    schedules: Resources,
    policies: Resources,
    client: Client,
    task_queue: str,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    """The operator's metrics are not on the local stack of the e2e tier: here every metric
    the dashboards read from the operator, with the labels the queries and legends rely on,
    must be on the running operator's /metrics, so a renamed one fails. The test makes each
    series exist: a sync, a drift correction, a reconcile that fails (a foreign schedule),
    a pending-approvals gauge."""
    schedules.create("dash-measured", spec(task_queue))
    schedules.wait_synced("dash-measured")
    handle = client.get_schedule_handle(f"{namespace}.dash-measured")
    await handle.pause(note="drift for the dashboards")

    async def unpaused() -> bool:
        return not (await handle.describe()).schedule.state.paused

    await async_wait_until(unpaused, what="the drift to be corrected", timeout=30)
    # A schedule somebody else made in Temporal: the operator's reconcile fails (an error).
    foreign = client.get_schedule_handle(f"{namespace}.dash-foreign")
    await client.create_schedule(
        foreign.id,
        Schedule(
            action=ScheduleActionStartWorkflow("SomebodyElse", id="x", task_queue=task_queue),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
        ),
    )
    schedules.create("dash-foreign", spec(task_queue))
    schedules.wait_condition("dash-foreign", "Synced", "False", "ForeignSchedule")
    policies.create("dash-policy", {"approvers": {"users": ["ana"]}, "requiredApprovals": 1,
                                    "timeout": "1d"})  # fmt: skip
    policies.wait_synced("dash-policy")
    dashboards = load()
    wanted = {m for m in metrics_used(dashboards) if operator_only(m)}
    assert wanted, "the dashboards read no operator metric"
    emitted: Catalogue = {}

    def all_series() -> bool:
        emitted.clear()
        catalogue(operator.metrics(), emitted)
        return wanted <= emitted.keys()

    try:
        wait_until(all_series, what="a series of every operator metric the dashboards read")
    except TimeoutError:
        pytest.fail(f"the operator exposes no series of {sorted(wanted - emitted.keys())}")
    assert unknown_metrics(dashboards, emitted, only=operator_only) == []
    broken = {"renamed.json": json.loads(json.dumps(dashboards["operator.json"]))}
    target = broken["renamed.json"]["panels"][4]["targets"][0]
    target["expr"] = target["expr"].replace(
        "controller_runtime_reconcile_total", "controller_runtime_reconciles_total"
    )
    (finding,) = unknown_metrics(broken, emitted, only=operator_only)
    assert "metric controller_runtime_reconciles_total is not exposed" in finding
    schedules.delete("dash-foreign")
    wait_until(lambda: schedules.gone("dash-foreign"), what="the resource to go")
    await foreign.delete()


# -- validation by the API server ------------------------------------------------------------

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("no times", {"cron": []}, "give at least one of cron, intervals or calendars"),
    ("bad time zone", {"timeZone": "Mars/Olympus"}, "unknown time zone Mars/Olympus"),
    ("offset time zone", {"timeZone": "+05:00"}, "is not an IANA time zone"),
    (
        "end before start",
        {"startAt": "2027-01-02T00:00:00Z", "endAt": "2027-01-01T00:00:00Z"},
        "endAt must be after startAt",
    ),
    ("start not a time", {"startAt": "tomorrow"}, "must be of type date-time"),
    ("unknown overlap", {"policy": {"overlap": "Sometimes"}}, "Unsupported value"),
    ("bad duration", {"jitter": "5 minutes"}, "'5 minutes' is not a duration"),
    ("zero duration", {"jitter": "0s"}, "'0s' must be longer than zero"),
    ("zero interval", {"intervals": [{"every": "0m"}]}, "'0m' must be longer than zero"),
    ("no workflow type", {"workflow": {"taskQueue": "q"}}, "spec.workflow.type: Required value"),
    ("empty task queue", {"workflow": {"type": "W", "taskQueue": ""}}, "spec.workflow.taskQueue"),
    ("bad deletion policy", {"deletionPolicy": "Maybe"}, "Unsupported value"),
    ("negative remaining", {"remainingActions": -1}, "should be greater than or equal to 1"),
    ("bad calendar field", {"calendars": [{"hour": "nine"}]}, "hour 'nine' is not 0-23"),
    ("six-field cron", {"cron": ["0 0 6 * * *"]}, "no seconds or year field"),
    ("bad schedule id", {"temporal": {"scheduleId": "has spaces"}}, "should match"),
    ("too many cron lines", {"cron": ["0 6 * * *"] * 21}, "must have at most 20 items"),
    ("suspend not boolean", {"suspend": "yes"}, "must be of type boolean"),
    ("unknown field", {"cronn": ["0 6 * * *"]}, 'unknown field "spec.cronn"'),
]


@pytest.mark.parametrize(
    ("patch", "message"), [(p, m) for _, p, m in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS]
)
def test_invalid_schedules_are_rejected_with_a_readable_message(
    crds: None, kubectl: Run, namespace: str, patch: dict[str, Any], message: str
) -> None:
    body = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {**spec("q"), **patch},
    }
    result = kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0, f"accepted: {patch}"
    assert message in result.stderr, result.stderr


BAD_POLICIES: list[tuple[str, dict[str, Any], str]] = [
    (
        "quorum above named approvers",
        {"approvers": {"users": ["ana"]}, "requiredApprovals": 2},
        "requiredApprovals must not exceed the number of approvers",
    ),
    ("nobody", {"approvers": {}}, "name at least one user or group"),
    (
        "bad reminder zone",
        {"approvers": {"users": ["a"]}, "reminders": {"cron": "0 9 * * *", "timeZone": "Nowhere"}},
        "unknown time zone Nowhere",
    ),
    ("bad timeout", {"approvers": {"users": ["a"]}, "timeout": "soon"}, "'soon' is not a duration"),
    ("bad veto", {"approvers": {"users": ["a"]}, "veto": "Loudest"}, "Unsupported value"),
]


@pytest.mark.parametrize(
    ("spec_", "message"), [(s, m) for _, s, m in BAD_POLICIES], ids=[i for i, _, _ in BAD_POLICIES]
)
def test_invalid_policies_are_rejected_with_a_readable_message(
    crds: None, api_client: k8s.ApiClient, namespace: str, spec_: dict[str, Any], message: str
) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    body = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "ApprovalPolicy",
        "metadata": {"name": "bad"},
        "spec": spec_,
    }
    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            "muster.io", "v1alpha1", namespace, "approvalpolicies", body
        )
    assert caught.value.status == 422
    assert message in status_message(caught.value)


def test_examples_are_accepted_by_the_api_server(crds: None, kubectl: Run, namespace: str) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    for folder in ("schedules", "policies"):
        result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(examples / folder))
        assert "created (server dry run)" in result.stdout, result.stdout
