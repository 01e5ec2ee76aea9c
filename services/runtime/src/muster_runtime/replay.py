"""The replay gate: recorded workflow histories replayed against a build's workflow code.

Temporal's :class:`~temporalio.worker.Replayer` fails when the code emits a different
*sequence* of commands than a history holds (a non-determinism error), but it does not
compare the commands' *arguments*: an activity's input, a timer's duration, a child
workflow's id or a search-attribute upsert may change silently, and a running workflow
then carries on with values its history never saw. :func:`replay_history` runs the
replayer and also records what the code emits, and compares it with the history, command
by command. A mismatch is a :class:`ReplayMismatch` whose message names the workflow type,
the history and the first mismatching command, and says what to do about it.

It is a library so that a rollout can run the gate against a build's own code (the
operator, in the build's image); ``python -m muster_runtime.replay`` is its command line:

    python -m muster_runtime.replay --workflows muster_approval.workflows:Approval \\
        tests/replay/histories/Approval

Histories are files in the JSON format ``temporal workflow show --output json`` writes,
or, for a rollout's gate, the histories of workflows still running in a Worker Deployment,
fetched from Temporal (``--running-in``): a sample of its auto-upgrade workflows (those
that move to a new build at their next task), spread over their start times, replayed on
the code of the build being rolled out; ``--verdict-for`` writes the verdict into that
build's version metadata (:data:`muster_runtime.versioning.GATE_METADATA_KEY`), where the
operator reads it. A running workflow's history is compared up to its last completed
workflow task. Local activities' inputs are not in a history and are not compared; nor are
patch markers (the replayer checks those itself).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.common.v1 import Payload
from temporalio.api.deployment.v1 import WorkerDeploymentVersion
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import UpdateWorkerDeploymentVersionMetadataRequest
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_commands import WorkflowCommand
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import SerializationContext, default
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import (
    Replayer,
    UnsandboxedWorkflowRunner,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.workflow import Info

from muster_runtime.sandbox import muster_workflow_runner
from muster_runtime.versioning import GATE_METADATA_KEY

PATCHES_ATTRIBUTE = "TemporalChangeVersion"
"""The search attribute Core upserts beside each ``workflow.patched`` marker."""

ADVICE = (
    "What to do: if the change is meant to reach workflows already running, guard it with "
    "workflow.patched('<a new patch id>') so histories without the patch take the old branch "
    "(and record a history of the new branch); otherwise ship it as a new worker version "
    "(pinned workflows finish on the build they started on). See docs/development.md, "
    '"Changing a workflow".'
)

UpdateNormalizer = Callable[[Any], Any]
"""Turns an update's outcome into what must stay equal across code versions."""


def accepted_or_refused(outcome: Any) -> Any:
    """An update's outcome as "completed", or its failure (message, type): what the command
    line compares, since an update's result may change deliberately without harm."""
    is_result = isinstance(outcome, tuple) and len(outcome) == 2 and isinstance(outcome[1], bytes)
    return "completed" if is_result else outcome


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

    def __init__(
        self,
        inner: WorkflowRunner,
        activations: list[tuple[WorkflowActivation, WorkflowActivationCompletion]] | None = None,
    ) -> None:
        self.inner = inner
        self.activations = [] if activations is None else activations

    def prepare_workflow(self, defn: Any) -> None:
        self.inner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _RecordingInstance(self.inner.create_instance(det), self.activations)

    def set_worker_level_failure_exception_types(self, types: Any) -> None:
        self.inner.set_worker_level_failure_exception_types(types)

    def failures(self, until: int | None = None) -> list[str]:
        """Messages of activations the workflow code failed (a task failure on replay), of
        workflow tasks started at or before ``until`` when given."""
        return [
            c.failed.failure.message
            for a, c in self.activations
            if c.HasField("failed") and (until is None or a.history_length <= until)
        ]

    def commands(self, until: int | None = None) -> list[WorkflowCommand]:
        """Every command the server would have seen, in order; with ``until``, only those of
        workflow tasks started at or before that history event (a running workflow's last,
        unfinished task has no events to compare its commands with).

        A timer started and cancelled within one workflow task never reaches the server
        (Core drops the pair), so neither is returned. The activations of one workflow
        task share its ``history_length``.
        """
        tasks: dict[int, list[WorkflowCommand]] = {}
        for activation, completion in self.activations:
            if until is not None and activation.history_length > until:
                continue
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


