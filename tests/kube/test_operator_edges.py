"""Resources at the edges, against the real kube-apiserver and the real Temporal dev server
(issue 18): whatever the API server admits ends Ready or with a condition a user can act on,
and deletion never hangs; status never holds a copy of the spec, also with a spec near
etcd's request limit; the Temporal schedules made for a resource are recorded in status and
retired exactly as ``deletionPolicy`` says when the id or namespace changes, the spec
becomes invalid (paused) or the resource goes; Triggered/Backfilled Events arrive once;
``kubectl muster`` takes its flags anywhere; REASON shows why a resource is not Ready; the
SCHEDULE column shows what Temporal holds while an edit waits for Temporal (PENDING); an
unanticipated error is a ReconcileError with a logged traceback, never an outage.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from kubernetes import client as k8s
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client, ScheduleActionStartWorkflow

from muster_api.search_attributes import cli_types
from muster_dev.kube import KubeAccess
from muster_dev.process import free_port
from muster_dev.temporal import DevServer, DevServerConfig
from muster_runtime.polling import async_wait_until, wait_until
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings
from tests.kube.operator_support import (
    OperatorProcess,
    Resources,
    describe_or_none,
    events,
    operator_env,
    spec,
)
from tests.kube.support import Run

pytestmark = [pytest.mark.kube, pytest.mark.temporal, pytest.mark.slow]

ETCD_REQUEST_LIMIT = 1_572_864
"""etcd's default --max-request-bytes (1.5 MiB): the largest object the API server stores."""


def reasons(resources: Resources, name: str) -> list[str | None]:
    core = k8s.CoreV1Api(resources.api.api_client)
    return [reason for _, reason, _ in events(core, resources.namespace, name)]


def wait_gone(resources: Resources, name: str, timeout: float = 30) -> None:
    """``kubectl delete`` finishes: the finalizer went and the object with it."""
    wait_until(lambda: resources.gone(name), what=f"{name} to be deleted", timeout=timeout)


async def unpaused_again(client: Client, schedule_id: str, note: str) -> None:
    """Pause a schedule behind the operator's back and wait until a resync undoes it: proof
    that the operator reconciled the resource (again) since."""
    handle = client.get_schedule_handle(schedule_id)
    await handle.pause(note=note)

    async def running() -> bool:
        return not (await handle.describe()).schedule.state.paused

    await async_wait_until(running, what=f"{schedule_id} to be unpaused", timeout=30)


# -- items 1-3: stalls and hangs -------------------------------------------------------------


