"""``Idempotency-Key``: one key, one request, for at least a day, across gateway replicas.

A key is bound to the caller, the route and a hash of the request body. The binding is
kept in Temporal, which the gateway already depends on and which every replica shares: a
*key record* is a workflow whose id is derived from (route, caller, key) and whose memo
holds the body's hash and what the key created (an order id, a request id). Starting it
with ``REJECT_DUPLICATE`` is an atomic claim: of two requests with one key, exactly one
starts it; the other reads the memo and is a replay (same body) or a 422 (another body).

A key record never runs code. It starts with a first-task delay longer than its execution
timeout (``hours``), so no worker ever gets a task for it; it times out after ``hours``
and stays, closed, for the namespace's retention. So a key is held for ``hours`` plus
retention, whatever the gateway does: restarts, several replicas, a crash between the
claim and the start of the order (a retry finds the record and starts the order then).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from muster_api import search_attributes as sa
from muster_gateway.problems import GatewayError, shown

RECORD_WORKFLOW = "MusterIdempotencyKey"
"""Workflow type of a key record (no worker registers it: it never runs)."""
RECORD_TASK_QUEUE = "muster-idempotency-keys"
"""Task queue of key records (nothing polls it, and no task is ever put on it)."""


def fingerprint(payload: Any) -> str:
    """SHA-256 of a request's canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What a key stands for: ``target`` (an order id, a request id); ``first`` when this
    request is the one that claimed it."""

    record_id: str
    target: str
    first: bool


@dataclass
class IdempotencyKeys:
    """Key records in Temporal (see the module's docstring)."""

    client: Client
    hours: float = 24.0

    @staticmethod
    def record_id(route: str, caller: str, key: str) -> str:
        """The key record's workflow id: keys are per caller and per route."""
        digest = hashlib.sha256(f"{route}\n{caller}\n{key}".encode()).hexdigest()
        return f"idempotency-{digest[:40]}"

    async def claim(self, route: str, caller: str, key: str, body_hash: str, target: str) -> Claim:
        """Claim ``key`` for this body and ``target``, or find what it was claimed for.

        Raises a 422 :class:`GatewayError` when the key was used with another body.
        """
        record_id = self.record_id(route, caller, key)
        held = timedelta(hours=self.hours)
        try:
            await self.client.start_workflow(
                RECORD_WORKFLOW,
                id=record_id,
                task_queue=RECORD_TASK_QUEUE,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                execution_timeout=held,
                # Later than the timeout: the record's first task is never scheduled.
                start_delay=held + timedelta(hours=1),
                memo={
                    "route": route,
                    "caller": caller,
                    "fingerprint": body_hash,
                    "target": target,
                    "claimed_at": datetime.now(UTC).isoformat(),
                },
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(sa.PATTERN, "idempotency")]
                ),
            )
            return Claim(record_id, target, first=True)
        except WorkflowAlreadyStartedError:
            pass
        memo = await (await self.client.get_workflow_handle(record_id).describe()).memo()
        if memo.get("fingerprint") != body_hash:
            raise GatewayError(
                422,
                "idempotency-conflict",
                "Idempotency-Key reused",
                f"Idempotency-Key {shown(key)} was already used by {caller} for another "
                f"request to {route}; send the same body again to get its answer, or use a "
                "new key for a new request",
            )
        return Claim(record_id, str(memo.get("target", target)), first=False)