# -- what a command is, on both sides -------------------------------------------------------


def _payload(payload: Payload) -> tuple[tuple[tuple[str, bytes], ...], bytes]:
    return tuple(sorted(payload.metadata.items())), payload.data


def _payloads(payloads: Iterable[Payload]) -> list[Any]:
    return [_payload(p) for p in payloads]


def _failure(failure: Failure) -> tuple[str, str]:
    return failure.message, failure.application_failure_info.type


def _seconds(duration: Any) -> float:
    return float(duration.ToTimedelta().total_seconds())


def _fields(fields: Any) -> dict[str, Any]:
    return {key: _payload(value) for key, value in fields.items()}


@dataclass
class Commands:
    """What workflow code asked for, by kind, in order; ``origin`` says where each came
    from (a history's event id, or the position among the emitted commands)."""

    by_kind: dict[str, list[Any]] = field(default_factory=dict)
    origin: dict[str, list[int]] = field(default_factory=dict)
    updates: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, value: Any, origin: int) -> None:
        self.by_kind.setdefault(kind, []).append(value)
        self.origin.setdefault(kind, []).append(origin)


KINDS = {
    "timer": "StartTimer (timer id, seconds)",
    "activity": "ScheduleActivityTask (activity id, type, input, start-to-close seconds, "
    "retry maximum interval, maximum attempts)",
    "child": "StartChildWorkflowExecution (workflow type, workflow id, task queue, input)",
    "signal-external": "SignalExternalWorkflowExecution (workflow id, signal name, input)",
    "cancel-external": "RequestCancelExternalWorkflowExecution (workflow id)",
    "upsert": "UpsertWorkflowSearchAttributes (values)",
    "memo": "ModifyWorkflowProperties (memo)",
    "end": "how the workflow ended (result, failure, cancellation or continue-as-new)",
}


def emitted(commands: Iterable[WorkflowCommand]) -> Commands:
    """What the workflow code emitted on replay."""
    found = Commands()
    children: dict[int, str] = {}  # a child's seq -> its workflow id
    for position, command in enumerate(commands, start=1):
        kind = command.WhichOneof("variant")
        if kind == "start_timer":
            timer = command.start_timer
            found.add("timer", (str(timer.seq), _seconds(timer.start_to_fire_timeout)), position)
        elif kind == "schedule_activity":
            act = command.schedule_activity
            found.add("activity", (
                act.activity_id, act.activity_type, _payloads(act.arguments),
                _seconds(act.start_to_close_timeout), _seconds(act.retry_policy.maximum_interval),
                act.retry_policy.maximum_attempts,
            ), position)  # fmt: skip
        elif kind == "start_child_workflow_execution":
            child = command.start_child_workflow_execution
            children[child.seq] = child.workflow_id
            found.add("child", (
                child.workflow_type, child.workflow_id, child.task_queue, _payloads(child.input),
            ), position)  # fmt: skip
        elif kind == "signal_external_workflow_execution":
            sig = command.signal_external_workflow_execution
            target = sig.child_workflow_id or sig.workflow_execution.workflow_id
            found.add("signal-external", (target, sig.signal_name, _payloads(sig.args)), position)
        elif kind == "request_cancel_external_workflow_execution":
            cancel = command.request_cancel_external_workflow_execution
            found.add("cancel-external", (cancel.workflow_execution.workflow_id,), position)
        elif kind == "cancel_child_workflow_execution":
            # Core sends a started child's cancellation as a request to cancel it.
            seq = command.cancel_child_workflow_execution.child_workflow_seq
            found.add("cancel-external", (children.get(seq, f"child #{seq}"),), position)
        elif kind == "upsert_workflow_search_attributes":
            upsert = command.upsert_workflow_search_attributes.search_attributes
            found.add("upsert", _fields(upsert.indexed_fields), position)
        elif kind == "modify_workflow_properties":
            memo = command.modify_workflow_properties.upserted_memo
            found.add("memo", _fields(memo.fields), position)
        elif kind == "update_response":
            response = command.update_response
            if response.HasField("completed"):
                found.updates[response.protocol_instance_id] = _payload(response.completed)
            elif response.HasField("rejected"):
                found.updates[response.protocol_instance_id] = _failure(response.rejected)
        elif kind == "complete_workflow_execution":
            result = command.complete_workflow_execution.result
            found.add("end", ("completed", _payload(result)), position)
        elif kind == "fail_workflow_execution":
            found.add(
                "end", ("failed", _failure(command.fail_workflow_execution.failure)), position
            )
        elif kind == "cancel_workflow_execution":
            found.add("end", ("cancelled",), position)
        elif kind == "continue_as_new_workflow_execution":
            again = command.continue_as_new_workflow_execution
            found.add(
                "end", ("continued", again.workflow_type, _payloads(again.arguments)), position
            )
    return found