async def test_an_edit_of_remaining_actions_starts_the_count_again(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create("counted", spec(task_queue, remainingActions=5))
    schedules.wait_synced("counted")
    state = (await client.get_schedule_handle(f"{namespace}.counted").describe()).schedule.state
    assert (state.limited_actions, state.remaining_actions) == (True, 5)

    # An edit of remainingActions starts Temporal's countdown again from the new value.
    schedules.patch("counted", {"spec": {"remainingActions": 2}})
    schedules.wait_synced("counted")
    state = (await client.get_schedule_handle(f"{namespace}.counted").describe()).schedule.state
    assert (state.limited_actions, state.remaining_actions) == (True, 2)

    schedules.delete("counted")
    wait_gone(schedules, "counted")
    assert await describe_or_none(client, f"{namespace}.counted") is None


async def test_a_spec_near_etcds_limit_gets_status_and_deletes(
    schedules: Resources, client: Client, task_queue: str, namespace: str, kubectl: Run
) -> None:
    body = schedules.body(
        "huge",
        spec(task_queue, workflow={"type": "Big", "taskQueue": task_queue, "args": [""]}),
    )
    body["metadata"]["namespace"] = namespace
    # The object as stored (metadata, managed fields and finalizer included) ends ~32 KiB
    # below etcd's limit; a status that copied the spec would not fit even once.
    room = ETCD_REQUEST_LIMIT - 32 * 1024 - len(json.dumps(body)) - 1024
    body["spec"]["workflow"]["args"] = ["x" * room]
    applied = kubectl("apply", "--server-side", "-f", "-", input=json.dumps(body))
    assert "serverside-applied" in applied.stdout
    synced = schedules.wait_synced("huge", timeout=60)
    assert len(json.dumps(synced)) > ETCD_REQUEST_LIMIT - 64 * 1024
    status = synced["status"]
    assert len(json.dumps(status)) < 8 * 1024, "status is bounded"
    assert "lastHandledConfiguration" not in status.get("kopf", {})
    assert len(status["kopf"]["lastHandledDigest"]) < 2048
    described = await client.get_schedule_handle(f"{namespace}.huge").describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "Big"

    # The first resync fills in Temporal's view: still fits.
    wait_until(
        lambda: schedules.get("huge")["status"].get("nextActionTimes"),
        what="next runs in the status of the huge Schedule",
    )
    schedules.delete("huge")
    wait_gone(schedules, "huge")
    assert await describe_or_none(client, f"{namespace}.huge") is None


@pytest.mark.timeout(300)  # kopf retries each failing status write for about a minute
async def test_a_spec_at_etcds_limit_is_reported_and_deletes(
    schedules: Resources, client: Client, task_queue: str, namespace: str, kubectl: Run
) -> None:
    """The API server admits an object up to etcd's limit; then no status write fits. The
    operator says so with an Event, and the delete still completes."""
    body = schedules.body(
        "brim",
        spec(task_queue, workflow={"type": "Big", "taskQueue": task_queue, "args": [""]}),
    )
    body["metadata"]["namespace"] = namespace
    largest = ETCD_REQUEST_LIMIT - len(json.dumps(body))
    for less in range(0, 4096, 64):  # the largest the API server admits
        body["spec"]["workflow"]["args"] = ["x" * (largest - less)]
        applied = kubectl("apply", "--server-side", "-f", "-", input=json.dumps(body), check=False)
        if applied.returncode == 0:
            break
        assert "too large" in applied.stderr, applied.stderr
    else:
        pytest.fail("the API server admitted no size near its limit")
    wait_until(
        lambda: "ObjectTooLarge" in reasons(schedules, "brim"),
        what="an ObjectTooLarge Event",
        timeout=60,
    )
    core = k8s.CoreV1Api(schedules.api.api_client)
    said = {r: m for _, r, m in events(core, namespace, "brim")}["ObjectTooLarge"]
    assert "reference" in (said or ""), said
    await async_wait_until(
        lambda: describe_or_none(client, f"{namespace}.brim"), what="its Temporal schedule"
    )
    schedules.delete("brim")
    wait_gone(schedules, "brim", timeout=180)
    assert await describe_or_none(client, f"{namespace}.brim") is None


# -- items 4-5: leaks ------------------------------------------------------------------------


async def test_an_invalid_edit_pauses_and_a_delete_still_removes(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create("typo", spec(task_queue))
    schedules.wait_synced("typo")
    schedule_id = f"{namespace}.typo"
    handle = client.get_schedule_handle(schedule_id)

    schedules.patch("typo", {"spec": {"cron": ["0 9 * * 1-7"]}})
    found = schedules.wait_condition("typo", "Ready", "False", "InvalidSpec")
    assert "1-7" in found["message"]
    assert f"default/{schedule_id}" in found["message"]
    assert "paused until the spec is valid" in found["message"]
    state = (await handle.describe()).schedule.state
    assert state.paused
    assert state.note is not None
    assert "invalid" in state.note
    wait_until(lambda: "SchedulePaused" in reasons(schedules, "typo"), what="SchedulePaused")
    body = schedules.get("typo")
    assert body["status"]["ownedSchedules"] == [{"scheduleId": schedule_id, "namespace": "default"}]
    assert body["status"]["summary"] == "0 6 * * *", "summary is what Temporal holds"

    # A valid edit resumes it with the new times.
    schedules.patch("typo", {"spec": {"cron": ["15 5 * * *"]}})
    schedules.wait_synced("typo")
    described = await handle.describe()
    assert not described.schedule.state.paused
    assert described.schedule.spec.calendars[0].hour[0].start == 5

    # Invalid again, then deleted: deletionPolicy Delete removes it all the same.
    schedules.patch("typo", {"spec": {"cron": ["0 9 * * 1-7"]}})
    schedules.wait_condition("typo", "Ready", "False", "InvalidSpec")
    schedules.delete("typo")
    wait_gone(schedules, "typo")
    assert await describe_or_none(client, schedule_id) is None


async def test_an_orphan_made_invalid_is_kept_paused(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create("keeper", spec(task_queue, deletionPolicy="Orphan"))
    schedules.wait_synced("keeper")
    schedules.patch("keeper", {"spec": {"cron": ["0 9 * * 1-7"]}})
    schedules.wait_condition("keeper", "Ready", "False", "InvalidSpec")
    schedules.delete("keeper")
    wait_gone(schedules, "keeper")
    kept = await describe_or_none(client, f"{namespace}.keeper")
    assert kept is not None, "deletionPolicy Orphan keeps it"
    assert kept.schedule.state.paused
    await client.get_schedule_handle(f"{namespace}.keeper").delete()


@pytest_asyncio.fixture(loop_scope="session")
async def other_namespace(client: Client) -> AsyncIterator[str]:
    """A second Temporal namespace with Muster's search attributes."""
    name = f"edge-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86_400)
        )
    )

    async def known() -> bool:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=name))
        return True

    await async_wait_until(known, what=f"namespace {name}", timeout=30, ignore=(Exception,))
    config = client.config()
    config["namespace"] = name
    await ensure_search_attributes(Client(**config), name)
    yield name


