"""Recorded histories of every approval path replay against today's workflow code, and the
code emits the same commands with the same arguments.

Temporal's replayer fails on a different sequence of commands, but it does not compare
their arguments (an activity's input, a timer's duration, the values of a search-attribute
upsert). So the replay here also records what the workflow code emits and compares it with
what the history holds: timers, activities, search-attribute upserts, update outcomes and
the final result. Local activities' inputs are not in a history and are not compared.

The histories in ``histories/Approval`` were recorded by ``tests/replay/record_approval.py``
(see there how to add a path).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import SerializationContext
from temporalio.worker import (
    Replayer,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.workflow import Info

from muster_approval.workflows import Approval
from muster_runtime.sandbox import muster_workflow_runner
from tests.replay.record_approval import DEV_SERVER, TIME_SKIPPING

HISTORIES = sorted((Path(__file__).parent / "histories" / "Approval").glob("*.json"))
PATCHES_ATTRIBUTE = "TemporalChangeVersion"
"""The search attribute Core upserts beside each ``workflow.patched`` marker."""


class _RecordingInstance(WorkflowInstance):
    """A workflow instance that keeps every activation's completion."""

    def __init__(
        self,
        inner: WorkflowInstance,
        sink: list[tuple[WorkflowActivation, WorkflowActivationCompletion]],
    ) -> None:
        self.inner = inner
        self.sink = sink

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        completion = self.inner.activate(act)
        self.sink.append((act, completion))
        return completion

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        return self.inner.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self.inner.get_external_store_context(command_info)

    def get_info(self) -> Info:
        return self.inner.get_info()

    def get_thread_id(self) -> int | None:
        return self.inner.get_thread_id()


class RecordingRunner(WorkflowRunner):
    """Runs workflows with ``inner`` and records the commands they emit."""

    def __init__(self, inner: WorkflowRunner) -> None:
        self.inner = inner
        self.activations: list[tuple[WorkflowActivation, WorkflowActivationCompletion]] = []

    def prepare_workflow(self, defn: Any) -> None:
        self.inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _RecordingInstance(self.inner.create_instance(det), self.activations)

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        self.inner.set_worker_level_failure_exception_types(types)

    def commands(self) -> list[WorkflowCommand]:
        """Every command the server would have seen, in order.

        A timer started and cancelled within one workflow task never reaches the server
        (Core drops the pair), so neither is returned. The activations of one workflow
        task share its ``history_length``.
        """
        failed = [c.failed.failure.message for _, c in self.activations if c.HasField("failed")]
        assert not failed, f"the workflow task failed on replay: {failed}"
        tasks: dict[int, list[WorkflowCommand]] = {}
        for activation, completion in self.activations:
            tasks.setdefault(activation.history_length, []).extend(completion.successful.commands)
        sent = []
        for commands in tasks.values():
            cancelled = {c.cancel_timer.seq for c in commands if c.HasField("cancel_timer")}
            started = {c.start_timer.seq for c in commands if c.HasField("start_timer")}
            dropped = cancelled & started
            sent += [
                c for c in commands
                if not (c.HasField("start_timer") and c.start_timer.seq in dropped)
                and not (c.HasField("cancel_timer") and c.cancel_timer.seq in dropped)
            ]  # fmt: skip
        return sent


def _payload(payload: Payload) -> tuple[tuple[tuple[str, bytes], ...], bytes]:
    return tuple(sorted(payload.metadata.items())), payload.data


def _failure(failure: Failure) -> tuple[str, str]:
    return failure.message, failure.application_failure_info.type


def _seconds(duration: Any) -> float:
    return float(duration.ToTimedelta().total_seconds())


