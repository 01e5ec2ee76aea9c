"""A create the gateway started is never answered as an error: with no worker polling the
approvals and orders task queues, ``POST /v1/approvals`` and ``POST /v1/orders`` answer
``202 Accepted`` with a ``Location`` once the state read times out (after the gateway's
``state_read_timeout``, not the client's 30 s), the workflow runs in Temporal, the same
Idempotency-Key and body again find the same workflow, and once a worker polls, the
Location answers the state. On the dev server only: the server's query routing is what
is exercised, the same on both."""

from __future__ import annotations

import html
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from muster_dev.process import ManagedProcess
from tests.fulfillment_support import start_backends
from tests.helpers import REPO, async_wait_until, free_port
from tests.platform_support import TOKENS, _start_ready

pytestmark = pytest.mark.timeout(180)

READ_TIMEOUT = 1.0
"""The gateway's MUSTER_GATEWAY_STATE_READ_TIMEOUT here (seconds)."""
SLACK = 4.0
"""What a create may take beyond the read timeout (the key record, the start, a describe)
on a busy machine; far below the 30 s a query waits without a timeout of its own."""

# A policy without notifications: the worker started late needs no mail server.
QUIET = """\
apiVersion: muster.io/v1alpha1
kind: ApprovalPolicy
metadata: {name: quiet-purchases}
spec:
  appliesTo: {kinds: [purchase]}
  approvers: {users: [alice]}
  requiredApprovals: 1
  timeout: 7d
"""


@dataclass
class Unpolled:
    """A gateway whose approvals and orders task queues nobody polls (yet)."""

    url: str
    approvals_queue: str
    orders_queue: str
    policies: Path
    tmp: Path
    processes: dict[str, ManagedProcess]

    def client(self, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=30
        )


@pytest.fixture(scope="module")
def unpolled(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str]
) -> Iterator[Unpolled]:
    tmp = tmp_path_factory.mktemp("unpolled")
    policies = tmp / "policies"
    shutil.copytree(REPO / "examples" / "policies", policies)
    (policies / "quiet-purchases.yaml").write_text(QUIET)
    suffix = uuid.uuid4().hex[:8]
    found = Unpolled(
        url="",
        approvals_queue=f"unpolled-approvals-{suffix}",
        orders_queue=f"unpolled-orders-{suffix}",
        policies=policies,
        tmp=tmp,
        processes={},
    )
    port = free_port()
    env = {
        **temporal_env,
        "MUSTER_GATEWAY_API__HOST": "127.0.0.1",
        "MUSTER_GATEWAY_API__PORT": str(port),
        "MUSTER_GATEWAY_POLICIES_DIR": str(policies),
        "MUSTER_GATEWAY_DIRECTORY_FILE": str(REPO / "examples" / "directory.yaml"),
        "MUSTER_GATEWAY_AUTH__TOKENS_FILE": str(REPO / "examples/gateway/tokens.yaml"),
        "MUSTER_GATEWAY_APPROVALS_TASK_QUEUE": found.approvals_queue,
        "MUSTER_GATEWAY_ORDERS_TASK_QUEUE": found.orders_queue,
        "MUSTER_GATEWAY_STATE_READ_TIMEOUT": str(READ_TIMEOUT),
    }
    try:
        found.processes["gateway"] = _start_ready(
            "muster_gateway", env, tmp / "gateway.log", "MUSTER_GATEWAY_"
        )
        found.url = f"http://127.0.0.1:{port}"
        yield found
    finally:
        for process in reversed(list(found.processes.values())):
            process.stop()


async def _timed_post(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], key: str
) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    response = await api.post(path, json=body, headers={"Idempotency-Key": key})
    return response, time.monotonic() - began


def _assert_accepted(response: httpx.Response, elapsed: float, location: str) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    assert response.headers["location"] == location
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"] == "application/json"
    # The state read timed out: it waited the gateway's timeout, not a client's 30 s.
    assert READ_TIMEOUT <= elapsed < READ_TIMEOUT + SLACK, elapsed
    body: dict[str, Any] = response.json()
    assert body["status"] == "accepted"
    assert "started" in body["detail"] or "placed" in body["detail"]
    assert f"GET {location}" in body["detail"]
    return body