def in_namespace(client: Client, namespace: str) -> Client:
    config = client.config()
    config["namespace"] = namespace
    return Client(**config)


async def test_a_changed_id_or_namespace_retires_the_old_schedule(
    schedules: Resources, client: Client, task_queue: str, namespace: str, other_namespace: str
) -> None:
    schedules.create("moving", spec(task_queue, temporal={"scheduleId": f"{namespace}.first"}))
    schedules.wait_synced("moving")

    schedules.patch("moving", {"spec": {"temporal": {"scheduleId": f"{namespace}.second"}}})
    body = schedules.wait_synced("moving")
    assert body["status"]["ownedSchedules"] == [
        {"scheduleId": f"{namespace}.second", "namespace": "default"}
    ]
    assert await describe_or_none(client, f"{namespace}.first") is None
    assert await describe_or_none(client, f"{namespace}.second") is not None
    wait_until(lambda: "ScheduleDeleted" in reasons(schedules, "moving"), what="ScheduleDeleted")

    other = in_namespace(client, other_namespace)
    schedules.patch("moving", {"spec": {"temporal": {"namespace": other_namespace}}})
    body = schedules.wait_synced("moving")
    assert body["status"]["ownedSchedules"] == [
        {"scheduleId": f"{namespace}.second", "namespace": other_namespace}
    ]
    assert body["status"]["temporalNamespace"] == other_namespace
    assert await describe_or_none(client, f"{namespace}.second") is None
    assert await describe_or_none(other, f"{namespace}.second") is not None

    schedules.delete("moving")
    wait_gone(schedules, "moving")
    assert await describe_or_none(other, f"{namespace}.second") is None