def recorded(events: Iterable[HistoryEvent]) -> Commands:
    """What a history says the workflow code asked for."""
    found = Commands()
    for event in events:
        kind = event.event_type
        at = event.event_id
        if kind == EventType.EVENT_TYPE_TIMER_STARTED:
            timer = event.timer_started_event_attributes
            found.add("timer", (timer.timer_id, _seconds(timer.start_to_fire_timeout)), at)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            act = event.activity_task_scheduled_event_attributes
            found.add("activity", (
                act.activity_id, act.activity_type.name, _payloads(act.input.payloads),
                _seconds(act.start_to_close_timeout), _seconds(act.retry_policy.maximum_interval),
                act.retry_policy.maximum_attempts,
            ), at)  # fmt: skip
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            child = event.start_child_workflow_execution_initiated_event_attributes
            found.add("child", (
                child.workflow_type.name, child.workflow_id, child.task_queue.name,
                _payloads(child.input.payloads),
            ), at)  # fmt: skip
        elif kind == EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            sig = event.signal_external_workflow_execution_initiated_event_attributes
            found.add("signal-external", (
                sig.workflow_execution.workflow_id, sig.signal_name, _payloads(sig.input.payloads),
            ), at)  # fmt: skip
        elif kind == EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            cancel = event.request_cancel_external_workflow_execution_initiated_event_attributes
            found.add("cancel-external", (cancel.workflow_execution.workflow_id,), at)
        elif kind == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) == {PATCHES_ATTRIBUTE}:
                continue  # Core's own record of a workflow.patched call, not the code's
            found.add("upsert", _fields(fields.indexed_fields), at)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
            memo = event.workflow_properties_modified_event_attributes.upserted_memo
            found.add("memo", _fields(memo.fields), at)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            update = event.workflow_execution_update_completed_event_attributes
            if update.outcome.HasField("success"):
                outcome: Any = _payload(update.outcome.success.payloads[0])
            else:
                outcome = _failure(update.outcome.failure)
            found.updates[update.meta.update_id] = outcome
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED:
            rejected = event.workflow_execution_update_rejected_event_attributes
            found.updates[rejected.rejected_request.meta.update_id] = _failure(rejected.failure)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            result = event.workflow_execution_completed_event_attributes.result
            found.add("end", ("completed", _payload(result.payloads[0])), at)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            failure = event.workflow_execution_failed_event_attributes.failure
            found.add("end", ("failed", _failure(failure)), at)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            found.add("end", ("cancelled",), at)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            again = event.workflow_execution_continued_as_new_event_attributes
            found.add("end", (
                "continued", again.workflow_type.name, _payloads(again.input.payloads),
            ), at)  # fmt: skip
    return found


