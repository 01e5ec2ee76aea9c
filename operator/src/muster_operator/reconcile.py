"""Pure functions of the reconciler: resources in, desired Temporal state and status out.

Nothing here does I/O, so every rule (ids, the schedule built from a spec, ownership,
drift, conditions, annotation requests) is unit-tested without a cluster or a server.
:mod:`muster_operator.sync` does the Temporal calls and :mod:`muster_operator.handlers`
the Kubernetes ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, TypeVar

from kubernetes.client.exceptions import ApiException
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from temporalio.api.schedule.v1 import Schedule as ScheduleProto
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.service import RPCError, RPCStatusCode

from muster_api import cron, v1alpha1
from muster_api import search_attributes as sa

OWNER_MEMO = "muster.io/owner"
"""Schedule memo key naming the resource that owns a Temporal schedule."""
MANAGED_BY_MEMO = "muster.io/managed-by"
MANAGED_BY = "muster-operator"

TRIGGER_ANNOTATION = "muster.io/trigger"
BACKFILL_ANNOTATION = "muster.io/backfill"

OVERLAP = {
    "Skip": ScheduleOverlapPolicy.SKIP,
    "BufferOne": ScheduleOverlapPolicy.BUFFER_ONE,
    "BufferAll": ScheduleOverlapPolicy.BUFFER_ALL,
    "CancelOther": ScheduleOverlapPolicy.CANCEL_OTHER,
    "TerminateOther": ScheduleOverlapPolicy.TERMINATE_OTHER,
    "AllowAll": ScheduleOverlapPolicy.ALLOW_ALL,
}


M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """A resource Kubernetes accepted cannot become a Temporal schedule (message says why)."""


class ForeignSchedule(Exception):
    """A schedule with this id exists in Temporal and belongs to somebody else."""


class TemporalUnavailable(Exception):
    """Temporal could not be reached (or failed); retry later."""


# Codes that mean "Temporal is not there right now", as opposed to "your request is wrong".
UNAVAILABLE = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.INTERNAL,
}


def unavailable(exc: BaseException) -> bool:
    """Whether an error means Temporal (or the network to it) is down or overloaded, as
    opposed to a bad request or a bug."""
    if isinstance(exc, TemporalUnavailable):
        return True
    if isinstance(exc, RPCError):
        return exc.status in UNAVAILABLE
    return isinstance(exc, OSError)  # ConnectionError and TimeoutError are OSErrors


@dataclass(frozen=True)
class Failure:
    """What a failed reconcile means: the condition to show, and when to try again."""

    reason: str
    """The Ready/Synced condition's reason (CamelCase)."""
    message: str
    """For people: what is wrong and what to do."""
    retry_after: float | None
    """Seconds until the next attempt; None: not before the resource changes."""
    outage: bool = False
    """Temporal cannot be reached (the temporal_up gauge goes to 0)."""
    unexpected: bool = False
    """Nothing Muster anticipated (a bug, or a spec the validation let through): the
    operator logs the traceback."""


def backoff(attempt: int, maximum: float) -> float:
    """Exponential backoff between retries: 1, 2, 4 ... seconds, at most ``maximum``."""
    return float(min(maximum, 2 ** min(max(attempt, 0), 10)))