async def test_an_orphan_keeps_its_old_schedule_when_the_id_changes(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create(
        "drifter",
        spec(task_queue, deletionPolicy="Orphan", temporal={"scheduleId": f"{namespace}.old"}),
    )
    schedules.wait_synced("drifter")
    schedules.patch("drifter", {"spec": {"temporal": {"scheduleId": f"{namespace}.new"}}})
    body = schedules.wait_synced("drifter")
    assert body["status"]["ownedSchedules"] == [
        {"scheduleId": f"{namespace}.new", "namespace": "default"}
    ]
    wait_until(lambda: "ScheduleOrphaned" in reasons(schedules, "drifter"), what="ScheduleOrphaned")
    old = await describe_or_none(client, f"{namespace}.old")
    assert old is not None
    assert not old.schedule.state.paused, "an orphan keeps running"
    schedules.delete("drifter")
    wait_gone(schedules, "drifter")
    for leftover in ("old", "new"):
        assert await describe_or_none(client, f"{namespace}.{leftover}") is not None
        await client.get_schedule_handle(f"{namespace}.{leftover}").delete()


async def test_a_policy_with_an_invalid_spec_deletes(
    policies: Resources, core_api: k8s.CoreV1Api, policy_namespace: str, namespace: str
) -> None:
    # Admitted where no webhook guards the namespace (CEL cannot see it), invalid to Temporal.
    policies.create("slow", {"approvers": {"users": ["ana"]}, "reminders": {"cron": "0 9 * * 1-7"}})
    found = policies.wait_condition("slow", "Ready", "False", "InvalidSpec")
    assert "1-7" in found["message"]
    policies.delete("slow")
    wait_gone(policies, "slow")


# -- item 8: Events --------------------------------------------------------------------------


async def test_trigger_and_backfill_post_one_event_each(
    schedules: Resources, client: Client, task_queue: str, namespace: str
) -> None:
    schedules.create("noisy", {**spec(task_queue), "policy": {"overlap": "AllowAll"}})
    schedules.wait_synced("noisy")
    schedule_id = f"{namespace}.noisy"
    backfill = {"token": "b1", "startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"}
    schedules.patch(
        "noisy",
        {
            "metadata": {
                "annotations": {
                    "muster.io/trigger": "t1",
                    "muster.io/backfill": json.dumps(backfill),
                }
            }
        },
    )
    wait_until(
        lambda: {"Triggered", "Backfilled"} <= set(reasons(schedules, "noisy")),
        what="Triggered and Backfilled events",
    )
    core = k8s.CoreV1Api(schedules.api.api_client)
    messages = {r: m for _, r, m in events(core, namespace, "noisy")}
    assert messages["Triggered"] == "started a run for token t1"
    assert "backfill b1" in (messages["Backfilled"] or "")

    # A malformed request: one Warning, however many reconciles see it.
    schedules.patch("noisy", {"metadata": {"annotations": {"muster.io/backfill": "{oops"}}})
    wait_until(lambda: "InvalidBackfill" in reasons(schedules, "noisy"), what="InvalidBackfill")
    for attempt in range(2):  # two drift corrections: two more reconciles at least
        await unpaused_again(client, schedule_id, f"proof of a reconcile {attempt}")
    seen = reasons(schedules, "noisy")
    assert (seen.count("Triggered"), seen.count("Backfilled"), seen.count("InvalidBackfill")) == (
        1,
        1,
        1,
    ), seen


# -- item 9: kubectl muster flags anywhere ---------------------------------------------------


async def test_kubectl_muster_takes_flags_before_and_after(
    schedules: Resources, task_queue: str, namespace: str, kubectl_muster: Run
) -> None:
    schedules.create("flags", spec(task_queue))
    schedules.wait_synced("flags")

    async def run(*args: str) -> str:
        result = await asyncio.to_thread(kubectl_muster, *args)
        return str(result.stdout)

    assert "triggered" in await run("trigger", "flags", "--token", "f1", "-n", namespace)
    assert "triggered" in await run("trigger", "-n", namespace, "flags", "--token", "f2")
    assert "backfilled" in await run(
        "backfill", "flags", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-02T00:00:00Z",
        "--namespace", namespace,
    )  # fmt: skip
    assert "suspended" in await run("suspend", "flags", "--namespace", namespace, "--timeout", "30")
    assert "resumed" in await run("--namespace", namespace, "resume", "flags")
    view = json.loads(await run("describe", "flags", "-n", namespace, "-o", "json"))
    assert view["scheduleId"] == f"{namespace}.flags"
    text = await run("describe", "-n", namespace, "flags")
    assert f"schedule.muster.io/flags in {namespace}" in text
    assert f"{namespace}.flags" in await run("-n", namespace, "describe", "flags")


# -- item 11: REASON -------------------------------------------------------------------------


def test_reason_column_says_why_not_ready(
    schedules: Resources, policies: Resources, task_queue: str, namespace: str, kubectl: Run
) -> None:
    schedules.create("fine", spec(task_queue))
    schedules.create("broken", spec(task_queue, cron=["0 9 * * 1-7"]))
    policies.create("approve", {"approvers": {"users": ["ana"]}})
    schedules.wait_synced("fine")
    schedules.wait_condition("broken", "Ready", "False", "InvalidSpec")
    policies.wait_condition("approve", "Ready", "True")

    table = columns(kubectl("get", "schedules", "-n", namespace).stdout)
    assert list(table["fine"])[:7] == [
        "NAME", "SCHEDULE", "TIME ZONE", "SUSPENDED", "READY", "REASON", "LAST RUN",
    ]  # fmt: skip
    assert (table["fine"]["READY"], table["fine"]["REASON"]) == ("True", "Synced")
    assert (table["broken"]["READY"], table["broken"]["REASON"]) == ("False", "InvalidSpec")
    policy = columns(kubectl("get", "apol", "-n", namespace).stdout)["approve"]
    assert (policy["READY"], policy["REASON"]) == ("True", "Synced")


def columns(text: str) -> dict[str, dict[str, str]]:
    """``kubectl get`` output as {name: {column: cell}}, cut where the header's columns
    start (cells may contain spaces, like a cron expression)."""
    header, *rows = text.splitlines()
    starts = [0] + [i + 1 for i in range(len(header) - 1) if header[i] == " " != header[i + 1]]
    # "TIME ZONE" is one column: a single space inside a header is not a column break.
    starts = [s for s in starts if s == 0 or header[s - 2] == " "]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [header[a:b].strip() for a, b in bounds]
    table = {}
    for row in rows:
        cells = {name: row[a:b].strip() for name, (a, b) in zip(names, bounds, strict=True)}
        table[cells["NAME"]] = cells
    return table


# -- the lead's note: an unanticipated error -------------------------------------------------


async def test_an_unanticipated_error_is_a_reconcile_error_not_an_outage(
    schedules: Resources, client: Client, task_queue: str, namespace: str, operator: OperatorProcess
) -> None:
    # The Temporal SDK itself refuses this retry policy when the operator sends it; the
    # operator does not second-guess the SDK, so nothing anticipated it.
    schedules.create(
        "odd",
        spec(
            task_queue,
            workflow={
                "type": "OperatorTestNoop",
                "taskQueue": task_queue,
                "retryPolicy": {"initialInterval": "10m", "maximumInterval": "1m"},
            },
        ),
    )
    found = schedules.wait_condition("odd", "Ready", "False", "ReconcileError")
    assert "Maximum interval cannot be less than initial interval" in found["message"]
    assert "the operator's log has the traceback" in found["message"]
    log = operator.log.with_suffix(f".{operator.starts}.log")
    wait_until(
        lambda: log.read_text().count(f"Schedule {namespace}/odd: reconcile failed") >= 2,
        what="a retry with its traceback in the operator's log",
    )
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert "muster_operator_temporal_up 1.0" in operator.metrics(), "not an outage"
    assert reasons(schedules, "odd").count("ReconcileError") == 1, "one Event, not one per retry"
    # The operator carries on with everything else.
    schedules.create("after", spec(task_queue))
    schedules.wait_synced("after")
    schedules.delete("odd")
    wait_gone(schedules, "odd")
    assert await describe_or_none(client, f"{namespace}.odd") is None


# -- item 12: pending edits during an outage; deletes wait for Temporal -----------------------


@pytest.fixture
def outage_namespace(core_api: k8s.CoreV1Api) -> Iterator[str]:
    name = f"outage-{uuid.uuid4().hex[:8]}"
    core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    core_api.delete_namespace(name)


@pytest.mark.timeout(300)  # two dev server starts and an outage
async def test_an_edit_during_an_outage_is_pending_and_deletes_wait(
    kube: KubeAccess,
    crds: None,
    api_client: k8s.ApiClient,
    outage_namespace: str,
    policy_namespace: str,
    tmp_path: Path,
    task_queue: str,
    kubectl: Run,
) -> None:
    port = free_port()
    config = DevServerConfig(port=port, ui_port=None, search_attributes=cli_types())
    server = DevServer(config, log_path=tmp_path / "temporal.log")
    server.start()
    env = operator_env(
        kube, config.address, namespaces=[outage_namespace], policy_namespace=policy_namespace
    )
    lonely = OperatorProcess(env, tmp_path / "operator")
    lonely.start()
    schedules = Resources(
        k8s.CustomObjectsApi(api_client), outage_namespace, "schedules", "Schedule"
    )
    try:
        schedules.create("shifting", spec(task_queue))
        schedules.wait_synced("shifting")
        server.stop()

        schedules.patch("shifting", {"spec": {"cron": ["30 7 * * 1-5"]}})

        def edit_failed() -> dict[str, Any] | None:
            ready = schedules.condition("shifting", "Ready") or {}
            failed = (ready.get("reason"), ready.get("observedGeneration")) == (
                "TemporalUnavailable",
                2,
            )
            return schedules.get("shifting")["status"] if failed else None

        status = wait_until(edit_failed, what="the edit to wait for Temporal", timeout=60)
        assert status["summary"] == "0 6 * * *", "what Temporal still runs"
        assert status["pendingSummary"] == "30 7 * * 1-5"
        row = columns(kubectl("get", "schedules", "-n", outage_namespace).stdout)["shifting"]
        assert (row["SCHEDULE"], row["REASON"]) == ("0 6 * * *", "TemporalUnavailable"), row
        assert "PENDING" not in row
        wide = columns(kubectl("get", "schedules", "-n", outage_namespace, "-o", "wide").stdout)
        assert wide["shifting"]["PENDING"] == "30 7 * * 1-5", wide

        # A delete waits for Temporal (it may hold the schedule) and says why meanwhile.
        schedules.delete("shifting")
        found = schedules.wait_condition("shifting", "Ready", "False", "TemporalUnavailable")
        wait_until(
            lambda: "finalizer stays" in str(schedules.condition("shifting", "Ready")),
            what="the condition to say why the delete waits",
        )
        assert found is not None

        server = DevServer(config, log_path=tmp_path / "temporal-again.log")
        server.start()
        wait_gone(schedules, "shifting", timeout=60)
    finally:
        lonely.stop()
        server.stop()


def reconciles(operator: OperatorProcess) -> float:
    """Schedule reconciles the operator has finished, whatever their result."""
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith('controller_runtime_reconcile_total{controller="schedule"'):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_quiet_resync_writes_nothing_with_runs_in_flight(
    kube: KubeAccess,
    crds: None,
    api_client: k8s.ApiClient,
    outage_namespace: str,
    policy_namespace: str,
    temporal_settings: TemporalSettings,
    client: Client,
    tmp_path: Path,
    task_queue: str,
) -> None:
    env = operator_env(
        kube,
        temporal_settings.address,
        namespaces=[outage_namespace],
        policy_namespace=policy_namespace,
    )
    lonely = OperatorProcess(env, tmp_path / "operator")  # counts this namespace's only
    lonely.start()
    schedules = Resources(
        k8s.CustomObjectsApi(api_client), outage_namespace, "schedules", "Schedule"
    )
    try:
        # Nothing polls the task queue: the triggered run stays in flight (Temporal lists
        # running workflows for every overlap policy but AllowAll).
        schedules.create("busy", spec(task_queue))
        schedules.wait_synced("busy")
        schedules.patch("busy", {"metadata": {"annotations": {"muster.io/trigger": "t1"}}})
        wait_until(
            lambda: schedules.get("busy")["status"].get("runningWorkflows"),
            what="a running workflow in status",
        )
        version = schedules.get("busy")["metadata"]["resourceVersion"]
        start = reconciles(lonely)
        wait_until(lambda: reconciles(lonely) >= start + 3, what="three more resyncs")
        assert schedules.get("busy")["metadata"]["resourceVersion"] == version, "a write"
        # The API server drops a no-op PATCH without a new resourceVersion, so also: no
        # status the operator sent differed from what was stored (kopf compares and warns;
        # such a patch would be sent again at every resync).
        log = lonely.log.with_suffix(f".{lonely.starts}.log").read_text()
        assert "finished with inconsistencies" not in log, log[-3000:]
        schedules.delete("busy")
        wait_gone(schedules, "busy")
    finally:
        lonely.stop()
    assert await describe_or_none(client, f"{outage_namespace}.busy") is None


async def test_pending_clears_once_synced(
    schedules: Resources, task_queue: str, kubectl: Run, namespace: str
) -> None:
    schedules.create("steady", spec(task_queue))
    schedules.wait_synced("steady")
    schedules.patch("steady", {"spec": {"cron": ["45 8 * * *"]}})
    body = schedules.wait_synced("steady")
    assert body["status"]["summary"] == "45 8 * * *"
    assert "pendingSummary" not in body["status"]


def test_a_resync_migrates_an_old_copy_of_the_spec(
    schedules: Resources, task_queue: str, namespace: str
) -> None:
    """A status written by an earlier operator (a full copy of the spec in status.kopf) is
    replaced by digests at the next resync, without being taken for a change."""
    schedules.create("legacy", spec(task_queue))
    synced = schedules.wait_synced("legacy")
    essence = {"spec": synced["spec"]}
    status_api = schedules.api
    status_api.patch_namespaced_custom_object_status(
        "muster.io",
        "v1alpha1",
        namespace,
        "schedules",
        "legacy",
        {
            "status": {
                "kopf": {
                    "lastHandledDigest": None,
                    "lastHandledConfiguration": json.dumps(essence, separators=(",", ":")),
                }
            }
        },
    )

    def migrated() -> dict[str, Any] | None:
        kopf_status = schedules.get("legacy")["status"].get("kopf") or {}
        if "lastHandledConfiguration" in kopf_status or "lastHandledDigest" not in kopf_status:
            return None
        return kopf_status

    wait_until(migrated, what="the old copy to be replaced by digests")
    after = schedules.get("legacy")["status"]
    assert after["lastSyncTime"] == synced["status"]["lastSyncTime"], "taken for a change"
