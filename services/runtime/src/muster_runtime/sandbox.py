"""The workflow sandbox every Muster worker runs its workflows in.

It is Temporal's sandbox (same restrictions, same per-run isolation) with two changes that
only save time:

- Muster's runtime and telemetry libraries are passed through: none of their code runs
  inside workflow logic, and re-importing them for every workflow run would only cost time
  (and trip the sandbox on their I/O modules);
- a workflow whose input cannot be used fails at once, with a non-retryable
  ``InvalidWorkflowInput`` error that says what is wrong (the wrong number of arguments, a
  payload that does not decode, a field that does not validate). Temporal's default is to
  fail the workflow *task*, which retries every few seconds forever, logs a traceback each
  time and keeps the workflow id taken until someone terminates it. An input that decoded
  before still decodes: this changes only what happens to one that never could. An update
  whose input does not decode is rejected with the same words (it leaves no history); a
  signal's is dropped and logged (Temporal's behaviour), and the workflow carries on;
- the sandbox's glue code is compiled once per process. Temporal's sandbox hands a short
  code string to ``exec`` for every activation and for every payload it converts with a
  serialization context (each activity it schedules, each result it reads), and ``exec``
  compiles that string every time: about a tenth of a worker's CPU in a short saga. The
  strings are few and fixed, so the compiled code objects are cached.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from types import CodeType, NoneType, UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.bridge.proto.workflow_activation import InitializeWorkflow
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    UnsandboxedWorkflowRunner,
    WorkflowInstance,
    WorkflowInstanceDetails,
)
from temporalio.worker._workflow_instance import _WorkflowInstanceImpl
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._runner import _Instance
from temporalio.workflow import _Definition

PASSTHROUGH_MODULES = ("muster_runtime", "prometheus_client", "pydantic_settings", "opentelemetry")
"""Library code that workflow modules may import and that never runs workflow logic."""

COMPILED_CODE_CACHE_SIZE = 256
"""Distinct sandbox code strings kept compiled (a handful per workflow class)."""


INVALID_INPUT = "InvalidWorkflowInput"
"""Error type of a workflow that failed because its input cannot be used."""
MESSAGE_LIMIT = 2000
"""Longest failure message (an input can be megabytes; the message says what is wrong)."""


def _arity(defn: _Definition) -> tuple[int, int]:
    """How many arguments the workflow's run method takes: at least, at most."""
    parameters = list(inspect.signature(defn.run_fn).parameters.values())[1:]  # not self
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 0, 1_000_000
    required = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
    return required, len(parameters)


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a decoded argument is of its hinted type (hints that are not classes pass)."""
    if get_origin(hint) in (Union, UnionType):
        return any(_is_a(value, arm) for arm in get_args(hint))
    if hint is NoneType:
        return value is None
    return not isinstance(hint, type) or hint is Any or isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if get_origin(hint) in (Union, UnionType):
        return " or ".join(_type_name(arm) for arm in get_args(hint))
    if hint is NoneType:
        return "null"
    return getattr(hint, "__name__", None) or str(hint)


def _type_names(types: Sequence[Any] | None) -> str:
    return ", ".join(_type_name(t) for t in types or ()) or "no arguments"


def _why(error: BaseException) -> str:
    """The most useful words in a decoding failure: pydantic's errors, else the innermost."""
    current: BaseException | None = error
    innermost = error
    while current is not None:
        if isinstance(current, ValidationError):
            problems = [
                f"{'.'.join(str(p) for p in e['loc']) or '(the value)'}: {e['msg']}"
                for e in current.errors(include_url=False)
            ]
            return "; ".join(problems)
        innermost = current
        current = current.__cause__ or current.__context__
    return str(innermost) or type(innermost).__name__


def invalid_input(workflow: str, problem: str, types: Sequence[Any] | None) -> ApplicationError:
    """The non-retryable failure of a workflow whose input cannot be used."""
    message = (
        f"{workflow} cannot start: its input is invalid: {problem}. It takes "
        f"{_type_names(types)} (JSON); start it again with a valid input"
    )
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return ApplicationError(message, type=INVALID_INPUT, non_retryable=True)