# -- the comparison ---------------------------------------------------------------------------


class ReplayMismatch(AssertionError):
    """A history does not replay on the current code; the message says where and what to do."""

    def __init__(self, workflow_type: str, source: str, problem: str) -> None:
        self.workflow_type = workflow_type
        self.source = source
        self.problem = problem
        super().__init__(
            f"{workflow_type} history {source} does not replay on the current code.\n"
            f"{problem}\n{ADVICE}"
        )


def _shown(value: Any, limit: int = 400) -> str:
    def plain(item: Any) -> Any:
        if isinstance(item, bytes):
            return item.decode(errors="replace")
        if isinstance(item, tuple | list):
            return [plain(i) for i in item]
        if isinstance(item, dict):
            return {k: plain(v) for k, v in item.items()}
        return item

    text = repr(plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_mismatch(want: Commands, got: Commands) -> str | None:
    """The earliest (by history event) command where ``got`` differs from ``want``."""
    found: list[tuple[int, str]] = []
    for kind in sorted(set(want.by_kind) | set(got.by_kind)):
        before, after = want.by_kind.get(kind, []), got.by_kind.get(kind, [])
        for index in range(max(len(before), len(after))):
            old = before[index] if index < len(before) else None
            new = after[index] if index < len(after) else None
            if old == new:
                continue
            at = want.origin[kind][index] if index < len(before) else sys.maxsize
            where = f"history event {at}" if old is not None else "after the history's end"
            found.append((at, (
                f"First mismatching command: {KINDS[kind]} #{index + 1} ({where}):\n"
                f"  the history has: {_shown(old) if old is not None else 'nothing'}\n"
                f"  the code emits:  {_shown(new) if new is not None else 'nothing'}"
            )))  # fmt: skip
            break
    return min(found)[1] if found else None


@dataclass(frozen=True)
class ReplayResult:
    """A history that replayed, and how long it took."""

    workflow_type: str
    source: str
    seconds: float
    commands: int


CLOSE_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


def last_completed_task(history: WorkflowHistory) -> int | None:
    """For a workflow still running: the started event of its last completed workflow
    task (what the code emits after it has no events yet). None for a closed workflow."""
    if any(event.event_type in CLOSE_EVENTS for event in history.events[-3:]):
        return None
    completed = [
        event.workflow_task_completed_event_attributes.started_event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    return max(completed, default=0)


def workflow_type_of(history: WorkflowHistory) -> str:
    """The workflow type a history belongs to (from its first event)."""
    first = history.events[0]
    return first.workflow_execution_started_event_attributes.workflow_type.name


async def replay_history(
    history: WorkflowHistory,
    workflows: Sequence[type],
    *,
    source: str | None = None,
    runner: WorkflowRunner | None = None,
    normalize_update: UpdateNormalizer | None = None,
) -> ReplayResult:
    """Replay ``history`` on ``workflows`` and compare every command with it.

    ``normalize_update`` maps an update's outcome to what must not change (an update's
    result is not a command, so a deliberate change to it replays fine); by default the
    outcomes are compared as they are. Raises :class:`ReplayMismatch`.
    """
    name = workflow_type_of(history)
    where = source or history.workflow_id
    started = time.perf_counter()
    recording = RecordingRunner(runner or muster_workflow_runner())
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=recording,
        # Workflows defined with sandboxed=False run on this one: record them too.
        unsandboxed_workflow_runner=RecordingRunner(
            UnsandboxedWorkflowRunner(), recording.activations
        ),
        data_converter=pydantic_data_converter,
    )
    try:
        await replayer.replay_workflow(history)
    except Exception as error:
        # The replayer's own verdict: a different sequence of commands (non-determinism).
        detail = str(error).strip() or type(error).__name__
        raise ReplayMismatch(name, where, f"The replayer failed: {detail}") from error
    until = last_completed_task(history)
    failed = recording.failures(until)
    if failed:
        raise ReplayMismatch(name, where, f"A workflow task failed on replay: {failed[0]}")
    commands = recording.commands(until=until)
    want, got = recorded(history.events), emitted(commands)
    problem = first_mismatch(want, got)
    if problem:
        raise ReplayMismatch(name, where, problem)
    normal = normalize_update or (lambda outcome: outcome)
    if want.updates.keys() != got.updates.keys():
        missing = sorted(set(want.updates) ^ set(got.updates))
        raise ReplayMismatch(name, where, f"Updates answered differently: {missing}")
    for update_id, outcome in want.updates.items():
        if normal(outcome) != normal(got.updates[update_id]):
            raise ReplayMismatch(name, where, (
                f"Update {update_id} has another outcome:\n"
                f"  the history has: {_shown(outcome)}\n"
                f"  the code gives:  {_shown(got.updates[update_id])}"
            ))  # fmt: skip
    return ReplayResult(name, where, time.perf_counter() - started, len(commands))


def load_history(path: Path) -> WorkflowHistory:
    """A history file; its name (without ``.json``) stands in for the workflow id."""
    try:
        return WorkflowHistory.from_json(path.stem, path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path}: not a workflow history ({error}); expected the JSON that "
            "`temporal workflow show --output json` writes"
        ) from None


