"""Muster's workflow sandbox against the real dev server: it compiles the sandbox's glue code
once per process and keeps everything the sandbox guarantees — restricted calls still fail
the workflow, and every run still gets its own fresh copy of the workflow's module."""

from __future__ import annotations

import datetime
from datetime import timedelta

from temporalio import activity, workflow

# The sandbox imports this module afresh for every run; the test machinery is passed through.
with workflow.unsafe.imports_passed_through():
    import pytest
    from temporalio.client import Client, WorkflowFailureError
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

    from muster_runtime.sandbox import compiled, muster_workflow_runner
    from tests.helpers import unique

pytestmark = pytest.mark.timeout(120)

RUNS_OF_THIS_MODULE = 0
"""Incremented by every run: a fresh module per run sees 0 before its own increment."""


@activity.defn(name="sandbox-test.echo")
async def echo(value: str) -> str:
    return value


@workflow.defn(name="SandboxTestCounter")
class Counter:
    """Counts its own module's runs and schedules one activity (so payloads get contexts)."""

    @workflow.run
    async def run(self, value: str) -> list[object]:
        global RUNS_OF_THIS_MODULE  # noqa: PLW0603 - the point of the test
        RUNS_OF_THIS_MODULE += 1
        echoed = await workflow.execute_activity(
            echo, value, start_to_close_timeout=timedelta(seconds=10)
        )
        return [echoed, RUNS_OF_THIS_MODULE]


@workflow.defn(name="SandboxTestClock")
class ReadsTheClock:
    """Reads the wall clock, which the sandbox forbids."""

    @workflow.run
    async def run(self) -> str:
        return datetime.datetime.now().isoformat()  # refused by the sandbox


async def test_runs_are_isolated_and_the_glue_is_compiled_once(
    client: Client, task_queue: str
) -> None:
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[Counter],
        activities=[echo],
        workflow_runner=muster_workflow_runner(),
        max_cached_workflows=0,  # every activation rebuilds the instance: the most glue
    ):
        first = await client.execute_workflow(
            Counter.run, "one", id=unique("sandbox"), task_queue=task_queue
        )
        compiled_after_first = compiled.cache_info()
        second = await client.execute_workflow(
            Counter.run, "two", id=unique("sandbox"), task_queue=task_queue
        )
        compiled_after_second = compiled.cache_info()
    # Each run imported the workflow's module afresh, in the sandbox.
    assert first == ["one", 1]
    assert second == ["two", 1]
    assert RUNS_OF_THIS_MODULE == 0
    # The second run (several activations, an activity's payloads) compiled nothing new.
    assert compiled_after_second.misses == compiled_after_first.misses
    assert compiled_after_second.hits > compiled_after_first.hits + 5


async def test_restricted_calls_still_fail_the_workflow(client: Client, task_queue: str) -> None:
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[ReadsTheClock],
        workflow_runner=muster_workflow_runner(),
        workflow_failure_exception_types=[RestrictedWorkflowAccessError],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await client.execute_workflow(
                ReadsTheClock.run, id=unique("sandbox"), task_queue=task_queue
            )
    assert "Cannot access datetime.datetime.now" in str(failed.value.cause)