MESSAGE_LIMIT = 2000
"""Characters of a condition message or Event: enough to say what is wrong and how to fix
it, and small enough that a status write never fails for its size (the CRD allows 32768)."""


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text``, cut to ``limit`` characters with a marker saying so."""
    if len(text) <= limit:
        return text
    marker = f" … ({len(text) - limit} more characters in the operator's log)"
    return text[: max(limit - len(marker), 0)] + marker


def classify(exc: BaseException, *, attempt: int = 0, max_backoff: float = 60.0) -> Failure:
    """The one mapping from an exception in a reconcile to a status condition and a retry.

    Only errors that mean Temporal cannot be reached are reported as an outage; anything
    unexpected is a ``ReconcileError`` with its type and message (and a traceback in the
    log), retried with backoff in case it was transient, never silently. Messages are
    :func:`bounded`.
    """
    failure = _classify(exc, attempt=attempt, max_backoff=max_backoff)
    if len(failure.message) > MESSAGE_LIMIT:
        failure = replace(failure, message=bounded(failure.message))
    return failure


def _classify(exc: BaseException, *, attempt: int, max_backoff: float) -> Failure:
    if isinstance(exc, SpecError):
        return Failure("InvalidSpec", str(exc), None)
    if isinstance(exc, ForeignSchedule):
        return Failure("ForeignSchedule", str(exc), None)
    if unavailable(exc):
        detail = str(exc) or type(exc).__name__
        if not detail.startswith("cannot reach Temporal"):
            detail = f"cannot reach Temporal: {detail}"
        return Failure("TemporalUnavailable", detail, backoff(attempt, max_backoff), outage=True)
    if isinstance(exc, RPCError):
        return Failure(
            "TemporalRejected",
            f"Temporal refused the request ({exc.status.name if exc.status else 'error'}): "
            f"{exc.message or exc}",
            max_backoff,
        )
    if isinstance(exc, ApiException):
        return Failure(
            "KubernetesApiError",
            f"the Kubernetes API answered {exc.status} {exc.reason}",
            backoff(attempt, max_backoff),
        )
    return Failure(
        "ReconcileError",
        f"unexpected {type(exc).__name__}: {exc} (the operator's log has the traceback)",
        backoff(attempt, max_backoff),
        unexpected=True,
    )


def owner_of(namespace: str, name: str) -> str:
    """The ownership marker of a resource."""
    return f"{namespace}/{name}"


@dataclass(frozen=True)
class Owned:
    """A Temporal schedule the operator created for a resource (``status.ownedSchedules``)."""

    schedule_id: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.schedule_id}"

    def as_status(self) -> dict[str, str]:
        """The entry as status spells it."""
        return {"scheduleId": self.schedule_id, "namespace": self.namespace}


def recorded_schedules(status: Mapping[str, Any]) -> list[Owned]:
    """The schedules status says the operator created and has not cleaned up yet.

    A status written before ``ownedSchedules`` existed names its one schedule in
    ``scheduleId`` and ``temporalNamespace``.
    """
    entries = status.get("ownedSchedules")
    if isinstance(entries, list):
        found = []
        for entry in entries:
            if isinstance(entry, Mapping) and entry.get("scheduleId") and entry.get("namespace"):
                owned = Owned(str(entry["scheduleId"]), str(entry["namespace"]))
                if owned not in found:
                    found.append(owned)
        return found
    sid, namespace = status.get("scheduleId"), status.get("temporalNamespace")
    return [Owned(str(sid), str(namespace))] if sid and namespace else []


def deletion_policy(body: Mapping[str, Any]) -> Literal["Delete", "Orphan"]:
    """``spec.deletionPolicy`` read from the document itself, so it holds even for a spec
    that is otherwise invalid (the CRD admits only these two values; Delete by default)."""
    spec = body.get("spec")
    if isinstance(spec, Mapping) and spec.get("deletionPolicy") == "Orphan":
        return "Orphan"
    return "Delete"


def invalid_spec_note(owner: str, problem: str) -> str:
    """The note on a schedule paused because its resource's spec became invalid."""
    return bounded(
        f"paused by the Muster operator: the spec of Schedule {owner} is invalid ({problem}); "
        "a valid spec resumes it",
        400,
    )


def schedule_id(resource: v1alpha1.Schedule) -> str:
    """``spec.temporal.scheduleId`` or ``<kubernetes-namespace>.<name>``."""
    return resource.spec.temporal.schedule_id or (
        f"{resource.metadata.namespace}.{resource.metadata.name}"
    )


def temporal_namespace(resource: v1alpha1.Schedule, default: str) -> str:
    """The Temporal namespace a Schedule lives in."""
    return resource.spec.temporal.namespace or default


# -- calendar fields -----------------------------------------------------------------------


def calendar_ranges(text: str, field: str) -> tuple[ScheduleRange, ...]:
    """One calendar field (``*``, ``1-5``, ``*/15``, ``MON-FRI``, lists) as Temporal ranges,
    meaning what cron means (:mod:`muster_api.cron`)."""
    try:
        ranges = cron.temporal_ranges(text, cron.CALENDAR_FIELDS[field])
    except cron.CronError as exc:
        raise SpecError(str(exc)) from None
    return tuple(ScheduleRange(start=a, end=b, step=c) for a, b, c in ranges)


