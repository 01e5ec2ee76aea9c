"""Worker Versioning: which behaviour each workflow type declares, and a worker's version.

Every workflow type says how it moves between builds, with the reason, through
:func:`declare`:

- **pinned**: a run finishes on the build it started on; a new build's code never replays
  its history. Right for short, replaceable runs (orders, scheduled runs), whose old build
  stays up until they are done;
- **auto-upgrade**: a run moves to the current build at its next workflow task. Right for
  runs that wait days or weeks (approvals), which no build should have to outlive; every
  change to their code must replay their histories, so it is patched and the replay gate
  (:mod:`muster_runtime.replay`) checks it.

The behaviour is kept beside the class rather than in ``@workflow.defn(versioning_behavior=...)``:
Temporal refuses a workflow task completed with a behaviour by a worker that does not use
versioning ("versioning behavior cannot be specified without deployment options being set
with versioned mode"), and Muster's workers run unversioned when they have no build id
(tests, a bare ``python -m``). A versioned worker passes its workflows' behaviour as the
deployment's default, so one worker's workflow types must agree (:func:`worker_behavior`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from temporalio.common import VersioningBehavior

T = TypeVar("T", bound=type)

ATTRIBUTE = "__muster_versioning__"
GATE_METADATA_KEY = "muster.io/replay-gate"
"""The entry of a Worker Deployment version's metadata where the replay gate of a rollout
(``python -m muster_runtime.replay --verdict-for``) writes its verdict: a JSON object with
``verdict`` (passed or failed), ``message``, ``replayed``, ``failed`` and ``at``."""
NAMES = {
    VersioningBehavior.PINNED: "pinned",
    VersioningBehavior.AUTO_UPGRADE: "auto-upgrade",
}


@dataclass(frozen=True)
class Declared:
    """A workflow type's versioning behaviour and why it was chosen."""

    behavior: VersioningBehavior
    reason: str

    @property
    def name(self) -> str:
        return NAMES[self.behavior]


def declare(behavior: VersioningBehavior, reason: str) -> Callable[[T], T]:
    """Class decorator: this workflow type's Worker Versioning behaviour, and why."""
    if behavior not in NAMES:
        raise ValueError(f"declare PINNED or AUTO_UPGRADE, not {behavior!r}")
    if not reason.strip():
        raise ValueError("say why: the reason is the documentation of the choice")

    def apply(cls: T) -> T:
        setattr(cls, ATTRIBUTE, Declared(behavior, reason.strip()))
        return cls

    return apply


def workflow_name(cls: type) -> str:
    defn = getattr(cls, "__temporal_workflow_definition", None)
    return str(getattr(defn, "name", None) or cls.__name__)


def declared(cls: type) -> Declared:
    """What ``cls`` declared; a ``ValueError`` naming the class if it declared nothing."""
    found = cls.__dict__.get(ATTRIBUTE)
    if isinstance(found, Declared):
        return found
    raise ValueError(
        f"workflow {workflow_name(cls)} ({cls.__module__}.{cls.__qualname__}) declares no "
        "versioning behaviour: decorate it with muster_runtime.versioning.declare(PINNED "
        "or AUTO_UPGRADE, reason)"
    )


def worker_behavior(workflows: Sequence[type]) -> VersioningBehavior:
    """The one behaviour a versioned worker's workflow types share (its default)."""
    behaviors = {workflow_name(w): declared(w).behavior for w in workflows}
    distinct = set(behaviors.values())
    if len(distinct) > 1:
        listed = ", ".join(f"{n} ({NAMES[b]})" for n, b in sorted(behaviors.items()))
        raise ValueError(
            f"one worker registers workflow types of different versioning behaviours: "
            f"{listed}; run them on separate workers (task queues)"
        )
    return distinct.pop() if distinct else VersioningBehavior.PINNED


@dataclass(frozen=True)
class WorkerVersion:
    """Where a worker sits in Worker Versioning: its deployment and build id (None:
    unversioned)."""

    deployment_name: str
    build_id: str | None

    @property
    def versioned(self) -> bool:
        return self.build_id is not None

    def __str__(self) -> str:
        return f"{self.deployment_name}.{self.build_id}" if self.build_id else "unversioned"
