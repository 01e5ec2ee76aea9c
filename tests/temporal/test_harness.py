"""The test harness itself: the session's dev server and real server have Muster's search
attributes (seen by the Temporal CLI too), registration is idempotent and refuses type
conflicts (on both servers), and the time-skipping server skips a day-long timer in
moments."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from muster_api import search_attributes as sa
from muster_dev.temporal_server import ensure_namespace
from muster_runtime import search_attributes as registration
from muster_runtime.settings import TemporalSettings
from tests.helpers import ON_BOTH_SERVERS, unique


@ON_BOTH_SERVERS
async def test_search_attributes_are_registered_and_idempotent(client: Client) -> None:
    registered = await registration.registered(client, "default")
    for key in sa.ALL:
        assert registered[key.name] == int(key.indexed_value_type)
    assert await registration.ensure_search_attributes(client, "default") == []


@ON_BOTH_SERVERS
def test_temporal_cli_lists_muster_attributes(
    client: Client, temporal_settings: TemporalSettings
) -> None:
    temporal = Path(sys.executable).parent / "temporal"
    result = subprocess.run(
        [str(temporal), "operator", "search-attribute", "list", "--address",
         temporal_settings.address],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    for key in sa.ALL:
        assert key.name in result.stdout


@ON_BOTH_SERVERS
async def test_registered_attributes_are_usable_when_registration_returns(
    client: Client,
) -> None:
    # The real server lists a new attribute at once but answers queries and validates starts
    # from its namespace cache, refreshed every 2 s (it runs without the forced refresh);
    # registration returns only once a query naming every attribute is accepted.
    namespace = unique("ns")
    assert await ensure_namespace(client, namespace, timedelta(days=1))
    added = await registration.ensure_search_attributes(client, namespace)
    assert added == sorted(key.name for key in sa.ALL)
    scoped = Client(client.service_client, namespace=namespace)
    values: dict[int, Any] = {
        IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "probe",
        IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: ["probe"],
        IndexedValueType.INDEXED_VALUE_TYPE_INT: 1,
        IndexedValueType.INDEXED_VALUE_TYPE_BOOL: True,
    }
    attributes = TypedSearchAttributes(
        [SearchAttributePair(key, values[int(key.indexed_value_type)]) for key in sa.ALL]
    )
    handle = await scoped.start_workflow(
        "Probe", id=unique("probe"), task_queue=unique("nobody"), search_attributes=attributes
    )
    try:
        query = " AND ".join(f"{key.name} IS NOT NULL" for key in sa.ALL)
        assert (await scoped.count_workflows(query)).count >= 0
    finally:
        await handle.terminate("probe done")


@pytest.mark.parametrize("temporal_target", ["server"], indirect=True, scope="module")
async def test_the_real_server_takes_visibility_calls_at_a_gateways_pace(client: Client) -> None:
    # Temporal's default allows 10 visibility calls per second per namespace, and the SDK
    # retries a throttled one a second later: a gateway listing inboxes back to back stalled
    # (the approval bench's list p99 read 1.2 s). The launcher allows 100; here 40 lists go
    # out at once, each asked without the SDK's retries, and none is refused.
    request = ListWorkflowExecutionsRequest(namespace=client.namespace, page_size=1)
    answers = await asyncio.gather(
        *(client.workflow_service.list_workflow_executions(request, retry=False)
          for _ in range(40)),
        return_exceptions=True,
    )  # fmt: skip
    refused = [answer for answer in answers if isinstance(answer, BaseException)]
    assert not refused, refused[0]


@ON_BOTH_SERVERS
async def test_conflicting_type_is_refused(client: Client) -> None:
    # A namespace of its own, so the shared one keeps its attribute slots. The real server
    # serves a new namespace only after its namespace cache refreshes: ensure_namespace
    # waits for that.
    namespace = unique("ns")
    assert await ensure_namespace(client, namespace, timedelta(days=1))
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