def calendar(spec: v1alpha1.CalendarSpec) -> ScheduleCalendarSpec:
    """A calendar spec of the resource as Temporal's structured calendar."""
    return ScheduleCalendarSpec(
        second=calendar_ranges(spec.second, "second"),
        minute=calendar_ranges(spec.minute, "minute"),
        hour=calendar_ranges(spec.hour, "hour"),
        day_of_month=calendar_ranges(spec.day_of_month, "day_of_month"),
        month=calendar_ranges(spec.month, "month"),
        day_of_week=calendar_ranges(spec.day_of_week, "day_of_week"),
        year=calendar_ranges(spec.year, "year"),
        comment=spec.comment,
    )


# -- the desired schedule ------------------------------------------------------------------


def _retry(policy: v1alpha1.RetryPolicySpec | None) -> RetryPolicy | None:
    if policy is None:
        return None
    kwargs: dict[str, Any] = {}
    if policy.initial_interval is not None:
        kwargs["initial_interval"] = policy.initial_interval
    if policy.backoff_coefficient is not None:
        kwargs["backoff_coefficient"] = policy.backoff_coefficient
    if policy.maximum_interval is not None:
        kwargs["maximum_interval"] = policy.maximum_interval
    if policy.maximum_attempts is not None:
        kwargs["maximum_attempts"] = policy.maximum_attempts
    if policy.non_retryable_error_types:
        kwargs["non_retryable_error_types"] = list(policy.non_retryable_error_types)
    return RetryPolicy(**kwargs)


def action_search_attributes(resource: v1alpha1.Schedule) -> TypedSearchAttributes:
    """Every run is findable by the resource that started it (plus the spec's attributes)."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.PATTERN, "schedule"),
        SearchAttributePair(
            sa.SCHEDULE, owner_of(resource.metadata.namespace, resource.metadata.name)
        ),
    ]
    reserved = {sa.PATTERN.name, sa.SCHEDULE.name}
    for key, value in sorted(resource.spec.workflow.search_attributes.items()):
        if key in reserved:
            raise SpecError(f"workflow.searchAttributes.{key} is set by Muster; remove it")
        pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword(key), value))
    return TypedSearchAttributes(pairs)


def desired_schedule(resource: v1alpha1.Schedule) -> Schedule:
    """The Temporal schedule a resource asks for (raises SpecError when it cannot be one)."""
    spec = resource.spec
    workflow = spec.workflow
    try:
        action = ScheduleActionStartWorkflow(
            workflow.type,
            args=list(workflow.args),
            id=workflow.id or schedule_id(resource),
            task_queue=workflow.task_queue,
            execution_timeout=workflow.execution_timeout,
            run_timeout=workflow.run_timeout,
            task_timeout=workflow.task_timeout,
            retry_policy=_retry(workflow.retry_policy),
            memo=dict(workflow.memo) or None,
            typed_search_attributes=action_search_attributes(resource),
        )
    except (TypeError, ValueError) as exc:
        raise SpecError(f"workflow: {exc}") from None
    return Schedule(
        action=action,
        spec=ScheduleSpec(
            calendars=[calendar(c) for c in spec.calendars],
            intervals=[
                ScheduleIntervalSpec(every=i.every, offset=i.offset) for i in spec.intervals
            ],
            cron_expressions=list(spec.cron),
            skip=[calendar(c) for c in spec.skip],
            start_at=_in_utc(spec.start_at, "startAt"),
            end_at=_in_utc(spec.end_at, "endAt"),
            jitter=spec.jitter,
            time_zone_name=spec.time_zone,
        ),
        policy=SchedulePolicy(
            overlap=OVERLAP[spec.policy.overlap],
            catchup_window=spec.policy.catchup_window,
            pause_on_failure=spec.policy.pause_on_failure,
        ),
        state=ScheduleState(
            note=spec.note or ("suspended by spec.suspend" if spec.suspend else None),
            paused=spec.suspend,
            limited_actions=spec.remaining_actions is not None,
            remaining_actions=spec.remaining_actions or 0,
        ),
    )


def _in_utc(value: datetime | None, field: str) -> datetime | None:
    try:
        return v1alpha1.utc(value)
    except OverflowError:
        raise SpecError(
            f"{field}: {value} is out of range in UTC; use a time between the years 1 and 9999"
        ) from None


def schedule_memo(resource: v1alpha1.Schedule) -> dict[str, str]:
    """The memo a schedule is created with: who owns it."""
    return {
        OWNER_MEMO: owner_of(resource.metadata.namespace, resource.metadata.name),
        MANAGED_BY_MEMO: MANAGED_BY,
    }


def parse_schedule(body: Mapping[str, Any]) -> v1alpha1.Schedule:
    """A resource body as the model (raises SpecError with every problem named)."""
    return parse_model(v1alpha1.Schedule, body)


def parse_model(model: type[M], body: Mapping[str, Any]) -> M:
    """A resource body as ``model``; every way a body can fail to be one is a SpecError.

    pydantic reports a validator's ValueError per field; anything else a validator raises
    on a value the schema let through (a duration of 10**10 days overflows ``timedelta``)
    is still about the document, not a fault of the operator.
    """
    try:
        return model.model_validate(dict(body))
    except ValidationError as exc:
        raise SpecError(describe_errors(exc)) from None
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise SpecError(
            f"the spec cannot be read: a value is out of range or of the wrong kind "
            f"({type(exc).__name__}: {exc})"
        ) from None


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as the API server spells field paths (``spec.cron[0]``)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_errors(exc: ValidationError) -> str:
    """A pydantic error as one line per field, in the document's spelling: the message the
    admission webhook refuses a resource with, and the one its status would show."""
    problems = []
    for error in exc.errors():
        where = field_path(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


# -- what Temporal has ---------------------------------------------------------------------


def memo_owner(description: ScheduleDescription) -> str | None:
    """The owner marker in a described schedule's memo (None: not Muster's)."""
    payload = description.raw_description.memo.fields.get(OWNER_MEMO)
    if payload is None:
        return None
    try:
        value = json.loads(payload.data)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def fingerprint(proto: ScheduleProto) -> str:
    """A hash of a schedule as Temporal holds it, minus what changes by itself.

    Temporal normalises what it stores (cron strings become structured calendars), so the
    operator compares Temporal's view with Temporal's view: right after each write it keeps
    this hash, and drift is any later difference. ``remainingActions`` counts down with
    every run and notes are free text; neither is drift.
    """
    copy = ScheduleProto()
    copy.CopyFrom(proto)
    copy.state.remaining_actions = 0
    copy.state.notes = ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:32]


def baseline(description: ScheduleDescription, synced_fingerprint: str | None) -> str | None:
    """The fingerprint drift is measured against.

    The operator's last confirmed write if it has one; otherwise, for a schedule Temporal
    says nobody has updated since it was created (the operator creates without reading
    back), what Temporal holds now: the create was the operator's (the owner marker is
    checked first) and nothing replaced it. None: unknown, the schedule gets corrected.
    """
    if synced_fingerprint is not None:
        return synced_fingerprint
    if description.info.last_updated_at is None:
        return fingerprint(description.raw_description.schedule)
    return None


@dataclass(frozen=True)
class Drift:
    """How Temporal's schedule differs from what the operator last wrote."""

    changed: bool
    reason: str