async def _only_workflow(client: Client, workflow_id: str, queue: str) -> None:
    """The workflow runs on ``queue``, and it is the only one ever started there."""
    description = await client.get_workflow_handle(workflow_id).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.task_queue == queue

    async def listed() -> list[str] | None:
        ids = [w.id async for w in client.list_workflows(f"TaskQueue = '{queue}'")]
        return ids or None

    ids = await async_wait_until(listed, what=f"workflows on {queue} listed", timeout=30)
    assert ids == [workflow_id]


async def test_an_approval_started_without_an_answering_worker_is_202(
    unpolled: Unpolled, client: Client, temporal_env: dict[str, str]
) -> None:
    body = {
        "kind": "purchase",
        "title": "Desk lamp",
        "amount": {"amount_minor": 4_900, "currency": "EUR"},
        "policy": "quiet-purchases",
    }
    key = f"lamp-{uuid.uuid4().hex[:8]}"
    async with unpolled.client("dave") as dave:
        first, elapsed = await _timed_post(dave, "/v1/approvals", body, key)
        request_id = first.json().get("request_id")
        accepted = _assert_accepted(first, elapsed, f"/v1/approvals/{request_id}")
        assert request_id.startswith("req-"), accepted
        assert "Idempotent-Replayed" not in first.headers
        await _only_workflow(client, f"approval-{request_id}", unpolled.approvals_queue)

        again, elapsed = await _timed_post(dave, "/v1/approvals", body, key)
        _assert_accepted(again, elapsed, f"/v1/approvals/{request_id}")
        assert again.json()["request_id"] == request_id
        assert again.headers["idempotent-replayed"] == "true"
        await _only_workflow(client, f"approval-{request_id}", unpolled.approvals_queue)

        # A worker on the queue answers the same Location with the state.
        unpolled.processes["approval"] = _start_ready(
            "muster_approval",
            {
                **temporal_env,
                "MUSTER_APPROVAL_WORKER__TASK_QUEUE": unpolled.approvals_queue,
                "MUSTER_APPROVAL_WORKER__GRACEFUL_SHUTDOWN_SECONDS": "0",
                "MUSTER_APPROVAL_POLICIES_DIR": str(unpolled.policies),
                "MUSTER_APPROVAL_DIRECTORY_FILE": str(REPO / "examples" / "directory.yaml"),
                "MUSTER_APPROVAL_SECRETS_DIR": str(unpolled.tmp),
                "MUSTER_APPROVAL_PUBLIC_URL": f"{unpolled.url}/ui",
            },
            unpolled.tmp / "approval.log",
            "MUSTER_APPROVAL_",
        )

        async def answered() -> dict[str, Any] | None:
            response = await dave.get(first.headers["location"])
            state: dict[str, Any] = response.json()
            return state if response.status_code == 200 else None

        state = await async_wait_until(answered, what="the request's state", timeout=60)
        assert state["request"]["request_id"] == request_id
        assert state["request"]["title"] == "Desk lamp"
        assert state["policy"] == "quiet-purchases"
        # Now that the worker answers, a replay is the usual 201 with the state.
        answered_replay, _ = await _timed_post(dave, "/v1/approvals", body, key)
        assert answered_replay.status_code == 201, answered_replay.text
        assert answered_replay.json()["request"]["request_id"] == request_id
        assert answered_replay.headers["idempotent-replayed"] == "true"


