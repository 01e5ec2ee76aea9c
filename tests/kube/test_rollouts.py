"""Worker rollouts (``WorkerDeployment``) with the real operator, the real API server, the dev
server and real approval and fulfillment workers; the kube tier has no kubelet, so
:class:`ProcessNode` runs the pods of the operator's Deployments and Jobs as processes.

Covered: issue 21's proof (50 approvals and 50 orders through a rollout of both workers:
none fails or hits a non-determinism error, orders finish on v1, v1's pods stay until it
drained, a v3 that breaks replay never becomes current); a first build becomes current
once it polls; a new build's replay gate replays the running approvals on its code in a Job
and it becomes current, while the old build, with no pinned workflow, drains and goes; a
build whose code does not replay running approvals never becomes current, and pointing back
to the current build ends that rollout; pointing back to the previous build makes it
current at once, without a gate; a ramping build that a real Prometheus sees failing with
non-determinism errors (scraping the workers, with the chart's alert rules) is rolled back,
with an Event and a condition, and the approvals it broke finish on the old build;
``kubectl get`` and ``kubectl muster versions`` show each build, its state and its running
workflows."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from muster_api.approval import (
    DECIDE_SIGNAL,
    DECIDE_UPDATE,
    WORKFLOW,
    ApprovalResult,
    Decision,
)
from muster_api.approval import workflow_id as approval_workflow_id
from muster_api.fulfillment import WORKFLOW as ORDER_WORKFLOW
from muster_api.fulfillment import (
    FulfillmentInput,
    FulfillmentOptions,
    OrderResult,
    OrderStatus,
    approval_request_id,
)
from muster_dev.kube import KubeAccess
from muster_dev.process import free_port
from muster_dev.prometheus import PrometheusConfig, PrometheusServer
from muster_runtime.polling import PollTimeout, async_wait_until, wait_until
from muster_runtime.settings import TemporalSettings
from tests.fulfillment_support import BackendsProcess, order, sku, start_backends
from tests.kube.operator_support import OperatorProcess, Resources, delete_all, events, operator_env
from tests.kube.pods import Image, ProcessNode
from tests.kube.rollout_support import (
    REPO,
    approval_files,
    approval_request,
    approval_v2,
    approval_v3,
    fulfillment_v2,
    non_determinism_failures,
    task_builds,
    worker_deployment,
)
from tests.kube.support import Run

pytestmark = [pytest.mark.kube, pytest.mark.timeout(600)]

ALERT_RULES = REPO / "charts" / "muster" / "files" / "alerts.yaml"
GATE = ["muster_approval.workflows:Approval"]
V1, V2, V3 = "muster-approval:v1", "muster-approval:v2", "muster-approval:v3"
F1, F2 = "muster-fulfillment:v1", "muster-fulfillment:v2"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rollouts")


@pytest.fixture(scope="module")
def images(root: Path) -> dict[str, Image]:
    """The builds: v1 is the checkout's code; v2 adds a first command behind a patch; v3
    adds the same command without one (it breaks every running approval)."""
    port = "MUSTER_APPROVAL_HTTP__PORT"
    orders = "MUSTER_FULFILLMENT_HTTP__PORT"
    return {
        V1: Image("muster_approval", port),
        V2: Image("muster_approval", port, approval_v2(root / "approval-v2")),
        V3: Image("muster_approval", port, approval_v3(root / "approval-v3")),
        F1: Image("muster_fulfillment", orders),
        F2: Image("muster_fulfillment", orders, fulfillment_v2(root / "fulfillment-v2")),
    }


@pytest.fixture(scope="module")
def prometheus(root: Path) -> Iterator[str]:
    """A real Prometheus with the chart's alert rules, scraping the node's pods."""
    port = free_port()
    server = PrometheusServer(
        PrometheusConfig(
            port=port,
            data_dir=root / "prometheus",
            targets={},
            file_targets={"pods": str(root / "targets" / "*.json")},
            rule_files=[ALERT_RULES],
            interval="1s",
        )
    )
    server.start()
    yield server.config.url
    server.stop()


@pytest.fixture(scope="module")
def rollout_operator(
    kube: KubeAccess,
    api_client: k8s.ApiClient,
    temporal_settings: TemporalSettings,
    crds: None,
    policy_namespace: str,
    prometheus: str,
    root: Path,
) -> Iterator[OperatorProcess]:
    """The operator, reconciling WorkerDeployments every second, alerts from Prometheus."""
    env = operator_env(
        kube, temporal_settings.address, namespaces=["t-*"], policy_namespace=policy_namespace
    )
    env["MUSTER_OPERATOR_ROLLOUT__INTERVAL_SECONDS"] = "1"
    env["MUSTER_OPERATOR_ROLLOUT__PROMETHEUS_URL"] = prometheus
    process = OperatorProcess(env, root / "operator")
    process.start()
    yield process
    if process.process is not None:
        delete_all(k8s.CustomObjectsApi(api_client), "t-")
    process.stop()


@pytest.fixture
def node(
    api_client: k8s.ApiClient, namespace: str, images: dict[str, Image], root: Path
) -> Iterator[ProcessNode]:
    running = ProcessNode(
        api_client, namespace, images, root / "nodes" / namespace,
        targets_file=root / "targets" / f"{namespace}.json", extra_env={
            "OTEL_SDK_DISABLED": "true", "MUSTER_APPROVAL_LOG__FORMAT": "text",
            "MUSTER_FULFILLMENT_LOG__FORMAT": "text",
        },
    )  # fmt: skip
    running.start()
    yield running
    running.stop()


@pytest.fixture
def workers(
    api_client: k8s.ApiClient, namespace: str, rollout_operator: OperatorProcess
) -> Resources:
    return Resources(
        k8s.CustomObjectsApi(api_client), namespace, "workerdeployments", "WorkerDeployment"
    )


class Worker:
    """One WorkerDeployment of the approval worker under test."""

    def __init__(
        self,
        workers: Resources,
        node: ProcessNode,
        temporal: TemporalSettings,
        root: Path,
        *,
        service: str = "approval",
        env: dict[str, str] | None = None,
        gate: list[str] | None = None,
    ) -> None:
        self.workers, self.node = workers, node
        self.name = f"{service}-{uuid.uuid4().hex[:6]}"
        self.task_queue = f"rollout-{uuid.uuid4().hex[:8]}"
        self.prefix = f"MUSTER_{service.upper()}_"
        self.gate = GATE if gate is None else gate
        self.env = {
            "TEMPORAL_ADDRESS": temporal.address,
            "TEMPORAL_NAMESPACE": temporal.namespace,
            f"{self.prefix}WORKER__TASK_QUEUE": self.task_queue,
            f"{self.prefix}WORKER__GRACEFUL_SHUTDOWN_SECONDS": "1",
            **(approval_files(root / self.name) if service == "approval" else {}),
            **(env or {}),
        }

    def create(self, image: str, **spec: Any) -> None:
        body = worker_deployment(
            self.name, image, prefix=self.prefix, env=self.env, workflows=self.gate
        )
        body.update(spec)
        self.workers.create(self.name, body)

    def deploy(self, image: str, **spec: Any) -> None:
        """What a `helm upgrade` with another image tag does to the resource."""
        body = self.workers.get(self.name)
        containers = body["spec"]["template"]["spec"]["containers"]
        containers[0]["image"] = image
        self.workers.patch(self.name, {"spec": {"template": body["spec"]["template"], **spec}})

    def status(self) -> dict[str, Any]:
        return dict(self.workers.get(self.name).get("status") or {})

    def current(self, prefix: str, timeout: float = 120) -> str:
        """Wait until a build of the image ``prefix`` is current and Ready; its build id."""

        def done() -> str | None:
            status = self.status()
            ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
            current = status.get("currentBuildId") or ""
            if current.startswith(prefix) and ready and ready[0]["status"] == "True":
                return current
            return None

        try:
            found: str = self.node.wait(done, f"a {prefix} build to be current", timeout)
        except (AssertionError, PollTimeout) as exc:
            raise AssertionError(f"{exc}; status: {json.dumps(self.status())[:3000]}") from None
        return found

    def version(self, build: str) -> dict[str, Any]:
        return next(v for v in self.status().get("versions") or [] if v["buildId"] == build)

    def ready_reason(self) -> str | None:
        ready = [c for c in self.status().get("conditions") or [] if c["type"] == "Ready"]
        return ready[0]["reason"] if ready else None


@pytest.fixture
def worker(
    workers: Resources, node: ProcessNode, temporal_settings: TemporalSettings, root: Path
) -> Worker:
    return Worker(workers, node, temporal_settings, root)


async def start_approvals(
    client: Client, worker: Worker, count: int
) -> list[WorkflowHandle[Any, Any]]:
    handles = [
        await client.start_workflow(
            WORKFLOW,
            approval_request(),
            id=f"rollout-{uuid.uuid4().hex[:10]}",
            task_queue=worker.task_queue,
            result_type=ApprovalResult,
        )
        for _ in range(count)
    ]

    async def waiting() -> bool:
        builds = await asyncio.gather(*(task_builds(h) for h in handles))
        return all(builds)

    await async_wait_until(waiting, what="the approvals to wait for people", timeout=60)
    return handles


async def decide(handles: list[WorkflowHandle[Any, Any]]) -> None:
    """Alice approves each request (ten at a time, as people would, not one after another)."""
    limit = asyncio.Semaphore(10)

    async def one(handle: WorkflowHandle[Any, Any]) -> None:
        async with limit:
            await handle.execute_update(
                DECIDE_UPDATE, Decision(approver="alice", verdict="approve")
            )

    await asyncio.gather(*(one(h) for h in handles))


def deployment_gone(api_client: k8s.ApiClient, namespace: str, name: str) -> bool:
    try:
        k8s.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        return bool(exc.status == 404)
    return False


async def test_a_new_build_is_gated_promoted_and_the_old_one_goes(
    worker: Worker,
    node: ProcessNode,
    client: Client,
    api_client: k8s.ApiClient,
    core_api: k8s.CoreV1Api,
    namespace: str,
    kubectl: Run,
    kubectl_muster: Run,
) -> None:
    worker.create(V1)
    v1 = worker.current("v1-", timeout=120)
    v1_pods = worker.version(v1)["deployment"]
    approvals = await start_approvals(client, worker, 5)

    worker.deploy(V2)
    started = time.monotonic()
    v2 = worker.current("v2-")
    promoted_after = time.monotonic() - started
    gate = worker.version(v2)["gate"]
    assert (gate["state"], gate["replayed"]) == ("Passed", 5), gate
    reasons = [e[1] for e in events(core_api, namespace, worker.name)]
    for expected in ("BuildDeployed", "ReplayGateStarted", "Promoted"):
        assert expected in reasons, reasons

    # Approvals auto-upgrade: decided now, they finish on v2 (and replay there first).
    await decide(approvals[:3])
    for handle in approvals[:3]:
        assert (await handle.result()).approved
        assert (await task_builds(handle))[-1] == v2
        assert not await non_determinism_failures(handle)

    # v1 has no pinned workflow: it drains at once, is scaled down, and goes.
    wait_until(lambda: deployment_gone(api_client, namespace, v1_pods),
               what="v1's Deployment to be deleted", timeout=90)  # fmt: skip
    assert node.running(v1_pods) == 0

    # v3 breaks the two approvals still waiting: its gate fails, it never gets work.
    worker.deploy(V3)
    node.wait(lambda: worker.ready_reason() == "ReplayGateFailed", "v3's gate to fail", 120)
    status = worker.status()
    assert status["currentBuildId"] == v2
    v3 = status["targetBuildId"]
    assert worker.version(v3)["gate"]["state"] == "Failed"
    assert "does not replay" in worker.version(v3)["gate"]["message"]
    warnings = [e for e in events(core_api, namespace, worker.name) if e[1] == "ReplayGateFailed"]
    assert len(warnings) == 1
    assert warnings[0][0] == "Warning"

    kubectl_get = kubectl("get", "workerdeployments", "-n", namespace).stdout
    assert worker.name in kubectl_get
    assert v2 in kubectl_get
    assert "ReplayGateFailed" in kubectl_get
    assert f"{v3}=Inactive" in kubectl_get
    versions = kubectl_muster("versions", "-n", namespace).stdout
    assert v2 in versions
    assert v3 in versions
    assert "Current" in versions
    assert "Failed" in versions, versions

    # Pointing back to the current build ends the rollout; v3 never got work and goes.
    worker.deploy(V2)
    worker.current("v2-")
    v3_pods = f"{worker.name}-{v3}"
    wait_until(lambda: deployment_gone(api_client, namespace, v3_pods),
               what="v3's Deployment to be deleted", timeout=60)  # fmt: skip
    await decide(approvals[3:])
    for handle in approvals[3:]:
        assert (await handle.result()).approved
        assert (await task_builds(handle))[-1] == v2
    print(f"\nrollout: v2 current {promoted_after:.1f}s after the deploy (5 approvals gated)")


async def test_pointing_back_to_the_previous_build_restores_it_at_once(
    worker: Worker, node: ProcessNode, api_client: k8s.ApiClient, namespace: str,
    core_api: k8s.CoreV1Api,
) -> None:  # fmt: skip
    keep = {"sunset": {"scaledownDelay": "1h", "deleteDelay": "2h"}}
    worker.create(V1, **keep)
    v1 = worker.current("v1-")
    worker.deploy(V2)
    worker.current("v2-")
    worker.deploy(V1)
    started = time.monotonic()
    assert worker.current("v1-", timeout=30) == v1
    restored_after = time.monotonic() - started
    assert restored_after < 10, f"restoring took {restored_after:.1f}s"
    jobs = k8s.BatchV1Api(api_client).list_namespaced_job(namespace).items
    gated = [(j.metadata.annotations or {})["muster.io/build-id"] for j in jobs if j.metadata]
    assert len(gated) == 1, gated
    assert gated[0].startswith("v2-"), gated
    assert v1 not in gated, "a build that was current before needs no gate"
    assert "Restored" in [e[1] for e in events(core_api, namespace, worker.name)]
    print(f"\nrollback: v1 current again {restored_after:.1f}s after pointing back to it")


async def test_an_alert_for_the_ramping_build_rolls_it_back(
    worker: Worker,
    node: ProcessNode,
    client: Client,
    prometheus: str,
    core_api: k8s.CoreV1Api,
    namespace: str,
) -> None:
    """No gate here, so a build that breaks running approvals gets to ramp: the alert is
    what catches it."""
    worker.create(V1)
    v1 = worker.current("v1-")
    approvals = await start_approvals(client, worker, 12)
    worker.deploy(V3, rollout={
        "strategy": "Progressive", "steps": [{"rampPercentage": 50, "pause": "1h"}],
        "replayGate": {"workflows": []},
    })  # fmt: skip
    node.wait(lambda: worker.status().get("rampingBuildId"), "v3 to ramp", 120)
    v3 = worker.status()["rampingBuildId"]
    # Decided, half the approvals move to the ramping v3 at their next task, and fail there.
    for handle in approvals:
        await handle.signal(DECIDE_SIGNAL, Decision(approver="alice", verdict="approve",
                                                     via="signal"))  # fmt: skip

    def rolled_back() -> dict[str, Any] | None:
        found = [c for c in worker.status().get("conditions") or [] if c["type"] == "RolledBack"]
        return found[0] if found and found[0]["status"] == "True" else None

    condition = node.wait(rolled_back, "the operator to roll v3 back", 180)
    assert condition["reason"] == "MusterNonDeterminismError"
    status = worker.status()
    assert status.get("rampingBuildId") is None
    assert status["currentBuildId"] == v1
    assert "MusterNonDeterminismError" in worker.version(v3)["rolledBack"]
    rollback = [e for e in events(core_api, namespace, worker.name) if e[1] == "RolledBack"]
    assert rollback
    assert rollback[0][0] == "Warning"
    assert v3 in (rollback[0][2] or "")
    # The approvals that failed on v3 are retried on v1 and finish there.
    for handle in approvals:
        assert (await asyncio.wait_for(handle.result(), 120)).approved
        assert (await task_builds(handle))[-1] == v1
    broke = [h for h in approvals if await non_determinism_failures(h)]
    assert broke, "no approval reached v3: the rollback was not caused by them"
    # And v3 stays rolled back: three more reconciles (one a second) leave it so.
    await asyncio.sleep(3)
    assert worker.ready_reason() == "RolledBack"
    assert worker.status()["currentBuildId"] == v1
    print(f"\nauto-rollback: {len(broke)} of {len(approvals)} approvals hit v3, all finished on v1")


@pytest.fixture(scope="module")
def backends(root: Path) -> Iterator[BackendsProcess]:
    running = start_backends(root / "backends")
    yield running
    running.process.stop()


async def start_orders(
    client: Client, orders: Worker, approvals: Worker, backends: BackendsProcess, count: int
) -> list[WorkflowHandle[Any, OrderResult]]:
    """``count`` orders large enough to wait for an approval (a child Approval on the
    approval worker), each of its own SKU."""
    handles = []
    for _ in range(count):
        item = sku()
        backends.set_stock(item, 1)
        placed = order([(item, 1, 150_000)])
        handles.append(
            await client.start_workflow(
                ORDER_WORKFLOW,
                FulfillmentInput(
                    order=placed,
                    options=FulfillmentOptions(
                        step_timeout_seconds=5.0, approval_task_queue=approvals.task_queue
                    ),
                ),
                id=f"order-{placed.order_id}",
                task_queue=orders.task_queue,
                result_type=OrderResult,
            )
        )
    return handles


def child_approval(client: Client, handle: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
    """The Approval a large order waits on."""
    order_id = handle.id.removeprefix("order-")
    return client.get_workflow_handle(approval_workflow_id(approval_request_id(order_id)))


async def approvals_asked(
    client: Client, placed: list[WorkflowHandle[Any, OrderResult]], timeout: float = 180
) -> None:
    """Wait until every order waits on its Approval (which has run its first task)."""
    children = [child_approval(client, h) for h in placed]
    missing = list(range(len(children)))

    async def asked() -> bool:
        for index in list(missing):
            try:
                if await task_builds(children[index]):
                    missing.remove(index)
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise  # NOT_FOUND: the order has not asked for its approval yet
        return not missing

    try:
        await async_wait_until(asked, what="the orders to wait for approval", timeout=timeout)
    except PollTimeout:
        stuck = [(await placed[i].describe()).status for i in missing]
        raise AssertionError(f"{len(missing)} orders ask for no approval: {stuck}") from None


@pytest.mark.timeout(900)  # 7 minutes on two busy cores
async def test_proof_a_rollout_breaks_no_running_request(
    workers: Resources,
    node: ProcessNode,
    temporal_settings: TemporalSettings,
    root: Path,
    backends: BackendsProcess,
    client: Client,
    api_client: k8s.ApiClient,
    namespace: str,
    kubectl_muster: Run,
) -> None:
    """Issue 21's proof: 50 approvals and 50 orders (each waiting for its own approval) run
    on v1; a v2 of both workers changes ``Approval`` (patched: approvals move to it) and
    ``OrderFulfillment`` (unpatched: orders are pinned); every v1 order finishes on v1, every
    approval finishes, none hits a non-determinism error, v1's order pods go only once
    drained, and a v3 that breaks replay never becomes current."""
    approvals = Worker(workers, node, temporal_settings, root)
    orders = Worker(
        workers, node, temporal_settings, root, service="fulfillment", gate=[],
        env={**backends.urls_env(), "MUSTER_FULFILLMENT_APPROVAL__POLICY": "rollout"},
    )  # fmt: skip
    approvals.create(V1)
    orders.create(F1)
    approvals.current("v1-")
    f1 = orders.current("v1-")
    f1_pods = orders.version(f1)["deployment"]

    requests = await start_approvals(client, approvals, 50)
    placed = await start_orders(client, orders, approvals, backends, 50)
    children = [child_approval(client, h) for h in placed]

    await approvals_asked(client, placed)

    # v2 of both workers, as one `helm upgrade` with new image tags would deploy them.
    deployed = time.monotonic()
    approvals.deploy(V2)
    orders.deploy(F2)
    # Orders have no gate (pinned: nothing moves to v2), so they are current first.
    f2 = orders.current("v2-", timeout=240)
    order_promoted = time.monotonic() - deployed
    v2 = approvals.current("v2-", timeout=240)
    approval_promoted = time.monotonic() - deployed
    gate = approvals.version(v2)["gate"]
    assert gate["state"] == "Passed", gate
    assert gate["replayed"] == 50, "50 per type: a sample of the 100 waiting approvals"
    # The orders are pinned to v1: its pods stay, its state says why.
    f1_state = orders.version(f1)
    assert f1_state["state"] == "Draining", f1_state
    assert f1_state["pinnedWorkflows"] == 50, f1_state
    assert node.running(f1_pods) == 1
    table = kubectl_muster("versions", "-n", namespace).stdout
    assert f1 in table
    assert "Draining" in table
    assert f2 in table

    # A new order goes to v2, and finishes there.
    (fresh,) = await start_orders(client, orders, approvals, backends, 1)
    await approvals_asked(client, [fresh])
    await decide([child_approval(client, fresh)])
    assert (await fresh.result()).status == OrderStatus.FULFILLED
    assert set(await task_builds(fresh)) == {f2}

    # v3 does not replay the waiting approvals: it never becomes current.
    approvals.deploy(V3)
    node.wait(lambda: approvals.ready_reason() == "ReplayGateFailed", "v3's gate to fail", 180)
    assert approvals.status()["currentBuildId"] == v2
    approvals.deploy(V2)
    approvals.current("v2-")

    # Everyone decides: approvals finish on v2, orders on v1.
    await decide(requests)
    await decide(children)
    results = [await h.result() for h in requests]
    outcomes = [await h.result() for h in placed]
    closed = [(await h.describe()).close_time for h in placed]
    finished = max(c.timestamp() for c in closed if c is not None)
    failed = sum(not r.approved for r in results) + sum(
        o.status != OrderStatus.FULFILLED for o in outcomes
    )
    assert failed == 0, "every request finishes as it would have without the rollout"
    for handle in placed:
        assert set(await task_builds(handle)) == {f1}, f"{handle.id} left v1"
    for handle in [*requests, *children]:
        assert (await task_builds(handle))[-1] == v2
    broken = [h.id for h in [*requests, *children, *placed] if await non_determinism_failures(h)]
    assert broken == [], "no workflow hit a non-determinism error"

    # v1's order pods go once it drained (its last order finished), not before.
    wait_until(lambda: deployment_gone(api_client, namespace, f1_pods),
               what="v1's order Deployment to be deleted", timeout=180)  # fmt: skip
    # The node's clock is monotonic; as wall-clock time, to compare with Temporal's.
    offset = time.time() - time.monotonic()
    stopped = [t + offset for t, name, count in node.timeline if name == f1_pods and count == 0]
    assert stopped, node.timeline
    assert stopped[0] > finished, "v1's pods stopped while an order still ran on them"
    print(
        f"\nproof: orders v2 current {order_promoted:.1f}s and approvals v2 (gate: 50 "
        f"replayed) {approval_promoted:.1f}s after the deploy; v1's order pods stopped "
        f"{stopped[0] - finished:.1f}s after its last order finished; "
        f"{len(results)} approvals + {len(outcomes)} orders (+{len(children)} order "
        f"approvals), failed: {failed}"
    )