def detect_drift(
    description: ScheduleDescription, synced_fingerprint: str | None, suspend: bool
) -> Drift:
    """Compare what Temporal holds now with what the operator wrote last."""
    paused = description.schedule.state.paused
    if paused != suspend:
        said = "paused" if paused else "unpaused"
        return Drift(True, f"the schedule was {said} in Temporal but spec.suspend is {suspend}")
    if synced_fingerprint is None:
        return Drift(
            True,
            "someone else changed the schedule in Temporal before the operator could "
            "confirm its last write",
        )
    if fingerprint(description.raw_description.schedule) != synced_fingerprint:
        return Drift(True, "the schedule was edited in Temporal")
    return Drift(False, "")


# -- status ----------------------------------------------------------------------------------


def _ref(workflow_id: str, run_id: str | None, **times: datetime | None) -> v1alpha1.ActionRef:
    return v1alpha1.ActionRef(workflow_id=workflow_id, run_id=run_id, **times)


def observed_status(description: ScheduleDescription, keep: int = 5) -> dict[str, Any]:
    """The status fields that mirror Temporal's view of a schedule (JSON-ready), at most
    ``keep`` of each list."""
    info = description.info
    recent = []
    for result in info.recent_actions[-keep:]:
        action = result.action
        recent.append(
            _ref(
                getattr(action, "workflow_id", ""),
                getattr(action, "first_execution_run_id", None),
                scheduled_at=result.scheduled_at,
                started_at=result.started_at,
            )
        )
    # Bounded like the rest of status: with overlap AllowAll thousands may run at once.
    running = [
        _ref(getattr(a, "workflow_id", ""), getattr(a, "first_execution_run_id", None))
        for a in info.running_actions[:keep]
    ]
    last = max((r.scheduled_at for r in info.recent_actions), default=None)
    status = v1alpha1.ScheduleStatus(
        next_action_times=list(info.next_action_times[:keep]),
        last_action_time=last,
        recent_actions=recent,
        running_workflows=running,
        actions=v1alpha1.ActionCounters(
            taken=info.num_actions,
            missed_catchup_window=info.num_actions_missed_catchup_window,
            skipped_overlap=info.num_actions_skipped_overlap,
        ),
    )
    # Without unset (None) fields: the API server drops them from list items, and a patch
    # that differs from what is stored would be written again at every resync.
    observed = status.model_dump(
        mode="json",
        by_alias=True,
        include={
            "next_action_times",
            "last_action_time",
            "recent_actions",
            "running_workflows",
            "actions",
        },
        exclude_none=True,
    )
    observed.setdefault("lastActionTime", None)
    return observed


ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Want:
    """A condition as the reconciler wants it now."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def merge_conditions(
    current: Iterable[Mapping[str, Any]],
    wanted: Sequence[Want],
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions after applying ``wanted``: transition time moves only when status flips."""
    old = {c.get("type"): c for c in current if isinstance(c, Mapping)}
    merged = []
    wanted_types = {w.type for w in wanted}
    for want in wanted:
        previous = old.get(want.type)
        since = now
        if previous is not None and previous.get("status") == want.status:
            # A condition the operator did not write (edited by hand) starts afresh.
            with contextlib.suppress(ValidationError):
                since = v1alpha1.Condition.model_validate(previous).last_transition_time
        merged.append(
            v1alpha1.Condition(
                type=want.type,
                status=want.status,
                reason=want.reason,
                message=bounded(want.message),
                last_transition_time=since,
                observed_generation=generation,
            ).model_dump(mode="json", by_alias=True, exclude_none=True)
        )
    merged += [dict(c) for t, c in old.items() if t not in wanted_types]
    return merged