def history_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``*.json`` file named, or under a folder named, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.json"))
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder of histories")
    return found


def import_workflows(specs: Iterable[str]) -> list[type]:
    """Workflow classes from ``module:Name`` (a class, or a list of classes)."""
    found: list[type] = []
    for spec in specs:
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise ValueError(
                f"{spec!r}: expected module:Name, e.g. muster_approval.workflows:Approval"
            )
        try:
            value = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"{spec!r}: {error}") from None
        found += list(value) if isinstance(value, list | tuple) else [value]
    return found


async def replay_files(
    files: Sequence[Path], workflows: Sequence[type], *, out: TextIO | None = None
) -> int:
    """Replay every file; print one line per history and the total. Returns the failures."""
    out = out or sys.stdout
    known = {getattr(w, "__temporal_workflow_definition").name for w in workflows}
    failures = skipped = 0
    started = time.perf_counter()
    for path in files:
        history = load_history(path)
        name = workflow_type_of(history)
        if name not in known:
            print(f"skip {path}: no workflow registered for type {name}", file=out)
            skipped += 1
            continue
        try:
            result = await replay_history(
                history, workflows, source=str(path), normalize_update=accepted_or_refused
            )
        except ReplayMismatch as mismatch:
            failures += 1
            print(f"FAIL {mismatch}", file=out)
            continue
        print(f"ok   {path} ({result.commands} commands, {result.seconds:.2f}s)", file=out)
    replayed = len(files) - skipped - failures
    print(
        f"{replayed} histories replayed, {failures} failed, {skipped} skipped, "
        f"in {time.perf_counter() - started:.1f}s",
        file=out,
    )
    return failures


