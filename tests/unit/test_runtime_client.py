"""Which Temporal call failures mean the server went away under the call (worth asking
again once it answers) and which say something about the call itself
(:func:`muster_runtime.client.server_went_away`). Waiting on results and on orders relies
on it to outlive server restarts; tests/temporal/test_server_restarts.py kills a real
server under such a wait."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from muster_runtime.client import server_went_away


@pytest.mark.parametrize(
    ("status", "message", "went_away"),
    [
        (RPCStatusCode.UNAVAILABLE, "tcp connect error: Connection refused", True),
        # A real server SIGKILLed during a long poll.
        (RPCStatusCode.UNKNOWN, "transport error", True),
        # A call queued on the connection that closed before it was sent.
        (RPCStatusCode.CANCELLED, "operation was canceled", True),
        # Anything else is about the call: asking again would only repeat the answer.
        (RPCStatusCode.CANCELLED, "workflow cancelled by the server", False),
        (RPCStatusCode.UNKNOWN, "panic in the history service", False),
        (RPCStatusCode.NOT_FOUND, "workflow execution not found", False),
        (RPCStatusCode.INVALID_ARGUMENT, "operation was canceled", False),
        (RPCStatusCode.PERMISSION_DENIED, "transport error", False),
        (RPCStatusCode.DEADLINE_EXCEEDED, "context deadline exceeded", False),
    ],
)
def test_server_went_away(status: RPCStatusCode, message: str, went_away: bool) -> None:
    assert server_went_away(RPCError(message, status, b"")) is went_away
