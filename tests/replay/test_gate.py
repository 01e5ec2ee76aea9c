"""The replay gate catches what it must and lets through what is safe.

Test-only variants of the canary workflow, registered under its real type name
``CanaryPing``, replay the committed ``CanaryPing/ping.json`` (recorded by today's code):

- a new timer before the activity (a different command sequence) fails with a
  non-determinism error; so does a changed activity timeout, which Temporal's plain
  replayer lets through and the gate's argument comparison does not;
- the same timer behind ``workflow.patched`` passes; a history recorded with the patched
  code on a real dev server replays too, so histories from before and after the patch
  both run on the patched code;
- retiring the patch with ``deprecate_patch`` replays the after-patch history and fails
  the before-patch one, which is why a patch is retired only once no workflow that
  started before it can still be running.

Also: Approval's committed histories hold such a pair for a real patch (before and after
``notifications-words-decided-by``), and both replay on today's code.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from muster_api import search_attributes as sa
from muster_approval.workflows import PEOPLE_PATCH, Approval
from muster_runtime.canary.activities import CanaryActivities
from muster_runtime.canary.models import EchoInput, PingInput, PingResult
from muster_runtime.canary.workflows import CanaryPing
from muster_runtime.replay import ReplayMismatch, load_history, main, replay_history
from tests.replay.recording import HISTORIES

BEFORE = HISTORIES / "CanaryPing" / "ping.json"
PATCH = "canary-pause"


async def _echo(request: PingInput, timeout: float = 30) -> PingResult:
    return await workflow.execute_activity_method(
        CanaryActivities.echo,
        EchoInput(message=request.message, workflow_time=workflow.now()),
        start_to_close_timeout=timedelta(seconds=timeout),
        retry_policy=RetryPolicy(maximum_attempts=3),
    )


@workflow.defn(name="CanaryPing", sandboxed=False)
class PausingCanary:
    """Incompatible: a timer before the activity, unguarded."""

    @workflow.run
    async def run(self, request: PingInput) -> PingResult:
        workflow.upsert_search_attributes([sa.PATTERN.value_set("canary")])
        await workflow.sleep(1)
        return await _echo(request)


@workflow.defn(name="CanaryPing", sandboxed=False)
class PatientCanary:
    """Incompatible in an argument only: the activity may take a minute."""

    @workflow.run
    async def run(self, request: PingInput) -> PingResult:
        workflow.upsert_search_attributes([sa.PATTERN.value_set("canary")])
        return await _echo(request, timeout=60)


@workflow.defn(name="CanaryPing", sandboxed=False)
class PatchedCanary:
    """The timer, behind a patch: histories without the patch take the old branch."""

    @workflow.run
    async def run(self, request: PingInput) -> PingResult:
        workflow.upsert_search_attributes([sa.PATTERN.value_set("canary")])
        if workflow.patched(PATCH):
            await workflow.sleep(1)
        return await _echo(request)


@workflow.defn(name="CanaryPing", sandboxed=False)
class RetiredPatchCanary:
    """The patch retired: the timer always runs; the marker is still written."""

    @workflow.run
    async def run(self, request: PingInput) -> PingResult:
        workflow.upsert_search_attributes([sa.PATTERN.value_set("canary")])
        workflow.deprecate_patch(PATCH)
        await workflow.sleep(1)
        return await _echo(request)


async def _replay(source: Path | WorkflowHistory, workflow_class: type) -> None:
    history = load_history(source) if isinstance(source, Path) else source
    await replay_history(
        history,
        [workflow_class],
        source="ping.json",
    )


async def test_the_recorded_code_replays() -> None:
    await _replay(BEFORE, CanaryPing)


async def test_a_new_command_fails_the_gate_and_says_what_to_do() -> None:
    with pytest.raises(ReplayMismatch) as failed:
        await _replay(BEFORE, PausingCanary)
    message = str(failed.value)
    assert message.startswith("CanaryPing history ping.json does not replay on the current code")
    assert "The replayer failed" in message
    assert "workflow.patched" in message
    assert "new worker version" in message


async def test_a_changed_argument_fails_the_gate_though_the_plain_replayer_passes() -> None:
    plain = Replayer(
        workflows=[PatientCanary],
        workflow_runner=UnsandboxedWorkflowRunner(),
        data_converter=pydantic_data_converter,
    )
    await plain.replay_workflow(load_history(BEFORE))  # Temporal's replayer sees no problem
    with pytest.raises(ReplayMismatch) as failed:
        await _replay(BEFORE, PatientCanary)
    message = str(failed.value)
    assert "First mismatching command: ScheduleActivityTask" in message
    assert "30.0" in message
    assert "60.0" in message


async def test_the_change_behind_a_patch_replays_histories_from_before_and_after(
    client: Client,
) -> None:
    await _replay(BEFORE, PatchedCanary)
    # A history of the patched code, recorded on a real dev server.
    async with Worker(
        client,
        task_queue=f"gate-{uuid.uuid4().hex[:8]}",
        workflows=[PatchedCanary],
        activities=[CanaryActivities("gate-test").echo],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ) as worker:
        handle = await client.start_workflow(
            PatchedCanary.run,
            PingInput(message="after the patch"),
            id=f"gate-{uuid.uuid4().hex[:8]}",
            task_queue=worker.task_queue,
        )
        await handle.result()
        after = await handle.fetch_history()
    timers = [e for e in after.events if e.HasField("timer_started_event_attributes")]
    assert len(timers) == 1  # the new branch ran
    await _replay(after, PatchedCanary)
    await _replay(BEFORE, PatchedCanary)

    # Retired: only the after-patch history still replays.
    await _replay(after, RetiredPatchCanary)
    with pytest.raises(ReplayMismatch):
        await _replay(BEFORE, RetiredPatchCanary)


def _markers(name: str) -> list[str]:
    history = load_history(HISTORIES / "Approval" / f"{name}.json")
    return [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data.decode()
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


async def test_a_real_patch_has_histories_from_before_and_after_that_replay() -> None:
    assert not any(PEOPLE_PATCH in m for m in _markers("cancelled"))
    assert any(PEOPLE_PATCH in m for m in _markers("patched_withdrawn"))
    for name in ("cancelled", "patched_withdrawn"):
        await replay_history(load_history(HISTORIES / "Approval" / f"{name}.json"), [Approval])


def test_the_command_line_passes_and_fails_as_the_gate_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = str(HISTORIES / "CanaryPing")
    assert main(["--workflows", "muster_runtime.canary.workflows:CanaryPing", folder]) == 0
    assert "1 histories replayed, 0 failed, 0 skipped" in capsys.readouterr().out
    assert main(["--workflows", "tests.replay.test_gate:PausingCanary", folder]) == 1
    assert "FAIL CanaryPing history" in capsys.readouterr().out
    assert main(["--workflows", "muster_runtime.canary.workflows", folder]) == 2
    assert "expected module:Name" in capsys.readouterr().err