def emitted(commands: Iterable[WorkflowCommand]) -> dict[str, Any]:
    """What the workflow code asked for, by kind, in order."""
    found: dict[str, Any] = {"timers": [], "activities": [], "upserts": [], "updates": {}}
    for command in commands:
        kind = command.WhichOneof("variant")
        if kind == "start_timer":
            timer = command.start_timer
            found["timers"].append((str(timer.seq), _seconds(timer.start_to_fire_timeout)))
        elif kind == "schedule_activity":
            act = command.schedule_activity
            found["activities"].append((
                act.activity_id, act.activity_type, [_payload(p) for p in act.arguments],
                _seconds(act.start_to_close_timeout), _seconds(act.retry_policy.maximum_interval),
                act.retry_policy.maximum_attempts,
            ))  # fmt: skip
        elif kind == "upsert_workflow_search_attributes":
            fields = command.upsert_workflow_search_attributes.search_attributes.indexed_fields
            found["upserts"].append({key: _payload(value) for key, value in fields.items()})
        elif kind == "update_response":
            response = command.update_response
            if response.HasField("completed"):
                found["updates"][response.protocol_instance_id] = _payload(response.completed)
            elif response.HasField("rejected"):
                found["updates"][response.protocol_instance_id] = _failure(response.rejected)
        elif kind == "complete_workflow_execution":
            found["result"] = _payload(command.complete_workflow_execution.result)
        elif kind == "cancel_workflow_execution":
            found["result"] = "cancelled"
    return found


def recorded(history: WorkflowHistory) -> dict[str, Any]:
    """What the history says the workflow code asked for, by kind, in order."""
    found: dict[str, Any] = {"timers": [], "activities": [], "upserts": [], "updates": {}}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timer = event.timer_started_event_attributes
            found["timers"].append((timer.timer_id, _seconds(timer.start_to_fire_timeout)))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            act = event.activity_task_scheduled_event_attributes
            found["activities"].append((
                act.activity_id, act.activity_type.name, [_payload(p) for p in act.input.payloads],
                _seconds(act.start_to_close_timeout), _seconds(act.retry_policy.maximum_interval),
                act.retry_policy.maximum_attempts,
            ))  # fmt: skip
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) == {PATCHES_ATTRIBUTE}:
                continue  # Core's own record of a workflow.patched call, not the code's
            found["upserts"].append(
                {key: _payload(value) for key, value in fields.indexed_fields.items()}
            )
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            update = event.workflow_execution_update_completed_event_attributes
            if update.outcome.HasField("success"):
                outcome: Any = _payload(update.outcome.success.payloads[0])
            else:
                outcome = _failure(update.outcome.failure)
            found["updates"][update.meta.update_id] = outcome
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            result = event.workflow_execution_completed_event_attributes.result
            found["result"] = _payload(result.payloads[0])
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            found["result"] = "cancelled"
    return found


def _state(outcome: Any) -> dict[str, Any] | None:
    """The ``decide`` update's result (an ApprovalState) as JSON, if it succeeded."""
    if not (isinstance(outcome, tuple) and isinstance(outcome[1], bytes)):
        return None
    state: dict[str, Any] = json.loads(outcome[1])
    return state


def load(path: Path) -> WorkflowHistory:
    """A committed history; its file name is the workflow id the replayer reports."""
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_every_path_has_a_history() -> None:
    names = {path.stem for path in HISTORIES}
    assert names == {*DEV_SERVER, *TIME_SKIPPING}


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays_with_the_same_commands(path: Path) -> None:
    history = load(path)
    runner = RecordingRunner(muster_workflow_runner())
    replayer = Replayer(
        workflows=[Approval], workflow_runner=runner, data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)  # raises on a nondeterministic command sequence
    want, got = recorded(history), emitted(runner.commands())
    assert got["timers"] == want["timers"]
    assert got["activities"] == want["activities"]
    assert got["upserts"] == want["upserts"]
    assert got.get("result") == want.get("result")
    assert got["updates"].keys() == want["updates"].keys()
    for update_id, outcome in want["updates"].items():
        before, after = _state(outcome), _state(got["updates"][update_id])
        if before is None or after is None:
            assert got["updates"][update_id] == outcome
            continue
        # The one intended change: the state no longer lists a requester who may not decide
        # among ``approvers`` (an update's result is not a command; it is not replayed).
        requester = before["request"]["requester"]
        assert after["approvers"] in (
            before["approvers"], [p for p in before["approvers"] if p != requester]
        )  # fmt: skip
        assert {**after, "approvers": None} == {**before, "approvers": None}