def schedule_conditions(
    synced: Want, suspend: bool, pollers: int | None, task_queue: str
) -> list[Want]:
    """Ready, Synced, Suspended and WorkerAvailable from what the reconcile found."""
    if pollers is None:
        worker = Want("WorkerAvailable", "Unknown", "NotChecked", "Temporal was not reachable")
    elif pollers:
        worker = Want(
            "WorkerAvailable", "True", "PollersPresent", f"{pollers} poller(s) on {task_queue}"
        )
    else:
        worker = Want(
            "WorkerAvailable",
            "False",
            "NoPollers",
            f"no worker polls task queue {task_queue}; runs will wait until one does",
        )
    ready = Want(
        "Ready",
        synced.status,
        "Synced" if synced.status == "True" else synced.reason,
        "Temporal holds the desired schedule" if synced.status == "True" else synced.message,
    )
    suspended = Want(
        "Suspended",
        "True" if suspend else "False",
        "SuspendedBySpec" if suspend else "Active",
        "spec.suspend is true: no new runs" if suspend else "",
    )
    return [ready, synced, suspended, worker]


# -- trigger and backfill requests -----------------------------------------------------------


class BackfillRequest(BaseModel):
    """The ``muster.io/backfill`` annotation: runs for a past (or future) time range."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    token: str = Field(min_length=1, max_length=200)
    start_at: AwareDatetime
    end_at: AwareDatetime
    overlap: v1alpha1.OverlapPolicy = "AllowAll"


def parse_backfill(text: str) -> BackfillRequest:
    """The backfill annotation's JSON (raises SpecError saying how to write it)."""
    example = (
        '{"token": "b1", "startAt": "2026-11-01T00:00:00Z", "endAt": "2026-11-02T00:00:00Z", '
        '"overlap": "AllowAll"}'
    )
    try:
        request = BackfillRequest.model_validate_json(text)
    except ValidationError as exc:
        raise SpecError(
            f"{BACKFILL_ANNOTATION} is not valid: {describe_errors(exc)}; write it like {example}"
        ) from None
    if request.end_at <= request.start_at:
        raise SpecError(f"{BACKFILL_ANNOTATION}: endAt must be after startAt")
    _in_utc(request.start_at, f"{BACKFILL_ANNOTATION} startAt")
    _in_utc(request.end_at, f"{BACKFILL_ANNOTATION} endAt")
    return request


def request_id(schedule: str, kind: str, token: str) -> str:
    """A stable request id for a trigger/backfill token, so Temporal drops a repeat."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"muster.io/{schedule}/{kind}/{token}"))