async def test_an_order_placed_without_an_answering_worker_is_202(
    unpolled: Unpolled, client: Client, temporal_env: dict[str, str]
) -> None:
    order_id = f"acc-{uuid.uuid4().hex[:10]}"
    order = {
        "order_id": order_id,
        "customer_id": "cust-9",
        "customer_email": "cust9@example.com",
        "items": [{"sku": "WIDGET-1", "quantity": 1,
                   "unit_price": {"amount_minor": 2_500, "currency": "EUR"}}],
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "payment_token": "tok_visa",
    }  # fmt: skip
    key = f"order-{uuid.uuid4().hex[:8]}"
    location = f"/v1/orders/{order_id}"
    async with unpolled.client("shop") as shop:
        first, elapsed = await _timed_post(shop, "/v1/orders", order, key)
        assert _assert_accepted(first, elapsed, location)["order_id"] == order_id
        await _only_workflow(client, f"order-{order_id}", unpolled.orders_queue)

        again, elapsed = await _timed_post(shop, "/v1/orders", order, key)
        assert _assert_accepted(again, elapsed, location)["order_id"] == order_id
        assert again.headers["idempotent-replayed"] == "true"
        await _only_workflow(client, f"order-{order_id}", unpolled.orders_queue)

        backends = start_backends(
            unpolled.tmp, {"MUSTER_BACKENDS_INITIAL_STOCK": '{"WIDGET-1": 5}'}
        )
        unpolled.processes["backends"] = backends.process
        unpolled.processes["fulfillment"] = _start_ready(
            "muster_fulfillment",
            {
                **temporal_env,
                **backends.urls_env(),
                "MUSTER_FULFILLMENT_WORKER__TASK_QUEUE": unpolled.orders_queue,
                "MUSTER_FULFILLMENT_WORKER__GRACEFUL_SHUTDOWN_SECONDS": "0",
            },
            unpolled.tmp / "fulfillment.log",
            "MUSTER_FULFILLMENT_",
        )

        async def answered() -> dict[str, Any] | None:
            response = await shop.get(location)
            state: dict[str, Any] = response.json()
            return state if response.status_code == 200 else None

        state = await async_wait_until(answered, what="the order's state", timeout=60)
        assert state["order_id"] == order_id
        assert state["total"] == {"amount_minor": 2_500, "currency": "EUR"}
        answered_replay, _ = await _timed_post(shop, "/v1/orders", order, key)
        assert answered_replay.status_code == 201, answered_replay.text
        assert answered_replay.json()["order_id"] == order_id
        assert answered_replay.headers["idempotent-replayed"] == "true"


async def test_the_openapi_document_describes_the_202(unpolled: Unpolled) -> None:
    async with httpx.AsyncClient(base_url=unpolled.url) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
    for path, model in (("/v1/approvals", "ApprovalAccepted"), ("/v1/orders", "OrderAccepted")):
        documented = spec["paths"][path]["post"]["responses"]["202"]
        assert set(documented["headers"]) == {"Location", "Retry-After"}
        schema = documented["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}
        fields = spec["components"]["schemas"][model]["properties"]
        assert {"status", "detail"} <= set(fields)


async def test_the_inbox_lists_a_request_its_worker_cannot_answer_for(
    unpolled: Unpolled,
) -> None:
    """With the approval worker gone, the request the first test made (waiting for alice) is
    still on alice's inbox, under "Not readable just now", and the page answers once the
    gateway's state read has timed out, not when a query without a bound would give up."""
    worker = unpolled.processes.pop("approval", None)
    assert worker is not None, "the first test of this module starts the approval worker"
    worker.stop(grace=5)
    async with unpolled.client("alice") as alice:
        alice.timeout = httpx.Timeout(READ_TIMEOUT + SLACK + 5)

        async def listed() -> str | None:
            page = await alice.get("/ui/")
            assert page.status_code == 200, page.text[:2000]
            # The "Not readable just now" section: its heading to the end of its list.
            _, _, section = html.unescape(page.text).partition('<h2 id="unread">')
            unread = section.partition("</ul>")[0]
            return unread if "Desk lamp" in unread else None

        # Other requests of alice's may wait on this Temporal too (other tests' workers).
        unread = await async_wait_until(listed, what="the request listed as not readable",
                                        timeout=60, interval=1)  # fmt: skip
    assert re.search(r"\d+ requests? waiting for you could not be read within 1 s", unread), unread
