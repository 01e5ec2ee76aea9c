"""``muster apply -f FILE|DIR``: the operator's reconcile core without Kubernetes.

Reads ``Schedule`` and ``ApprovalPolicy`` documents (YAML, several per file), validates all
of them first (nothing is applied when one is invalid), then creates or updates the
Temporal schedules and publishes the policies into a folder the approval worker and the
gateway read. ``muster up`` uses the same function to load ``examples/``.

Where policies go: ``--policies-dir``, else ``MUSTER_POLICIES_DIR``, else the folder a
running ``muster up`` says its gateway and approval worker read (its state file,
``$MUSTER_UP_STATE_DIR/muster-up.json``, ``.state`` by default), else ``.state/policies``.
The command then says who reads what it published. The operator's modules load only when
the command runs, so ``muster --help`` and ``muster up`` start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from muster_api import scheduling, v1alpha1
from muster_runtime.settings import SettingsError, TemporalSettings, load_settings

if TYPE_CHECKING:
    from temporalio.client import Client

KINDS = ("Schedule", "ApprovalPolicy")
DEFAULT_POLICIES_DIR = Path(".state/policies")
DEFAULT_REMINDER_QUEUE = scheduling.TASK_QUEUE
STACK_STATE_FILE = "muster-up.json"
"""What a running ``muster up`` writes into its state folder (pid, ports, policies)."""


class ApplyError(ValueError):
    """Documents that cannot be applied; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Loaded:
    """A validated document and where it came from."""

    source: str
    resource: v1alpha1.Schedule | v1alpha1.ApprovalPolicy


def _files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            found.append(path)
        else:
            raise ApplyError([f"{path}: no such file or folder"])
    return found


def load(paths: Iterable[Path], namespace: str = "default") -> list[Loaded]:
    """Every Schedule and ApprovalPolicy in the files, validated (other kinds skipped)."""
    from muster_operator.reconcile import SpecError, describe_errors, desired_schedule  # noqa: PLC0415

    loaded: list[Loaded] = []
    problems: list[str] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in _files(paths):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            problems.append(f"{path}: not valid YAML: {exc}")
            continue
        for index, document in enumerate(documents):
            if not isinstance(document, dict) or document.get("kind") not in KINDS:
                continue
            source = f"{path} (document {index + 1}, {document.get('kind')})"
            if document.get("apiVersion") != v1alpha1.API_VERSION:
                problems.append(f"{source}: apiVersion must be {v1alpha1.API_VERSION}")
                continue
            body: dict[str, Any] = {**document}
            body["metadata"] = {"namespace": namespace, **(document.get("metadata") or {})}
            try:
                resource: v1alpha1.Schedule | v1alpha1.ApprovalPolicy
                if document["kind"] == "Schedule":
                    resource = v1alpha1.Schedule.model_validate(body)
                    desired_schedule(resource)  # calendar fields and the like
                else:
                    resource = v1alpha1.ApprovalPolicy.model_validate(body)
            except ValidationError as exc:
                problems.append(f"{source}: {describe_errors(exc)}")
                continue
            except SpecError as exc:
                problems.append(f"{source}: {exc}")
                continue
            key = (document["kind"], resource.metadata.namespace, resource.metadata.name)
            if key in seen:
                problems.append(f"{source}: {key[1]}/{key[2]} is also defined in {seen[key]}")
                continue
            seen[key] = source
            loaded.append(Loaded(source, resource))
    if problems:
        raise ApplyError(problems)
    return loaded


def publish_policy(policy: v1alpha1.ApprovalPolicy, folder: Path) -> Path:
    """Write the policy's snapshot document where the workers read policies (atomically)."""
    from muster_operator.policies import policy_document, policy_key  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / policy_key(policy)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(policy_document(policy), sort_keys=False))
    tmp.replace(path)
    return path


async def apply_all(
    client: Client,
    loaded: list[Loaded],
    policies_dir: Path,
    *,
    reminder_queue: str = DEFAULT_REMINDER_QUEUE,
    out: Callable[[str], None] = print,
) -> int:
    """Apply validated resources; returns how many failed (each failure is printed)."""
    from muster_operator.policies import reminder_schedule  # noqa: PLC0415
    from muster_operator.reconcile import ForeignSchedule, SpecError  # noqa: PLC0415
    from muster_operator.sync import Clients, apply_schedule, delete_schedule  # noqa: PLC0415

    clients = Clients(client)
    failed = 0
    for item in loaded:
        resource = item.resource
        name = f"{resource.metadata.namespace}/{resource.metadata.name}"
        try:
            if isinstance(resource, v1alpha1.Schedule):
                target = clients.get(resource.spec.temporal.namespace)
                synced = await apply_schedule(target, resource)
                out(f"schedule {name} {synced.outcome} (Temporal schedule {synced.schedule_id})")
                continue
            path = publish_policy(resource, policies_dir)
            reminders = reminder_schedule(resource, reminder_queue)
            if reminders is None:
                forced = reminder_schedule(resource, reminder_queue, force=True)
                assert forced is not None
                await delete_schedule(client, forced)
                out(f"approvalpolicy {name} published to {path}")
            else:
                synced = await apply_schedule(client, reminders)
                out(
                    f"approvalpolicy {name} published to {path}; reminders {synced.outcome} "
                    f"(Temporal schedule {synced.schedule_id})"
                )
        except (ForeignSchedule, SpecError) as exc:
            failed += 1
            out(f"error: {item.source}: {exc}")
    return failed


