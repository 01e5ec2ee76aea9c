"""Every refusal the gateway answers, as RFC 9457 ``application/problem+json``.

:class:`GatewayError` is a refusal with its status; :func:`from_temporal` is the one mapping
from a Temporal error to one (404, 409, 422 or 503, never a 500); :func:`shown` makes a
value safe to echo in a message (control characters escaped, long values cut).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import (
    RPCTimeoutOrCancelledError,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import TemporalError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

PROBLEM_TYPE = "urn:muster:problem:"
PROBLEM_JSON = "application/problem+json"
SHOWN_LIMIT = 64
"""Longest value a message echoes back (a 10,000-character id is cut, with its length)."""


class GatewayError(Exception):
    """A refusal with its HTTP status and RFC 9457 problem type."""

    def __init__(self, status: int, kind: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.extra = extra


class FieldProblem(BaseModel):
    """One invalid part of a request."""

    where: str = Field(description="where in the request, e.g. body.items.0.quantity")
    problem: str = Field(description="what is wrong with it")


class Problem(BaseModel):
    """An RFC 9457 problem document: what went wrong and how to fix it."""

    type: str = Field(description="urn:muster:problem:<kind>, e.g. urn:muster:problem:not-found")
    title: str = Field(description="a short summary of the kind of problem")
    status: int = Field(description="the HTTP status code")
    detail: str = Field(description="what is wrong with this request, and what to do")
    errors: list[FieldProblem] | None = Field(
        default=None, description="each invalid field (422 for invalid input)"
    )
    incident: str | None = Field(
        default=None, description="an id to quote to the operators (500 only)"
    )


def shown(value: str, limit: int = SHOWN_LIMIT) -> str:
    """``value`` quoted for a message: control characters escaped, at most ``limit`` chars."""
    escaped = value.encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(escaped) > limit:
        return f"'{escaped[:limit]}…' ({len(value)} characters)"
    return f"'{escaped}'"


# Refusals a workflow's update validator (or handler) gives, by ApplicationError type.
REFUSALS = {
    "NotAnApprover": (403, "forbidden", "Not an approver"),
    "SelfApproval": (403, "forbidden", "Self-approval not allowed"),
    "AlreadyDecided": (409, "already-decided", "Request already decided"),
    "DecisionChanged": (409, "decision-changed", "Decision cannot be changed"),
    "ReasonRequired": (422, "reason-required", "Reason required"),
    "NotReady": (503, "not-ready", "Request still starting"),
    "NotResolvable": (409, "not-resolvable", "Order cannot be resolved now"),
    "NoteRequired": (422, "note-required", "Note required"),
    "InvalidWorkflowInput": (422, "validation", "Invalid request"),
}

_UNAVAILABLE = (503, "temporal-unavailable", "Temporal unavailable")


def from_temporal(error: TemporalError, subject: str = "the workflow") -> GatewayError:
    """The refusal a Temporal error means to an HTTP caller; ``subject`` names what it was
    about ("order 'x'"). Anything Temporal could not do for reasons of its own is a 503."""
    if isinstance(error, WorkflowAlreadyStartedError):
        return GatewayError(409, "already-exists", "Already exists", f"{subject} already exists")
    if isinstance(error, WorkflowUpdateFailedError):
        cause = error.cause
        kind = getattr(cause, "type", None) or ""
        status, problem, title = REFUSALS.get(kind, (409, "refused", "Refused"))
        message = getattr(cause, "message", None) or str(cause)
        return GatewayError(status, problem, title, message)
    if isinstance(error, WorkflowQueryRejectedError):
        return GatewayError(
            409, "closed", "Workflow closed", f"{subject} is closed and cannot be read that way"
        )
    if isinstance(error, WorkflowQueryFailedError):
        return GatewayError(
            *_UNAVAILABLE,
            f"the worker could not read {subject} now ({error.message}); try again shortly",
        )
    if isinstance(error, RPCTimeoutOrCancelledError):
        return GatewayError(
            *_UNAVAILABLE, f"Temporal did not answer in time about {subject}; try again shortly"
        )
    if isinstance(error, RPCError):
        message = error.message
        if error.status == RPCStatusCode.NOT_FOUND:
            if "already completed" in message or "already finished" in message:
                return GatewayError(
                    409, "closed", "Workflow closed", f"{subject} has finished: {message}"
                )
            return GatewayError(404, "not-found", "Not found", f"{subject} does not exist")
        if error.status == RPCStatusCode.ALREADY_EXISTS:
            return GatewayError(409, "already-exists", "Already exists", f"{subject}: {message}")
        if error.status == RPCStatusCode.FAILED_PRECONDITION:
            return GatewayError(409, "conflict", "Conflict", f"{subject}: {message}")
        if error.status == RPCStatusCode.INVALID_ARGUMENT:
            return GatewayError(422, "invalid", "Invalid request", f"{subject}: {message}")
        return GatewayError(
            *_UNAVAILABLE,
            f"Temporal could not serve the request about {subject} "
            f"({error.status.name.lower() if error.status else 'error'}: {message}); "
            "try again shortly",
        )
    return GatewayError(*_UNAVAILABLE, f"Temporal failed on {subject} ({error}); try again shortly")
