"""The replay gate: every committed history of every workflow type replays against today's
code, and the code emits the same commands with the same arguments.

One parametrised test over every file under ``histories/<workflow type>/``; the comparison
is :func:`muster_runtime.replay.replay_history` (what it compares, and why the plain
replayer is not enough, is in its module). A failure names the workflow type, the history
file and the first mismatching command, and says what to do. Also covered: every path the
recorders know has its history, and every workflow type Muster's packages define has
histories (a new type without them fails here). The histories are recorded by ``make
histories`` (``tests/replay/record.py``).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from pathlib import Path
from typing import Any

import pytest

from muster_approval.workflows import Approval
from muster_fulfillment.workflows import OrderFulfillment
from muster_runtime.canary.workflows import CanaryPing
from muster_runtime.replay import load_history, replay_history, workflow_type_of
from muster_scheduling.workflows import WORKFLOWS as SCHEDULED
from tests.replay.record import known
from tests.replay.recording import HISTORIES

WORKFLOWS: list[type] = [Approval, OrderFulfillment, *SCHEDULED, CanaryPing]
"""Every workflow class a Muster worker registers."""
FILES = sorted(HISTORIES.glob("*/*.json"))
PACKAGES = ["muster_approval", "muster_fulfillment", "muster_scheduling", "muster_runtime"]
TIMES: list[float] = []
"""Seconds each history took, for the summary line (tests/replay/conftest.py)."""


def _approval_outcome(outcome: Any) -> Any:
    """A ``decide`` update's result, with the one intended change to it undone: the state
    no longer lists a requester who may not decide among ``approvers`` (an update's result
    is not a command, so old histories still hold the old list)."""
    if not (isinstance(outcome, tuple) and isinstance(outcome[1], bytes)):
        return outcome
    state = json.loads(outcome[1])
    requester = state["request"]["requester"]
    return {**state, "approvers": [p for p in state["approvers"] if p != requester]}


NORMALIZE_UPDATE = {"Approval": _approval_outcome}


def defined_workflow_types() -> set[str]:
    """Every workflow type a class in Muster's worker packages defines."""
    found: set[str] = set()
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules = [package] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, f"{name}.")
            if not info.name.endswith("__main__")
        ]
        for module in modules:
            for value in vars(module).values():
                defn = getattr(value, "__temporal_workflow_definition", None)
                if isinstance(value, type) and defn is not None and defn.name:
                    found.add(defn.name)
    return found


def test_every_workflow_type_has_histories() -> None:
    folders = {path.parent.name for path in FILES}
    types = defined_workflow_types()
    assert types == {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    assert types - folders == set(), "record them: make histories"


def test_every_path_has_a_history() -> None:
    files = {f"{path.parent.name}/{path.stem}" for path in FILES}
    assert files == known()


def test_a_history_is_filed_under_its_workflow_type() -> None:
    misfiled = [p for p in FILES if workflow_type_of(load_history(p)) != p.parent.name]
    assert misfiled == []


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
async def test_history_replays_with_the_same_commands(path: Path) -> None:
    history = load_history(path)
    started = time.perf_counter()
    await replay_history(
        history,
        WORKFLOWS,
        source=str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path),
        normalize_update=NORMALIZE_UPDATE.get(path.parent.name),
    )
    TIMES.append(time.perf_counter() - started)
