"""The Temporal side of reconciling: create, update, correct, delete, trigger, backfill.

Used by the kopf handlers and by ``muster apply`` (no Kubernetes), so both run the same
core. Every function takes the desired resource plus what the caller remembers (the
fingerprint of the last write) and returns what Temporal holds afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Literal

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.schedule.v1 import BackfillRequest as BackfillProto
from temporalio.api.schedule.v1 import SchedulePatch, TriggerImmediatelyRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, PatchScheduleRequest
from temporalio.client import (
    Client,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from muster_api import search_attributes as sa
from muster_api import v1alpha1
from muster_operator.reconcile import (
    OVERLAP,
    BackfillRequest,
    Drift,
    ForeignSchedule,
    SpecError,
    TemporalUnavailable,
    baseline,
    desired_schedule,
    detect_drift,
    fingerprint,
    memo_owner,
    owner_of,
    request_id,
    schedule_id,
    schedule_memo,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Synced:
    """What Temporal holds after a reconcile."""

    schedule_id: str
    namespace: str
    outcome: Literal["created", "updated", "unchanged", "corrected", "recreated"]
    # None: no baseline yet. Either the schedule was just created (no read-back: the
    # first drift check adopts it while Temporal says nobody updated it since), or
    # somebody else wrote between the operator's update and its read-back (the next drift
    # check corrects it).
    fingerprint: str | None
    # Temporal's view after the reconcile; None right after a create (not read back, to
    # keep a burst of creates at one call each: the first resync fills the status in).
    description: ScheduleDescription | None
    drift: Drift | None = None


class Clients:
    """One Temporal client per namespace, sharing one connection."""

    def __init__(self, client: Client) -> None:
        self.default = client
        self._by_namespace: dict[str, Client] = {client.namespace: client}

    def get(self, namespace: str | None) -> Client:
        """The client of a namespace (the default one when None)."""
        if namespace is None:
            return self.default
        found = self._by_namespace.get(namespace)
        if found is None:
            config = self.default.config()
            config["namespace"] = namespace
            found = Client(**config)
            self._by_namespace[namespace] = found
        return found


async def describe(handle: ScheduleHandle) -> ScheduleDescription | None:
    """A schedule's description, or None when it does not exist."""
    try:
        return await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _check_owner(resource: v1alpha1.Schedule, description: ScheduleDescription) -> None:
    owner = memo_owner(description)
    wanted = owner_of(resource.metadata.namespace, resource.metadata.name)
    if owner != wanted:
        who = f"owned by {owner}" if owner else "not created by Muster"
        raise ForeignSchedule(
            f"Temporal schedule {description.id} already exists and is {who}; the operator "
            f"does not take over schedules it did not create. Delete it in Temporal, or set "
            f"spec.temporal.scheduleId to another id"
        )


async def apply_schedule(
    client: Client,
    resource: v1alpha1.Schedule,
    *,
    remaining_from_spec: bool = True,
    outcome_if_exists: Literal["updated", "corrected"] = "updated",
) -> Synced:
    """Create the schedule, or update it to the desired state (owner checked).

    ``remaining_from_spec=False`` keeps Temporal's count of remaining actions (it counts
    down with every run) instead of resetting it to ``spec.remainingActions``. A create is
    not read back (one call per new schedule); an update is, for its drift baseline.
    """
    sid = schedule_id(resource)
    desired = desired_schedule(resource)
    handle = client.get_schedule_handle(sid)
    # Create first: a new resource (the common case of a burst) costs one call, and
    # "already exists" falls through to the owner check and an update.
    try:
        await client.create_schedule(
            sid,
            desired,
            memo=schedule_memo(resource),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.PATTERN, "schedule"),
                    SearchAttributePair(
                        sa.SCHEDULE,
                        owner_of(resource.metadata.namespace, resource.metadata.name),
                    ),
                ]
            ),
        )
    except ScheduleAlreadyRunningError:
        current = await describe(handle)
        if current is None:
            raise TemporalUnavailable(f"schedule {sid} flickered; retrying") from None
        _check_owner(resource, current)
    else:
        return Synced(
            schedule_id=sid,
            namespace=client.namespace,
            outcome="created" if outcome_if_exists == "updated" else "recreated",
            fingerprint=None,
            description=None,
        )

    tokens: list[bytes] = []

    def update(state: ScheduleUpdateInput) -> ScheduleUpdate:
        # The conflict token of this description guards against concurrent writers.
        tokens.append(state.description.raw_description.conflict_token)
        _check_owner(resource, state.description)
        now = state.description.schedule.state
        if not remaining_from_spec and now.limited_actions and desired.state.limited_actions:
            desired.state.remaining_actions = now.remaining_actions
        return ScheduleUpdate(schedule=desired)

    await handle.update(update)
    after = await handle.describe()
    # The read-back is the baseline of drift detection only if nobody wrote in between: the
    # conflict token moved exactly once (Temporal bumps it on every write).
    ours = bool(tokens) and _next_token(tokens[-1]) == after.raw_description.conflict_token
    outcome: Literal["created", "updated", "corrected", "recreated"] = outcome_if_exists
    return Synced(
        schedule_id=sid,
        namespace=client.namespace,
        outcome=outcome,
        fingerprint=fingerprint(after.raw_description.schedule) if ours else None,
        description=after,
    )


def _next_token(token: bytes) -> bytes:
    """The conflict token after one more write (Temporal's is a big-endian counter)."""
    return (int.from_bytes(token, "big") + 1).to_bytes(len(token) or 8, "big")


