"""The test harness itself: the session dev server has Muster's search attributes (seen by
the Temporal CLI too), registration is idempotent and refuses type conflicts, and the
time-skipping server skips a day-long timer in moments."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from muster_api import search_attributes as sa
from muster_dev.temporal import DevServer
from muster_runtime import search_attributes as registration
from tests.helpers import unique


async def test_search_attributes_are_registered_and_idempotent(client: Client) -> None:
    registered = await registration.registered(client, "default")
    for key in sa.ALL:
        assert registered[key.name] == int(key.indexed_value_type)
    assert await registration.ensure_search_attributes(client, "default") == []


def test_temporal_cli_lists_muster_attributes(client: Client, dev_server: DevServer) -> None:
    temporal = Path(sys.executable).parent / "temporal"
    result = subprocess.run(
        [str(temporal), "operator", "search-attribute", "list", "--address",
         dev_server.config.address],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for key in sa.ALL:
        assert key.name in result.stdout


async def test_conflicting_type_is_refused(client: Client) -> None:
    # A namespace of its own, so the shared one keeps its attribute slots.
    namespace = unique("ns")
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    name = "MusterPattern"
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_INT},
            namespace=namespace,
        )
    )
    with pytest.raises(
        registration.SearchAttributeConflict, match="MusterPattern is INDEXED_VALUE_TYPE_INT"
    ):
        await registration.ensure_search_attributes(client, namespace, [sa.PATTERN])


@workflow.defn(sandboxed=False)
class WaitADay:
    """Sleeps a day; only a time-skipping server finishes it in a test."""

    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(timedelta(days=1))
        return "a day later"


async def test_time_skipping_server_skips_a_day(time_skipping_env: WorkflowEnvironment) -> None:
    task_queue = unique("tq")
    async with Worker(time_skipping_env.client, task_queue=task_queue, workflows=[WaitADay]):
        result = await time_skipping_env.client.execute_workflow(
            WaitADay.run, id=unique("wait"), task_queue=task_queue
        )
    assert result == "a day later"
