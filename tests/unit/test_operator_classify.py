"""The operator's one mapping from a reconcile's exception to a status condition and a retry
(:func:`muster_operator.reconcile.classify`): invalid specs and foreign schedules wait for a
change, only unreachable Temporal is an outage, Temporal's refusals and Kubernetes API errors
say so, and anything unexpected (a bug, an error a validator let through) is a
``ReconcileError`` that is retried with backoff and never reported as an outage."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException
from temporalio.service import RPCError, RPCStatusCode

from muster_operator.reconcile import (
    ForeignSchedule,
    SpecError,
    TemporalUnavailable,
    backoff,
    classify,
)


def rpc(status: RPCStatusCode, message: str = "boom") -> RPCError:
    return RPCError(message, status, b"")


CASES = [
    # exception, reason, retried, outage, unexpected
    (SpecError("cron: bad"), "InvalidSpec", False, False, False),
    (ForeignSchedule("id taken by someone else"), "ForeignSchedule", False, False, False),
    (TemporalUnavailable("cannot reach Temporal at x:1"), "TemporalUnavailable", True, True, False),
    (ConnectionRefusedError("refused"), "TemporalUnavailable", True, True, False),
    (TimeoutError("slow"), "TemporalUnavailable", True, True, False),
    (OSError("network is unreachable"), "TemporalUnavailable", True, True, False),
    (rpc(RPCStatusCode.UNAVAILABLE), "TemporalUnavailable", True, True, False),
    (rpc(RPCStatusCode.DEADLINE_EXCEEDED), "TemporalUnavailable", True, True, False),
    (rpc(RPCStatusCode.RESOURCE_EXHAUSTED), "TemporalUnavailable", True, True, False),
    (rpc(RPCStatusCode.INVALID_ARGUMENT, "bad spec"), "TemporalRejected", True, False, False),
    (rpc(RPCStatusCode.NOT_FOUND, "no namespace"), "TemporalRejected", True, False, False),
    (rpc(RPCStatusCode.PERMISSION_DENIED), "TemporalRejected", True, False, False),
    (ApiException(status=403, reason="Forbidden"), "KubernetesApiError", True, False, False),
    # The SDK's own complaints about a spec and plain bugs are not outages.
    (ValueError("Must set limited actions to false"), "ReconcileError", True, False, True),
    (OverflowError("date value out of range"), "ReconcileError", True, False, True),
    (RuntimeError("something broke"), "ReconcileError", True, False, True),
    (KeyError("status"), "ReconcileError", True, False, True),
    (AssertionError("the startup handler did not run"), "ReconcileError", True, False, True),
]


@pytest.mark.parametrize(("exc", "reason", "retried", "outage", "unexpected"), CASES)
def test_classify(
    exc: BaseException, reason: str, retried: bool, outage: bool, unexpected: bool
) -> None:
    failure = classify(exc, attempt=3, max_backoff=60)
    assert failure.reason == reason
    assert (failure.retry_after is not None) == retried
    assert failure.outage == outage
    assert failure.unexpected == unexpected
    assert failure.message, "a message people can act on"


def test_messages_say_what_happened() -> None:
    assert classify(ValueError("boom")).message.startswith("unexpected ValueError: boom")
    assert classify(ConnectionRefusedError("refused")).message == "cannot reach Temporal: refused"
    assert classify(TemporalUnavailable("cannot reach Temporal at a:1: x")).message == (
        "cannot reach Temporal at a:1: x"
    )
    rejected = classify(rpc(RPCStatusCode.INVALID_ARGUMENT, "jitter too large"))
    assert "INVALID_ARGUMENT" in rejected.message
    assert "jitter too large" in rejected.message


@pytest.mark.parametrize(
    ("attempt", "maximum", "expected"),
    [(0, 60, 1), (1, 60, 2), (5, 60, 32), (6, 60, 60), (50, 60, 60), (-1, 60, 1), (3, 5, 5)],
)
def test_backoff(attempt: int, maximum: float, expected: float) -> None:
    assert backoff(attempt, maximum) == expected


def test_outages_back_off_with_the_attempt() -> None:
    first = classify(TimeoutError(), attempt=0, max_backoff=60)
    later = classify(TimeoutError(), attempt=4, max_backoff=60)
    assert first.retry_after == 1
    assert later.retry_after == 16