async def check_and_correct(
    client: Client, resource: v1alpha1.Schedule, synced_fingerprint: str | None
) -> Synced:
    """The drift check: leave a matching schedule alone, correct or recreate one that drifted."""
    sid = schedule_id(resource)
    handle = client.get_schedule_handle(sid)
    current = await describe(handle)
    if current is None:
        synced = await apply_schedule(client, resource, outcome_if_exists="corrected")
        return Synced(
            sid,
            synced.namespace,
            "recreated",
            synced.fingerprint,
            synced.description,
            Drift(True, "the schedule was deleted in Temporal"),
        )
    _check_owner(resource, current)
    known = baseline(current, synced_fingerprint)
    drift = detect_drift(current, known, resource.spec.suspend)
    if not drift.changed:
        return Synced(sid, client.namespace, "unchanged", known, current, drift)
    synced = await apply_schedule(
        client, resource, remaining_from_spec=False, outcome_if_exists="corrected"
    )
    return Synced(sid, synced.namespace, "corrected", synced.fingerprint, synced.description, drift)


async def delete_schedule(client: Client, resource: v1alpha1.Schedule) -> str:
    """Delete the resource's schedule; gone already is fine, a foreign one is left alone."""
    return await delete_owned(
        client,
        schedule_id(resource),
        owner_of(resource.metadata.namespace, resource.metadata.name),
    )


async def delete_owned(client: Client, sid: str, owner: str) -> str:
    """Delete schedule ``sid`` if ``owner`` owns it (its memo says so); what happened."""
    handle = client.get_schedule_handle(sid)
    current = await describe(handle)
    if current is None:
        return f"Temporal schedule {sid} was already gone"
    if memo_owner(current) != owner:
        return f"Temporal schedule {sid} is not owned by {owner}; left alone"
    try:
        await handle.delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
    return f"deleted Temporal schedule {sid} in namespace {client.namespace}"


PauseOutcome = Literal["paused", "already paused", "gone", "not owned"]


async def pause_owned(client: Client, sid: str, owner: str, note: str) -> PauseOutcome:
    """Pause schedule ``sid`` with ``note`` if ``owner`` owns it (idempotent)."""
    handle = client.get_schedule_handle(sid)
    current = await describe(handle)
    if current is None:
        return "gone"
    if memo_owner(current) != owner:
        return "not owned"
    state = current.schedule.state
    if state.paused and state.note == note:
        return "already paused"
    await handle.pause(note=note)
    return "paused"


async def trigger(client: Client, resource: v1alpha1.Schedule, token: str) -> None:
    """Start one run now; the same token twice is one run (stable request id)."""
    sid = schedule_id(resource)
    await client.workflow_service.patch_schedule(
        PatchScheduleRequest(
            namespace=client.namespace,
            schedule_id=sid,
            patch=SchedulePatch(
                trigger_immediately=TriggerImmediatelyRequest(
                    overlap_policy=int(OVERLAP[resource.spec.policy.overlap])  # type: ignore[arg-type]
                )
            ),
            identity=client.identity,
            request_id=request_id(sid, "trigger", token),
        ),
        retry=True,
    )


async def backfill(client: Client, resource: v1alpha1.Schedule, request: BackfillRequest) -> None:
    """Run the schedule's actions for a time range; the same token twice is one backfill."""
    sid = schedule_id(resource)
    proto: BackfillProto = ScheduleBackfill(
        start_at=request.start_at, end_at=request.end_at, overlap=OVERLAP[request.overlap]
    )._to_proto()
    await client.workflow_service.patch_schedule(
        PatchScheduleRequest(
            namespace=client.namespace,
            schedule_id=sid,
            patch=SchedulePatch(backfill_request=[proto]),
            identity=client.identity,
            request_id=request_id(sid, "backfill", request.token),
        ),
        retry=True,
    )


async def pollers(client: Client, task_queue: str) -> int:
    """How many workers poll a task queue for workflow tasks right now."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        ),
        retry=True,
    )
    return len(response.pollers)


class PollerCache:
    """Pollers per (namespace, task queue), each answer kept ``ttl`` seconds.

    Many Schedules share a task queue, and WorkerAvailable need not be fresher than a few
    seconds, so one DescribeTaskQueue answers all of them; while it is in flight, the others
    wait for it instead of asking too.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._answers: dict[tuple[str, str], tuple[float, asyncio.Future[int | None]]] = {}

    async def count(self, client: Client, task_queue: str) -> int | None:
        """Workers polling ``task_queue``; None when a shared call failed (not checked).
        The caller whose own call fails gets the error."""
        key = (client.namespace, task_queue)
        now = time.monotonic()
        known = self._answers.get(key)
        if known is not None and now - known[0] < self.ttl:
            return await asyncio.shield(known[1])
        answer: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._answers[key] = (now, answer)
        try:
            found = await pollers(client, task_queue)
        except BaseException:
            # Not kept: the next reconcile asks again.
            if self._answers.get(key, (now, None))[1] is answer:
                del self._answers[key]
            answer.set_result(None)
            raise
        answer.set_result(found)
        return found


__all__ = [
    "Clients",
    "ForeignSchedule",
    "PollerCache",
    "SpecError",
    "Synced",
    "TemporalUnavailable",
    "apply_schedule",
    "backfill",
    "check_and_correct",
    "delete_owned",
    "delete_schedule",
    "pause_owned",
    "pollers",
    "trigger",
]
