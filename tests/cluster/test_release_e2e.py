"""End to end through Kubernetes only, on the release the chart installed: the API server
calls the operator's admission webhook at its Service over TLS (a Schedule the operator
would refuse is refused at ``kubectl apply``, after the webhook asked Temporal); an
``ApprovalPolicy`` and a ``Schedule`` applied with kubectl in another namespace are made
Ready by the in-cluster operator with nothing but its ServiceAccount, and the policy reaches
the approval worker's mounted folder; ``kubectl muster trigger`` starts one run, which
completes on the in-cluster scheduling worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from tests.cluster.release import RELEASE, Release
from tests.cluster.support import apply
from tests.helpers import REPO, async_wait_until, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DENIED = 'admission webhook "schedules.validate.muster.io" denied the request: '


def example(path: str) -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "examples" / path).read_text()))


@pytest.fixture(scope="module")
def team(release: Release, node_core: client.CoreV1Api) -> Iterator[str]:
    """A team's namespace, where people apply Schedules and ApprovalPolicies (the operator
    watches the whole cluster). Deleted at the end, while the operator still runs to remove
    its finalizers."""
    name = f"team-{uuid.uuid4().hex[:6]}"
    labels = {"muster.io/cluster-test": "true", "pod-security.kubernetes.io/enforce": "restricted"}
    node_core.create_namespace({"metadata": {"name": name, "labels": labels}})  # type: ignore[arg-type]
    yield name
    release.kubectl("delete", "-n", name, "schedules,approvalpolicies", "--all", "--wait",
                    "--timeout=120s", timeout=150)  # fmt: skip
    try:
        node_core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def condition(release: Release, namespace: str, kind: str, name: str, type_: str) -> Any:
    status = json.loads(
        release.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout
    ).get("status", {})
    found = [c for c in status.get("conditions") or [] if c["type"] == type_]
    return found[0] if found else None


def wait_ready(release: Release, namespace: str, kind: str, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        found = condition(release, namespace, kind, name, "Ready")
        return found if found and found["status"] == "True" else None

    return wait_until(ready, what=f"{kind} {name} to be Ready", timeout=120, interval=1)


@pytest.fixture(scope="module")
def applied(release: Release, team: str) -> dict[str, str]:
    """The large-orders policy and the health-check schedule, applied and Ready."""
    apply(release.kubectl, team, example("policies/large-orders.yaml"),
          example("schedules/health-check.yaml"))  # fmt: skip
    wait_ready(release, team, "schedule", "health-check")
    release.wait_policy(team, "large-orders")
    return {"policy": "large-orders", "schedule": "health-check"}


@asynccontextmanager
async def temporal(release: Release) -> AsyncIterator[Client]:
    """A client of the release's dev server, through a port-forward."""
    with release.forward("temporal", 7233) as address:
        yield await Client.connect(address)


def test_the_webhook_answers_the_api_server_in_the_cluster(release: Release, team: str) -> None:
    bad = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "elsewhere"},
        "spec": {
            "cron": ["0 6 * * *"],
            "temporal": {"namespace": "no-such-namespace"},
            "workflow": {"type": "HealthCheck", "taskQueue": "muster-scheduling"},
        },
    }
    refused = release.kubectl("apply", "-n", team, "-f", "-", input=json.dumps(bad), check=False)
    assert refused.returncode == 1, refused.stdout
    # Word for word the operator's message: it asked the dev server, in the cluster.
    assert (
        DENIED + "spec.temporal.namespace: Temporal namespace 'no-such-namespace' does not exist"
        in refused.stderr
    ), refused.stderr
    assert release.kubectl("get", "-n", team, "schedule", "elsewhere", check=False).returncode


def test_the_operator_makes_a_policy_and_a_schedule_ready_with_its_serviceaccount(
    release: Release, team: str, applied: dict[str, str]
) -> None:
    (operator,) = release.pods("operator")
    account = f"system:serviceaccount:{release.namespace}:{RELEASE}-operator"
    assert operator["spec"]["serviceAccountName"] == f"{RELEASE}-operator"
    # What it needed, its ServiceAccount may do; what it did not, it may not.
    for verb, resource, where in [
        ("patch", "schedules.muster.io/status", team),
        ("patch", "approvalpolicies.muster.io", team),
        ("create", "events", team),
        ("patch", f"configmaps/{RELEASE}-approval-policies", release.namespace),
    ]:
        answer = release.kubectl("auth", "can-i", verb, resource, "-n", where, "--as", account,
                                 check=False)  # fmt: skip
        assert answer.stdout.strip() == "yes", (verb, resource, answer.stdout)
    denied = release.kubectl("auth", "can-i", "list", "secrets", "-n", team, "--as", account,
                             check=False)  # fmt: skip
    assert denied.stdout.strip() == "no"

    ready = condition(release, team, "schedule", applied["schedule"], "Synced")
    assert ready is not None
    assert ready["status"] == "True", ready

    def observed() -> dict[str, Any] | None:
        found: dict[str, Any] = json.loads(
            release.kubectl("get", "-n", team, "schedule", applied["schedule"], "-o", "json").stdout
        )["status"]
        return found if found.get("nextActionTimes") else None

    # What Temporal says of the schedule is written on the next sync after Ready.
    status = wait_until(observed, what="the schedule's next runs in its status", timeout=120,
                        interval=1)  # fmt: skip
    assert status["scheduleId"] == f"{team}.{applied['schedule']}"
    # The policy is published where the gateway and the approval worker read it.
    published = release.json("configmap", f"{RELEASE}-approval-policies")["data"]
    assert any("large-orders" in text for text in published.values()), published


async def test_kubectl_muster_trigger_runs_on_the_in_cluster_scheduling_worker(
    release: Release, team: str, applied: dict[str, str]
) -> None:
    token = f"cluster-{uuid.uuid4().hex[:8]}"
    scripts = Path(sys.executable).parent  # where kubectl-muster is installed
    env = {**release.cluster.env(), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    kubectl = scripts / "kubectl"
    triggered = await asyncio.to_thread(
        subprocess.run,
        [str(kubectl), "muster", "trigger", applied["schedule"], "-n", team, "--token", token],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert f"schedule.muster.io/{applied['schedule']} triggered" in triggered.stdout

    schedulers = {p["metadata"]["name"] for p in release.pods("scheduling")}
    async with temporal(release) as temporal_client:
        prefix = f"{team}.{applied['schedule']}-"

        async def completed() -> Any:
            async for execution in temporal_client.list_workflows(
                f"WorkflowType = 'HealthCheck' AND WorkflowId STARTS_WITH '{prefix}'"
            ):
                if execution.status == WorkflowExecutionStatus.COMPLETED:
                    return execution
            return None

        run = await async_wait_until(completed, what="the triggered run to complete", timeout=120)
        history = await temporal_client.get_workflow_handle(
            run.id, run_id=run.run_id
        ).fetch_history()
    workers = {
        event.workflow_task_completed_event_attributes.identity.partition("@")[2]
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    }
    # Worker identities are <service>-<n>@<hostname>: the hostname is the pod's name.
    assert workers
    assert workers <= schedulers, (workers, schedulers)