# -- a rollout's gate: running workflows from Temporal --------------------------------------


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def spread(items: Sequence[Any], count: int) -> list[Any]:
    """At most ``count`` of ``items``, evenly spread from the first to the last."""
    if len(items) <= count:
        return list(items)
    if count == 1:
        return [items[0]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


async def running_sample(
    client: Client,
    deployment: str,
    workflow_type: str,
    *,
    sample: int,
    exclude_build: str | None = None,
    scan: int = 10_000,
) -> list[tuple[str, str]]:
    """(workflow id, run id) of up to ``sample`` running auto-upgrade workflows of a type in
    a Worker Deployment (those that move to a new build at their next task), spread over
    the first ``scan`` Temporal lists; without those already on ``exclude_build``."""
    query = (
        f"TemporalWorkerDeployment = {_quoted(deployment)} AND ExecutionStatus = 'Running' "
        f"AND TemporalWorkflowVersioningBehavior = 'AutoUpgrade' "
        f"AND WorkflowType = {_quoted(workflow_type)}"
    )
    if exclude_build:
        query += (
            f" AND TemporalWorkerDeploymentVersion != {_quoted(f'{deployment}:{exclude_build}')}"
        )
    found = [(w.id, w.run_id) async for w in client.list_workflows(query, limit=scan)]
    return spread(found, sample)


@dataclass
class GateResult:
    """What a rollout's replay gate found."""

    replayed: int = 0
    failures: list[str] = field(default_factory=list)
    by_type: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


async def replay_running(
    client: Client,
    deployment: str,
    workflows: Sequence[type],
    *,
    sample: int,
    exclude_build: str | None = None,
    out: TextIO | None = None,
) -> GateResult:
    """Replay a sample of each workflow type's running auto-upgrade workflows of a Worker
    Deployment on ``workflows`` (one line per history printed to ``out``)."""
    out = out or sys.stdout
    result = GateResult()
    limit = asyncio.Semaphore(8)

    async def one(workflow_id: str, run_id: str) -> tuple[str, ReplayResult | ReplayMismatch]:
        async with limit:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            history = await handle.fetch_history()
            try:
                return workflow_id, await replay_history(
                    history,
                    workflows,
                    source=f"{workflow_id} (running, run {run_id})",
                    normalize_update=accepted_or_refused,
                )
            except ReplayMismatch as mismatch:
                return workflow_id, mismatch

    for workflow in workflows:
        name = getattr(workflow, "__temporal_workflow_definition").name
        chosen = await running_sample(
            client, deployment, name, sample=sample, exclude_build=exclude_build
        )
        result.by_type[name] = len(chosen)
        for workflow_id, outcome in await asyncio.gather(*(one(w, r) for w, r in chosen)):
            if isinstance(outcome, ReplayMismatch):
                result.failures.append(str(outcome))
                print(f"FAIL {outcome}", file=out)
            else:
                result.replayed += 1
                print(f"ok   {workflow_id} ({outcome.commands} commands)", file=out)
    return result


def verdict_message(result: GateResult, build: str) -> str:
    """The verdict's message, for people (the operator shows it in status)."""
    sampled = ", ".join(f"{n} {t}" for t, n in sorted(result.by_type.items())) or "none"
    if result.passed:
        if not result.replayed:
            return f"no running workflow would move to build {build}: nothing to replay"
        return f"{result.replayed} running workflows replayed on build {build} ({sampled})"
    first = result.failures[0]
    return (
        f"{len(result.failures)} of {len(result.failures) + result.replayed} running workflows "
        f"do not replay on build {build} ({sampled}); the first: {first[:1500]}"
    )


async def write_verdict(
    client: Client, deployment: str, build: str, entry: dict[str, Any], *, timeout: float
) -> None:
    """Write the verdict into the version's metadata, waiting (up to ``timeout``) for the
    version to exist: Temporal makes it when the build's first worker polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    request = UpdateWorkerDeploymentVersionMetadataRequest(
        namespace=client.namespace,
        deployment_version=WorkerDeploymentVersion(deployment_name=deployment, build_id=build),
        upsert_entries={GATE_METADATA_KEY: default().payload_converter.to_payload(entry)},
        identity="muster-replay-gate",
    )
    while True:
        try:
            await client.workflow_service.update_worker_deployment_version_metadata(request)
            return
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or loop.time() > deadline:
                raise
        await asyncio.sleep(2)


async def run_gate(
    args: argparse.Namespace, workflows: Sequence[type], files: Sequence[Path]
) -> int:
    """The command line with Temporal: replay files and running workflows, write the
    verdict."""
    from muster_runtime.client import connect  # noqa: PLC0415 - only the gate talks to Temporal
    from muster_runtime.settings import SettingsError, TemporalSettings, load_settings  # noqa: PLC0415

    try:
        settings = load_settings(TemporalSettings)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"muster-replay: configuration error: {problem}", file=sys.stderr)
        return 2
    deployment, build = args.running_in, None
    if args.verdict_for:
        deployment_of, _, build = args.verdict_for.partition(":")
        deployment = deployment or deployment_of
    client = await connect(settings, tracing=False)
    started = time.perf_counter()
    failures = await replay_files(files, workflows) if files else 0
    result = GateResult()
    if deployment and args.running_in:
        result = await replay_running(
            client, deployment, workflows, sample=args.sample, exclude_build=build
        )
    if failures:
        result.failures.insert(0, f"{failures} recorded histories do not replay (see the log)")
    print(
        f"gate: {result.replayed} running workflows replayed, {len(result.failures)} failed, "
        f"in {time.perf_counter() - started:.1f}s"
    )
    if args.verdict_for and build:
        entry = {
            "verdict": "passed" if result.passed else "failed",
            "message": verdict_message(result, build),
            "replayed": result.replayed,
            "failed": len(result.failures),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        await write_verdict(client, deployment_of, build, entry, timeout=args.timeout)
        print(f"verdict for {args.verdict_for}: {entry['verdict']}")
        # The gate ran and its verdict is where the operator reads it: the Job succeeded,
        # whatever the verdict (a failed Job means the gate could not run).
        return 0
    return 0 if result.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m muster_runtime.replay``: exit 0 when every history replays, 1 if one
    does not, 2 for bad arguments, 3 when Temporal could not be asked. With
    ``--verdict-for``, 0 once the verdict is written, whatever it is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workflows", action="append", required=True, metavar="MODULE:NAME",
        help="workflow class (or list of classes) to replay on; repeatable",
    )  # fmt: skip
    parser.add_argument("paths", nargs="*", type=Path, help="history files or folders of them")
    parser.add_argument(
        "--running-in", metavar="DEPLOYMENT",
        help="also replay running auto-upgrade workflows of this Worker Deployment, fetched "
        "from Temporal (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, ...)",
    )  # fmt: skip
    parser.add_argument(
        "--sample", type=int, default=20, help="running workflows per workflow type (20)"
    )
    parser.add_argument(
        "--verdict-for", metavar="DEPLOYMENT:BUILD",
        help="write the verdict into this version's metadata (a rollout's gate); running "
        "workflows already on this build are not replayed",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=600.0,
        help="seconds to wait for the version to exist before writing the verdict (600)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        workflows = import_workflows(args.workflows)
        files = history_files(args.paths)
    except ValueError as error:
        print(f"muster-replay: {error}", file=sys.stderr)
        return 2
    if args.sample < 1:
        print("muster-replay: --sample must be at least 1", file=sys.stderr)
        return 2
    if args.verdict_for and ":" not in args.verdict_for:
        print(
            f"muster-replay: --verdict-for {args.verdict_for!r}: expected DEPLOYMENT:BUILD, "
            "like muster-approval:0.2.0",
            file=sys.stderr,
        )
        return 2
    if args.running_in or args.verdict_for:
        try:
            return asyncio.run(run_gate(args, workflows, files))
        except (RPCError, OSError, RuntimeError) as error:
            print(f"muster-replay: Temporal: {error}", file=sys.stderr)
            return 3
    if not files:
        print("muster-replay: no *.json histories in " + ", ".join(map(str, args.paths)))
        return 2
    return 1 if asyncio.run(replay_files(files, workflows)) else 0


if __name__ == "__main__":
    sys.exit(main())