class InputCheckingInstance(_WorkflowInstanceImpl):
    """Temporal's workflow instance, failing the workflow when its input cannot be used."""

    def _make_workflow_input(self, init_job: InitializeWorkflow) -> ExecuteWorkflowInput:
        defn = self._defn
        workflow = defn.name or "workflow"
        least, most = _arity(defn)
        given = len(init_job.arguments)
        if not least <= given <= most:
            wanted = str(least) if least == most else f"{least} to {most}"
            problem = f"it got {given} arguments, it takes {wanted}"
            raise invalid_input(workflow, problem, defn.arg_types)
        try:
            made: ExecuteWorkflowInput = super()._make_workflow_input(init_job)
        except FailureError:
            raise
        except Exception as error:
            raise invalid_input(workflow, _why(error), defn.arg_types) from None
        # A payload in another encoding (binary/plain, say) decodes without its type hint.
        for index, (value, hint) in enumerate(zip(made.args, defn.arg_types or (), strict=False)):
            if not _is_a(value, hint):
                problem = (
                    f"argument {index} is {type(value).__name__} "
                    f"({init_job.arguments[index].metadata.get('encoding', b'?').decode()})"
                )
                raise invalid_input(workflow, problem, defn.arg_types)
        return made

    def _process_handler_args(
        self,
        job_name: str,
        job_input: Sequence[Payload],
        defn_name: str | None,
        defn_arg_types: list[type] | None,
        defn_dynamic_vararg: bool,
    ) -> list[Any]:
        # An update with such an input is rejected (no history) with these words; a signal
        # is dropped, and the worker logs them.
        try:
            args: list[Any] = super()._process_handler_args(
                job_name, job_input, defn_name, defn_arg_types, defn_dynamic_vararg
            )
        except FailureError:
            raise
        except Exception as error:
            message = (
                f"{job_name}: its input is invalid: {_why(error)}. It takes "
                f"{_type_names(defn_arg_types)} (JSON)"
            )
            raise ApplicationError(
                message[:MESSAGE_LIMIT], type=INVALID_INPUT, non_retryable=True
            ) from None
        return args


class InputCheckingRunner(UnsandboxedWorkflowRunner):
    """Creates :class:`InputCheckingInstance` (inside the sandbox, which imports this)."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        """Implements :py:meth:`WorkflowRunner.create_instance`."""
        # Not really abstract: the asyncio loop methods it leaves out are never called.
        return InputCheckingInstance(det)  # type: ignore[abstract]


@functools.lru_cache(maxsize=COMPILED_CODE_CACHE_SIZE)
def compiled(code: str) -> CodeType:
    """The code object of one of the sandbox's code strings, compiled on first use."""
    return compile(code, "<workflow sandbox>", "exec")


class _CompiledCodeInstance(_Instance):
    """A sandboxed workflow instance that runs its glue code precompiled."""

    def _run_code(self, code: str, **extra_globals: Any) -> None:
        # ``exec`` takes a code object as readily as a string; the SDK's method does the
        # rest (globals, the in-sandbox flag, the thread id) exactly as before.
        super()._run_code(compiled(code), **extra_globals)  # type: ignore[arg-type]


class MusterSandboxRunner(SandboxedWorkflowRunner):
    """Temporal's :class:`SandboxedWorkflowRunner` with its glue code compiled once."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        """Implements :py:meth:`WorkflowRunner.create_instance`."""
        return _CompiledCodeInstance(det, self.runner_class, self.restrictions)


def muster_workflow_runner() -> SandboxedWorkflowRunner:
    """Temporal's sandbox with Muster's libraries passed through, its glue precompiled, and
    workflows with an unusable input failed at once."""
    return MusterSandboxRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES),
        runner_class=InputCheckingRunner,
    )
