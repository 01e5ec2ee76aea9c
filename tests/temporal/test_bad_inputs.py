"""The bad-input table (``tests/bad_inputs.py``) against the real platform: the gateway,
the workers of every pattern (approval, fulfillment, scheduling, canary), the backends and
the local mailbox, on the session's dev server.

Each API case gets its 4xx as ``application/problem+json`` whose detail says what is wrong
(and never echoes a 10,000-character value back); each workflow started through the real
``temporal`` CLI with raw JSON fails at once, non-retryably, saying what is wrong, after one
workflow task and no activity; each ``muster-orders`` case exits with a clear error. Updates
and signals with malformed payloads are refused or dropped, and the workflow carries on.
At the end nothing was written: no workflow beyond the failed ones the table started on
purpose, no ledger row, no e-mail, no decision.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from tests import bad_inputs
from tests.bad_inputs import NO_BODY, ApiCase, CliCase, WorkflowCase
from tests.helpers import async_wait_until
from tests.platform_support import TOKENS, Platform, platform

pytestmark = pytest.mark.timeout(300)

TEMPORAL_CLI = Path(sys.executable).parent / "temporal"


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str]
) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("bad-inputs")
    with platform(tmp, temporal_env) as started:
        started.start_worker(
            "scheduling", "muster_scheduling",
            {**temporal_env, "MUSTER_SCHEDULING_BACKENDS_URL": started.backends.api,
             "MUSTER_SCHEDULING_REPORTS_DIR": str(tmp / "reports"),
             "MUSTER_SCHEDULING_WAREHOUSE": str(tmp / "warehouse.db")},
            "MUSTER_SCHEDULING_",
        )  # fmt: skip
        started.start_worker("canary", "muster_runtime.canary", temporal_env, "MUSTER_CANARY_")
        yield started


@dataclass
class World:
    """What the cases refer to, and what the platform held before them."""

    request_id: str
    approval_key: str
    order: dict[str, Any]
    order_key: str
    before: dict[str, int]


async def written(running: Platform, client: Client) -> dict[str, int]:
    """Everything a bad input must not add to: workflows, ledgers, e-mails."""
    workflows = (await client.count_workflows()).count
    return {"workflows": workflows, **await asyncio.to_thread(_rows, running)}


def _rows(running: Platform) -> dict[str, int]:
    charges = running.backends.get("/payment/ledger")
    return {
        "charges": len(charges["charges"]) + len(charges["refunds"]),
        "stock moves": len(running.backends.get("/inventory/ledger")),
        "shipments": len(running.backends.get("/shipping/ledger")),
        "notifications": len(running.backends.get("/notification/ledger")),
        "e-mails": len(httpx.get(f"{running.mailbox}/messages", timeout=10).json()),
    }


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(running: Platform, client: Client) -> AsyncIterator[World]:
    approval_key = f"bad-approval-{uuid.uuid4().hex[:8]}"
    order_key = f"bad-order-{uuid.uuid4().hex[:8]}"
    order = bad_inputs.order(f"bad-fixture-{uuid.uuid4().hex[:8]}")
    async with running.client("dave") as dave, running.client("shop") as shop:
        created = await dave.post(
            "/v1/approvals", json=bad_inputs.approval(), headers={"Idempotency-Key": approval_key}
        )
        assert created.status_code == 201, created.text
        placed = await shop.post("/v1/orders", json=order, headers={"Idempotency-Key": order_key})
        assert placed.status_code == 201, placed.text
        request_id = created.json()["request"]["request_id"]

        async def settled() -> bool:
            state = (await dave.get(f"/v1/approvals/{request_id}")).json()
            shipped = (await shop.get(f"/v1/orders/{order['order_id']}")).json()
            mailed = await asyncio.to_thread(running.mail_to, "bob@example.com")
            return (
                bool(state["deadline"])
                and shipped["status"] == "fulfilled"
                and any(request_id in m["body"] for m in mailed)
            )

        await async_wait_until(
            settled, what="the request asked and the order fulfilled", timeout=90
        )
    # The approvers' e-mails and the order's confirmation are all in: nothing else is due.
    before = await written(running, client)
    yield World(request_id, approval_key, order, order_key, before)


def _fill(text: str, world: World) -> str:
    return (
        text.replace("{request}", world.request_id)
        .replace("{order}", world.order["order_id"])
        .replace("{approval-key}", world.approval_key)
        .replace("{key}", world.order_key)
    )


async def _send(running: Platform, case: ApiCase, world: World) -> httpx.Response:
    headers = {_fill(k, world): _fill(v, world) for k, v in case.headers.items()}
    if case.user is not None and "Authorization" not in headers:
        token = case.user[1:] if case.user.startswith("!") else TOKENS[case.user]
        headers["Authorization"] = f"Bearer {token}"
    content: Any = None
    if case.raw is not None:
        headers.setdefault("Content-Type", "application/json")
        raw = case.raw

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(raw), 64 * 1024):
                yield raw[start : start + 64 * 1024]

        content = chunks() if case.chunked else raw
    elif case.body is not NO_BODY:
        body = world.order if case.body == "{order-body}" else case.body
        headers.setdefault("Content-Type", "application/json")
        content = json.dumps(body).encode()
    async with httpx.AsyncClient(base_url=running.gateway, timeout=30) as http:
        return await http.request(
            case.method, _fill(case.path, world), headers=headers, content=content
        )


def test_the_table_holds_over_a_hundred_distinct_cases() -> None:
    names = [
        *(c.name for c in bad_inputs.API),
        *(c.name for c in bad_inputs.WORKFLOWS),
        *(c.name for c in bad_inputs.CLI),
    ]
    assert len(names) == len(set(names)), "every case has its own name"
    assert bad_inputs.COUNT == len(names) >= 100


@pytest.mark.parametrize("case", bad_inputs.API, ids=[c.name for c in bad_inputs.API])
async def test_the_api_refuses(case: ApiCase, running: Platform, world: World) -> None:
    response = await _send(running, case, world)
    assert response.status_code == case.status, response.text[:2000]
    assert response.headers["content-type"] == "application/problem+json", response.text[:500]
    problem = response.json()
    assert problem["status"] == case.status
    assert problem["type"].startswith("urn:muster:problem:")
    assert case.says in problem["detail"], problem
    assert len(problem["detail"]) < 2000, "a refusal never echoes a huge value back"
    if case.status == 405:
        assert response.headers["Allow"], "a 405 says what is allowed"
    if case.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_big_body_is_refused_before_it_is_sent(running: Platform) -> None:
    """The gateway answers 413 on the headers alone: the client has not sent a byte."""
    host, port = running.gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /v1/approvals HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKENS['dave']}\r\n".encode()
            + f"Content-Length: {bad_inputs.BIG}\r\n\r\n".encode()
        )
        answer = conn.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "application/problem+json" in answer


def _temporal(running: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    address = running.approval_env["TEMPORAL_ADDRESS"]
    return subprocess.run(
        [str(TEMPORAL_CLI), *args, "--address", address, "--namespace", "default"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("case", bad_inputs.WORKFLOWS, ids=[c.name for c in bad_inputs.WORKFLOWS])
async def test_a_workflow_with_bad_input_fails_at_once(
    case: WorkflowCase, running: Platform, client: Client, world: World
) -> None:
    workflow_id = f"raw-{uuid.uuid4().hex[:10]}"
    inputs = [arg for value in case.inputs for arg in ("--input", value)]
    started = await asyncio.to_thread(
        _temporal, running, "workflow", "start", "--type", case.workflow,
        "--task-queue", case.task_queue, "--workflow-id", workflow_id, *inputs, *case.flags,
    )  # fmt: skip
    handle = client.get_workflow_handle(workflow_id)
    if case.cli_refuses:
        assert started.returncode != 0
        assert "not valid JSON" in started.stderr
        with pytest.raises(RPCError, match="not found"):
            await handle.describe()
        return
    assert started.returncode == 0, started.stderr
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=30)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidWorkflowInput"
    assert cause.non_retryable
    assert case.says in cause.message, cause.message
    assert case.workflow in cause.message
    history = await handle.fetch_history()
    kinds = [event.event_type for event in history.events]
    # One workflow task, which failed the workflow: no retries, no activity, no timer.
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED) == 1
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in kinds
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED


@pytest.mark.parametrize("case", bad_inputs.CLI, ids=[c.name for c in bad_inputs.CLI])
def test_muster_orders_refuses(
    case: CliCase, running: Platform, tmp_path: Path, world: World
) -> None:
    path = tmp_path / "order.json"
    if case.content is not None:
        path.write_text(case.content)
    argv = [a.replace("{file}", str(path)) for a in case.argv]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "muster-orders"), *argv],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **{k: v for k, v in running.approval_env.items()
                              if k.startswith("TEMPORAL_")}},
    )  # fmt: skip
    assert done.returncode == case.exit, done.stderr
    assert case.says in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


async def test_malformed_updates_and_signals_leave_the_workflow_working(
    running: Platform, client: Client, world: World
) -> None:
    request = f"approval-{world.request_id}"
    for update in ('{"approver": 5, "verdict": "approve"}', '"approve"', '{"verdict": "maybe"}'):
        refused = await asyncio.to_thread(
            _temporal, running, "workflow", "update", "execute", "--workflow-id", request,
            "--name", "decide", "--input", update,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "InvalidWorkflowInput" in refused.stderr, refused.stderr
        assert "retryable: false" in refused.stderr
    # A refusal is an answer, not a fault: the temporal CLI must not call it retryable.
    outsider = await asyncio.to_thread(
        _temporal, running, "workflow", "update", "execute", "--workflow-id", request,
        "--name", "decide", "--input", '{"approver": "shop", "verdict": "approve"}',
    )  # fmt: skip
    assert "type: NotAnApprover, retryable: false" in outsider.stderr, outsider.stderr
    signalled = await asyncio.to_thread(
        _temporal, running, "workflow", "signal", "--workflow-id", request,
        "--name", "submit_decision", "--input", '{"approver": ["alice"]}',
    )  # fmt: skip
    assert signalled.returncode == 0, signalled.stderr
    order = f"order-{world.order['order_id']}"
    resolve = await asyncio.to_thread(
        _temporal, running, "workflow", "update", "execute", "--workflow-id", order,
        "--name", "resolve", "--input", '{"action": 1}',
    )  # fmt: skip
    assert resolve.returncode != 0
    # The request still answers, took no decision, and its task loop never failed.
    handle = client.get_workflow_handle(request)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    async with running.client("alice") as alice:
        state = (await alice.get(f"/v1/approvals/{world.request_id}")).json()
    assert state["status"] == "pending"
    assert state["decisions"] == []
    kinds = [e.event_type for e in (await handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED not in kinds
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED not in kinds


async def test_nothing_was_written(running: Platform, client: Client, world: World) -> None:
    """Last in the module: the bad inputs above added nothing but the failed workflows the
    workflow cases started on purpose (and one sentinel that shows visibility caught up)."""
    started = sum(1 for case in bad_inputs.WORKFLOWS if not case.cli_refuses)
    sentinel = await client.start_workflow(
        "CanaryPing", {"message": "sentinel"}, id=f"sentinel-{uuid.uuid4().hex[:8]}",
        task_queue="muster-canary",
    )  # fmt: skip
    await sentinel.result()
    expected = {**world.before, "workflows": world.before["workflows"] + started + 1}

    async def caught_up() -> dict[str, int] | None:
        now = await written(running, client)
        return now if now["workflows"] >= expected["workflows"] else None

    now = await async_wait_until(caught_up, what="visibility to list the sentinel", timeout=30)
    assert now == expected
    for case in bad_inputs.API:
        body = case.body if isinstance(case.body, dict) else {}
        order_id = body.get("order_id")
        if (
            isinstance(order_id, str)
            and len(order_id) < 200
            and order_id != world.order["order_id"]
        ):
            with pytest.raises(RPCError, match="not found"):
                await client.get_workflow_handle(f"order-{order_id}").describe()
    async with running.client("alice") as alice:
        state = (await alice.get(f"/v1/approvals/{world.request_id}")).json()
    assert state["decisions"] == []
