"""The one mapping from a Temporal error to what an HTTP caller gets (never a 500), what a
failed start tells the caller about retrying, how values are echoed in messages, and the
gateway's catch-all: an unexpected failure is a problem document with an incident id,
never a stack trace."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError, TemporalError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from muster_gateway.app import create_app
from muster_gateway.auth import Authenticator
from muster_gateway.problems import from_temporal, shown
from muster_gateway.service import Gateway, start_failed
from muster_gateway.settings import AuthSettings
from muster_runtime.policies import Directory

REPO = Path(__file__).resolve().parents[2]


def rpc(status: RPCStatusCode, message: str = "boom") -> RPCError:
    return RPCError(message, status, b"")


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (rpc(RPCStatusCode.NOT_FOUND, "workflow not found"), 404, "not-found"),
        (rpc(RPCStatusCode.NOT_FOUND, "workflow execution already completed"), 409, "closed"),
        (rpc(RPCStatusCode.ALREADY_EXISTS), 409, "already-exists"),
        (rpc(RPCStatusCode.FAILED_PRECONDITION), 409, "conflict"),
        (rpc(RPCStatusCode.INVALID_ARGUMENT), 422, "invalid"),
        (rpc(RPCStatusCode.UNAVAILABLE), 503, "temporal-unavailable"),
        (rpc(RPCStatusCode.DEADLINE_EXCEEDED), 503, "temporal-unavailable"),
        (rpc(RPCStatusCode.RESOURCE_EXHAUSTED), 503, "temporal-unavailable"),
        (rpc(RPCStatusCode.PERMISSION_DENIED), 503, "temporal-unavailable"),
        (rpc(RPCStatusCode.INTERNAL), 503, "temporal-unavailable"),
        (rpc(RPCStatusCode.UNKNOWN), 503, "temporal-unavailable"),
        (WorkflowAlreadyStartedError("order-1", "OrderFulfillment"), 409, "already-exists"),
        (WorkflowUpdateRPCTimeoutOrCancelledError(), 503, "temporal-unavailable"),
        (WorkflowQueryFailedError("workflow task failing"), 503, "temporal-unavailable"),
        (WorkflowQueryRejectedError(WorkflowExecutionStatus.FAILED), 409, "closed"),
        (TemporalError("something else"), 503, "temporal-unavailable"),
    ],
)
def test_every_temporal_error_is_a_problem_not_a_500(
    error: TemporalError, status: int, kind: str
) -> None:
    refusal = from_temporal(error, "order 'x'")
    assert (refusal.status, refusal.kind) == (status, kind)
    assert "order 'x'" in refusal.detail or status in (403, 422)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("NotAnApprover", 403),
        ("SelfApproval", 403),
        ("AlreadyDecided", 409),
        ("DecisionChanged", 409),
        ("ReasonRequired", 422),
        ("NotReady", 503),
        ("NotResolvable", 409),
        ("NoteRequired", 422),
        ("InvalidWorkflowInput", 422),
        ("SomethingNew", 409),
    ],
)
def test_an_update_refusal_keeps_its_words(kind: str, status: int) -> None:
    cause = ApplicationError("the workflow's own words", type=kind, non_retryable=True)
    refusal = from_temporal(WorkflowUpdateFailedError(cause))
    assert refusal.status == status
    assert refusal.detail == "the workflow's own words"


def test_a_start_whose_outcome_is_unknown_says_whether_a_retry_is_safe() -> None:
    timeout = rpc(RPCStatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
    keyed = start_failed(timeout, "order 'o-1'", "k-1")
    assert keyed.status == 503
    assert "retrying with the same Idempotency-Key and body is safe" in keyed.detail
    unkeyed = start_failed(timeout, "approval request 'req-1'", None)
    assert unkeyed.status == 503
    assert "may have started: retry with an Idempotency-Key" in unkeyed.detail
    # A refusal that is not the server's trouble is passed on as it is.
    invalid = start_failed(rpc(RPCStatusCode.INVALID_ARGUMENT, "bad"), "order 'o-1'", "k-1")
    assert invalid.status == 422
    assert "Idempotency-Key" not in invalid.detail


def test_an_echoed_value_is_escaped_and_cut() -> None:
    assert shown("ok") == "'ok'"
    assert shown("a\nb\x00") == "'a\\nb\\x00'"
    long = shown("x" * 10_000)
    assert long.endswith("…' (10000 characters)")
    assert len(long) < 100


async def test_an_unexpected_failure_is_a_problem_with_an_incident_id() -> None:
    """A gateway without a Temporal client fails on every call: the caller sees a 500
    problem naming an incident, never a traceback."""
    auth = Authenticator(
        AuthSettings(tokens_file=REPO / "examples" / "gateway" / "tokens.yaml"), b"k" * 32
    )
    directory = Directory.load(REPO / "examples" / "directory.yaml")
    gateway = Gateway(
        client=None,  # type: ignore[arg-type]
        policies=dict,
        directory=lambda: directory,
        approvals_task_queue="muster-approval",
        orders_task_queue="muster-fulfillment",
        admin_group="muster-admins",
    )
    transport = httpx.ASGITransport(app=create_app(gateway, auth), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        response = await http.get(
            "/v1/orders/demo-1", headers={"Authorization": "Bearer shop-demo-token"}
        )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["incident"] in problem["detail"]
    assert "Traceback" not in response.text
    assert "AttributeError" not in response.text
