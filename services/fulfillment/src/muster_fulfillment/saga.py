"""A reusable saga for Temporal workflows: compensations that cannot be skipped or lost.

Rules it enforces (and the seed's sketch got wrong):

- a compensation is registered *before* its step runs, because a step that failed or timed
  out may still have happened on the other side;
- compensations run in reverse order (or all at once with ``parallel=True``), each with the
  retry policy its closure chooses;
- compensating is shielded from cancellation: a cancel that arrives meanwhile is noted in
  the report, and the compensations still run to the end;
- a compensation that fails (after its own retries) does not stop the others; it stays
  owed, and :meth:`Saga.compensate` can be called again later to retry what is owed;
- checkpoints allow partial compensation: :meth:`Saga.compensate` with ``to_checkpoint``
  undoes only what was registered after that checkpoint.

The helper does no I/O of its own; it is deterministic workflow code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

T = TypeVar("T")

Undo = Callable[[], Awaitable[object]]
"""A compensation: usually a closure that executes an activity with its own retry policy."""

CompensationOutcome = Literal["started", "succeeded", "failed"]

EventSink = Callable[[str, CompensationOutcome, str], None]
"""Called as ``(step, outcome, detail)`` for each compensation started/succeeded/failed."""


@dataclass
class _Compensation:
    step: str
    undo: Undo
    done: bool = False
    error: str | None = None


@dataclass(frozen=True)
class CompensationReport:
    """What one call of :meth:`Saga.compensate` achieved."""

    compensated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    cancel_requested: bool = False

    @property
    def complete(self) -> bool:
        """True when nothing is owed any more."""
        return not self.failed


class Saga:
    """Registered compensations of one workflow run."""

    def __init__(self, *, parallel: bool = False, on_event: EventSink | None = None) -> None:
        self.parallel = parallel
        self._stack: list[_Compensation] = []
        self._checkpoints: dict[str, int] = {}
        self._on_event = on_event or (lambda step, outcome, detail: None)

    def add(self, step: str, undo: Undo) -> None:
        """Register the compensation of ``step``; call this before running the step."""
        if any(c.step == step and not c.done for c in self._stack):
            raise ValueError(f"a compensation for step {step!r} is already registered")
        self._stack.append(_Compensation(step, undo))

    def checkpoint(self, name: str) -> None:
        """Mark the current position; ``compensate(to_checkpoint=name)`` undoes what follows."""
        self._checkpoints[name] = len(self._stack)

    @property
    def owed(self) -> list[str]:
        """Steps whose compensation has not succeeded yet, most recent first."""
        return [c.step for c in reversed(self._stack) if not c.done]

    async def compensate(self, *, to_checkpoint: str | None = None) -> CompensationReport:
        """Run every owed compensation (after ``to_checkpoint``, if given), shielded.

        Returns when all of them have succeeded or failed for good; a cancellation of the
        workflow meanwhile is recorded in the report rather than interrupting them.
        """
        start = 0
        if to_checkpoint is not None:
            if to_checkpoint not in self._checkpoints:
                raise ValueError(f"unknown checkpoint {to_checkpoint!r}")
            start = self._checkpoints[to_checkpoint]
        owed = [c for c in reversed(self._stack[start:]) if not c.done]
        runner = self._run_parallel(owed) if self.parallel else self._run_in_order(owed)
        # A cancellation of the workflow meanwhile must not stop compensation half way.
        _, cancel_requested = await run_shielded(runner)
        report = CompensationReport(
            compensated=[c.step for c in owed if c.done],
            failed={c.step: c.error or "failed" for c in owed if not c.done},
            cancel_requested=cancel_requested,
        )
        if to_checkpoint is not None and report.complete:
            # Everything after the checkpoint is undone: forget it, keep what came before.
            del self._stack[start:]
            self._checkpoints = {n: i for n, i in self._checkpoints.items() if i <= start}
        return report

    async def _run_one(self, compensation: _Compensation) -> None:
        self._on_event(compensation.step, "started", "")
        try:
            await compensation.undo()
        except Exception as exc:
            compensation.error = _describe(exc)
            self._on_event(compensation.step, "failed", compensation.error)
        else:
            compensation.done = True
            compensation.error = None
            self._on_event(compensation.step, "succeeded", "")

    async def _run_in_order(self, owed: list[_Compensation]) -> None:
        for compensation in owed:
            await self._run_one(compensation)

    async def _run_parallel(self, owed: list[_Compensation]) -> None:
        await asyncio.gather(*(self._run_one(c) for c in owed))


async def run_shielded(awaitable: Awaitable[T]) -> tuple[T, bool]:
    """Await to the end even if the workflow is cancelled meanwhile.

    Returns the result and whether a cancellation arrived (which the caller may then honour
    or ignore). Exceptions of ``awaitable`` propagate as usual.
    """
    work = asyncio.ensure_future(awaitable)
    cancel_requested = False
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            cancel_requested = True
    return work.result(), cancel_requested


def _describe(exc: BaseException) -> str:
    """The innermost cause's message: an ActivityError wraps the interesting part."""
    parts = [str(exc)]
    cause = exc.__cause__
    while cause is not None:
        if str(cause):
            parts.append(str(cause))
        cause = cause.__cause__
    return ": ".join(dict.fromkeys(p for p in parts if p))