@dataclass(frozen=True)
class RunningStack:
    """A ``muster up`` that runs now, as its state file describes it."""

    pid: int
    policies: Path
    read_by: list[str]


def running_stack(env: Mapping[str, str] = os.environ) -> RunningStack | None:
    """The ``muster up`` of ``$MUSTER_UP_STATE_DIR`` (default ``.state``), if it runs."""
    state = Path(env.get("MUSTER_UP_STATE_DIR") or ".state") / STACK_STATE_FILE
    try:
        info = json.loads(state.read_text())
        pid = int(info["pid"])
        policies = info["policies"]
        found = RunningStack(pid, Path(policies["dir"]), [str(n) for n in policies["read_by"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no stack, or one from before the state file said where policies go
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # a state file left behind by a stack that was killed
    except PermissionError:
        pass  # runs, as someone else
    return found


def policies_target(
    given: Path | None, stack: RunningStack | None, env: Mapping[str, str] = os.environ
) -> tuple[Path, bool]:
    """Where to publish policies, and whether the caller chose it."""
    if given is not None:
        return given, True
    if env.get("MUSTER_POLICIES_DIR"):
        return Path(env["MUSTER_POLICIES_DIR"]), True
    if stack is not None:
        return stack.policies, False
    return DEFAULT_POLICIES_DIR, False


def who_reads(target: Path, chosen: bool, stack: RunningStack | None) -> str | None:
    """One line on who reads the published policies (None when there is nothing to say)."""
    readers = " and ".join(stack.read_by) if stack and stack.read_by else "services"
    if stack is not None and target.resolve() == stack.policies.resolve():
        return (
            f"the running muster up (pid {stack.pid}) reads {target}: its {readers} use "
            "these policies from their next request on"
        )
    if stack is not None:
        return (
            f"note: the running muster up (pid {stack.pid}) reads policies from "
            f"{stack.policies}, not {target}: its {readers} will not see these (leave out "
            "--policies-dir and MUSTER_POLICIES_DIR to publish where it reads)"
        )
    if not chosen:
        return (
            f"no running muster up reads {target}: start one (make up) from this folder, or "
            "point MUSTER_APPROVAL_POLICIES_DIR and MUSTER_GATEWAY_POLICIES_DIR at it"
        )
    return None


def _run(args: argparse.Namespace) -> int:
    from muster_runtime.client import connect  # noqa: PLC0415 - keeps `muster --help` fast

    try:
        loaded = load(args.filename, namespace=args.namespace)
    except ApplyError as exc:
        for problem in exc.problems:
            print(f"muster apply: {problem}", file=sys.stderr)
        print("muster apply: nothing was applied; fix the documents above", file=sys.stderr)
        return 2
    if not loaded:
        print("muster apply: no Schedule or ApprovalPolicy documents found", file=sys.stderr)
        return 2
    try:
        temporal = load_settings(TemporalSettings)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"muster apply: configuration error: {problem}", file=sys.stderr)
        return 2

    stack = running_stack()
    target, chosen = policies_target(args.policies_dir, stack)

    async def run() -> int:
        client = await connect(temporal, tracing=False)
        return await apply_all(client, loaded, target, reminder_queue=args.reminder_task_queue)

    try:
        failed = asyncio.run(run())
    except Exception as exc:
        print(
            f"muster apply: failed against Temporal at {temporal.address}: {exc}", file=sys.stderr
        )
        return 1
    if any(isinstance(item.resource, v1alpha1.ApprovalPolicy) for item in loaded):
        said = who_reads(target, chosen, stack)
        if said:
            print(said)
    return 1 if failed else 0


def register(commands: Any) -> None:
    """Add ``apply`` to the ``muster`` command (the ``muster.commands`` entry point)."""
    parser = commands.add_parser(
        "apply", help="apply Schedule/ApprovalPolicy files to Temporal (no Kubernetes needed)"
    )
    parser.add_argument(
        "-f",
        "--filename",
        type=Path,
        action="append",
        required=True,
        help="a YAML file or a folder of them (repeatable)",
    )
    parser.add_argument(
        "--namespace", default="default", help="Kubernetes-style namespace of documents without one"
    )
    parser.add_argument(
        "--policies-dir",
        type=Path,
        default=None,
        help="where published policies go (what the approval worker and gateway read); "
        "default $MUSTER_POLICIES_DIR, else where a running `muster up` reads them, else "
        ".state/policies",
    )
    parser.add_argument(
        "--reminder-task-queue",
        default=DEFAULT_REMINDER_QUEUE,
        help="task queue of the scheduling worker (runs policies' reminders)",
    )
    parser.set_defaults(func=_run)
