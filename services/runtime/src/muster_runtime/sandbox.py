"""The workflow sandbox every Muster worker runs its workflows in.

It is Temporal's sandbox (same restrictions, same per-run isolation) with two changes that
only save time:

- Muster's runtime and telemetry libraries are passed through: none of their code runs
  inside workflow logic, and re-importing them for every workflow run would only cost time
  (and trip the sandbox on their I/O modules);
- the sandbox's glue code is compiled once per process. Temporal's sandbox hands a short
  code string to ``exec`` for every activation and for every payload it converts with a
  serialization context (each activity it schedules, each result it reads), and ``exec``
  compiles that string every time: about a tenth of a worker's CPU in a short saga. The
  strings are few and fixed, so the compiled code objects are cached.
"""

from __future__ import annotations

import functools
from types import CodeType
from typing import Any

from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._runner import _Instance

PASSTHROUGH_MODULES = ("muster_runtime", "prometheus_client", "pydantic_settings", "opentelemetry")
"""Library code that workflow modules may import and that never runs workflow logic."""

COMPILED_CODE_CACHE_SIZE = 256
"""Distinct sandbox code strings kept compiled (a handful per workflow class)."""


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
    """Temporal's sandbox with Muster's libraries passed through and its glue precompiled."""
    return MusterSandboxRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )
