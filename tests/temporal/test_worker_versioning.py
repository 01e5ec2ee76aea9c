"""Worker Versioning with real worker processes, on the dev server and on the real Temporal
server (their launchers turn Worker Deployments on): a fulfillment worker
started with a build id registers its version in its deployment and makes it current; a
pinned order that waits (for an approval) stays on that build while a second build of the
worker becomes current and takes new orders; the waiting order then finishes on the first
build. Also: a worker with ``promote=external`` registers its version and leaves the
current one alone, and the readiness check says which version a worker runs as."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from muster_api.fulfillment import (
    WORKFLOW,
    FulfillmentInput,
    FulfillmentOptions,
    OrderResult,
    OrderStatus,
)
from muster_dev.process import ManagedProcess
from tests.fulfillment_support import ApprovalStandIn, BackendsProcess, order, sku, start_backends
from tests.helpers import (
    ON_BOTH_SERVERS,
    async_wait_until,
    free_port,
    http_get,
    start_service,
    wait_until,
)

pytestmark = [pytest.mark.timeout(300), ON_BOTH_SERVERS]


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendsProcess]:
    running = start_backends(tmp_path_factory.mktemp("versioning"))
    yield running
    running.process.stop()


class Build:
    """One fulfillment worker process running as ``deployment.build_id``."""

    def __init__(
        self,
        env: dict[str, str],
        backends: BackendsProcess,
        tmp: Path,
        *,
        task_queue: str,
        deployment: str,
        build_id: str,
        promote: str = "on-start",
    ) -> None:
        self.port = free_port()
        self.build_id = build_id
        self.process: ManagedProcess = start_service(
            "muster_fulfillment",
            {
                **env,
                **backends.urls_env(),
                "MUSTER_FULFILLMENT_HTTP__PORT": str(self.port),
                "MUSTER_FULFILLMENT_WORKER__TASK_QUEUE": task_queue,
                "MUSTER_FULFILLMENT_WORKER__DEPLOYMENT_NAME": deployment,
                "MUSTER_FULFILLMENT_WORKER__BUILD_ID": build_id,
                "MUSTER_FULFILLMENT_WORKER__PROMOTE": promote,
            },
            tmp / f"fulfillment-{build_id}.log",
        )

    def readiness(self) -> dict[str, Any] | None:
        try:
            status, body = http_get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)
        except OSError:
            return None
        assert self.process.running(), self.process.tail()
        return json.loads(body) if status == 200 else None

    def wait_ready(self) -> dict[str, Any]:
        found: dict[str, Any] = wait_until(
            self.readiness, what=f"worker {self.build_id} ready", timeout=90
        )
        return found


async def deployment(client: Client, name: str) -> Any:
    request = DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=name)
    return (
        await client.workflow_service.describe_worker_deployment(request)
    ).worker_deployment_info


async def start(
    client: Client, backends: BackendsProcess, queues: tuple[str, str], total_minor: int
) -> WorkflowHandle[Any, OrderResult]:
    task_queue, approval_queue = queues
    item = sku()
    backends.set_stock(item, 1)
    placed = order([(item, 1, total_minor)])
    return await client.start_workflow(
        WORKFLOW,
        FulfillmentInput(
            order=placed,
            options=FulfillmentOptions(
                step_timeout_seconds=5.0, approval_task_queue=approval_queue
            ),
        ),
        id=f"order-{placed.order_id}",
        task_queue=task_queue,
        result_type=OrderResult,
    )


async def build_of(handle: WorkflowHandle[Any, Any]) -> tuple[str, int]:
    """The build a workflow runs on, and its versioning behaviour."""
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id, info.behavior


async def test_a_pinned_order_stays_on_its_build_while_a_new_build_becomes_current(
    client: Client, temporal_env: dict[str, str], backends: BackendsProcess, tmp_path: Path
) -> None:
    task_queue = f"orders-{uuid.uuid4().hex[:8]}"
    approval_queue = f"{task_queue}-approval"
    name = f"muster-fulfillment-{uuid.uuid4().hex[:6]}"
    v1 = Build(temporal_env, backends, tmp_path, task_queue=task_queue, deployment=name,
               build_id="v1")  # fmt: skip
    v2: Build | None = None
    try:
        ready = v1.wait_ready()
        assert ready["checks"]["worker"]["detail"] == (
            f"polling task queue {task_queue} as {name}.v1"
        )
        info = await deployment(client, name)
        assert info.routing_config.current_deployment_version.build_id == "v1"
        assert [v.deployment_version.build_id for v in info.version_summaries] == ["v1"]

        async with Worker(client, task_queue=approval_queue, workflows=[ApprovalStandIn]):
            waiting = await start(client, backends, (task_queue, approval_queue), 150_000)

            async def awaiting_approval() -> bool:
                try:
                    child = client.get_workflow_handle(f"approval-order-{waiting.id[6:]}")
                    await child.describe()
                    return True
                except Exception:
                    return False

            await async_wait_until(awaiting_approval, what="the order's approval", timeout=60)
            assert await build_of(waiting) == ("v1", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)

            v2 = Build(temporal_env, backends, tmp_path, task_queue=task_queue, deployment=name,
                       build_id="v2")  # fmt: skip
            v2.wait_ready()
            info = await deployment(client, name)
            assert info.routing_config.current_deployment_version.build_id == "v2"

            fresh = await start(client, backends, (task_queue, approval_queue), 5_000)
            assert (await fresh.result()).status == OrderStatus.FULFILLED
            assert (await build_of(fresh))[0] == "v2"
            assert (await build_of(waiting))[0] == "v1"  # pinned: not moved

            child = client.get_workflow_handle(f"approval-order-{waiting.id[6:]}")
            await child.signal(ApprovalStandIn.decide, args=[True, ""])
            assert (await waiting.result()).status == OrderStatus.FULFILLED

        # Every workflow task of the waiting order was completed by build v1.
        history = await waiting.fetch_history()
        builds = {
            e.workflow_task_completed_event_attributes.deployment_version.build_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        }
        assert builds == {"v1"}
    finally:
        v1.process.stop()
        if v2 is not None:
            v2.process.stop()


async def test_promote_external_leaves_the_current_version_alone(
    client: Client, temporal_env: dict[str, str], backends: BackendsProcess, tmp_path: Path
) -> None:
    task_queue = f"orders-{uuid.uuid4().hex[:8]}"
    name = f"muster-fulfillment-{uuid.uuid4().hex[:6]}"
    worker = Build(temporal_env, backends, tmp_path, task_queue=task_queue, deployment=name,
                   build_id="v7", promote="external")  # fmt: skip
    try:
        worker.wait_ready()
        info = await deployment(client, name)
        assert [v.deployment_version.build_id for v in info.version_summaries] == ["v7"]
        assert info.routing_config.current_deployment_version.build_id == ""
    finally:
        worker.process.stop()
