"""``make test-all``'s runner: the tiers in two pytest processes side by side (the default,
CI's), or every tier in one pytest (``--serial``, ``make test-all TEST_PARALLEL=0``); see
docs/development.md for the times.

The cluster tier (one real node for the whole session, about 20 minutes) spends most of its
time waiting for pods, rollouts and the node's programs, so it runs in a process of its own,
followed there by the e2e tier to even out the two, while a second process runs the other
tiers; a run takes about as long as the longer of the two instead of their sum. The first
process's output goes to a log that is printed, whole, when both have ended (the other
tiers' output streams as usual); the exit status is the worse of the two.

Arguments go to both pytest processes (``make test-all PYTEST_ARGS=--durations=30``). When
they name a test path, there is nothing to split: one pytest runs with them as given, as it
does with ``--serial``.

    python -m tests.tiers [--serial] [pytest arguments]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "tests/cluster"
# The tiers of the first process: the cluster tier, then the e2e tier (a few minutes of
# `make up`, Chromium and Prometheus), which leaves the two processes about as long.
BESIDE = (CLUSTER, "tests/e2e")
LOG = REPO / ".cache" / "tests" / "cluster-tier.log"
# pytest's exit statuses: every test passed, and no test was selected.
OK, NO_TESTS = 0, 5


@dataclass(frozen=True)
class Group:
    """One pytest process: its name, its arguments, and where its output goes."""

    name: str
    args: tuple[str, ...]
    log: Path | None = None


def names_a_path(args: Sequence[str]) -> bool:
    """Whether the arguments select tests by path (``tests/unit``, ``tests/x.py::test_y``),
    which one pytest runs as given. A value of an option (``-k expr``, ``-m slow``) never
    counts: only an argument whose file part exists does."""
    for arg in args:
        if arg.startswith("-"):
            continue
        if (REPO / arg.partition("::")[0]).exists() or Path(arg.partition("::")[0]).exists():
            return True
    return False


def plan(args: Sequence[str], *, serial: bool = False) -> list[Group]:
    """The pytest processes to run for ``args``."""
    if serial or names_a_path(args):
        return [Group("tests", tuple(args))]
    return [
        Group("cluster and e2e tiers", (*BESIDE, *args), LOG),
        Group("other tiers", (*(f"--ignore={tier}" for tier in BESIDE), *args)),
    ]


def combined(statuses: Sequence[int]) -> int:
    """The run's exit status: the first failing one; 5 (no tests) only if every process
    selected none, since one group matching nothing is expected with ``-k`` or ``-m``."""
    failing = [status for status in statuses if status not in (OK, NO_TESTS)]
    if failing:
        return failing[0]
    return NO_TESTS if statuses and all(s == NO_TESTS for s in statuses) else OK


def run(groups: Sequence[Group], *, out: TextIO | None = None) -> int:
    """Start every group, wait for all, print the logged ones, return the combined status.

    SIGTERM (a CI job's timeout) reaches the pytest processes as SIGINT, which pytest turns
    into an orderly stop that runs the fixtures' teardown (the cluster tier stops its node
    there; a SIGTERM would end pytest at once and leave the node behind), and the runner
    waits for them. Ctrl-C reaches them directly (one process group)."""
    stream = out or sys.stdout
    pytest = [sys.executable, "-m", "pytest"]
    # A job started in the background by a shell (as CI may start this) inherits SIGINT
    # ignored, and an ignored signal stays ignored across exec: the pytest processes would
    # never stop on the SIGINT below. A handler of our own is reset to the default in them.
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    processes: list[tuple[Group, subprocess.Popen[bytes]]] = []
    for group in groups:
        if group.log is None:
            processes.append((group, subprocess.Popen([*pytest, *group.args], cwd=REPO)))
            continue
        group.log.parent.mkdir(parents=True, exist_ok=True)
        with group.log.open("wb") as log:
            processes.append(
                (
                    group,
                    subprocess.Popen(
                        [*pytest, *group.args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT
                    ),
                )
            )
        print(f"tests: {group.name} in a pytest of their own; its output is in "
              f"{group.log}, printed here when it ends", file=stream, flush=True)  # fmt: skip

    def forward(_signum: int, _frame: FrameType | None) -> None:
        for _, process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        statuses = {}
        for group, process in processes:
            while True:
                try:
                    statuses[group.name] = process.wait()
                    break
                except KeyboardInterrupt:
                    continue  # the child got the same Ctrl-C: wait for its teardown
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, interrupt)
    for group, _ in processes:
        if group.log is not None:
            print(f"\n{'=' * 30} {group.name} ({group.log}) {'=' * 30}", file=stream)
            print(group.log.read_text(errors="replace"), file=stream, flush=True)
    if len(processes) > 1:
        minutes = (time.monotonic() - started) / 60
        summary = ", ".join(f"{name}: exit {status}" for name, status in statuses.items())
        print(f"tests: {summary}; {minutes:.1f} min in all", file=stream, flush=True)
    return combined(list(statuses.values()))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    serial = "--serial" in args
    if serial:
        args.remove("--serial")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(plan(args, serial=serial))


if __name__ == "__main__":
    sys.exit(main())
