"""The full path through the gateway against the real services, on the dev server and on the
real server: authentication, requests and decisions (403s from the update validator,
duplicates, concurrent approvers, quorum), escalation in real time, pending requests listed
through visibility queries, a worker restart while a request waits, e-mail into a real SMTP
server, a webhook into a local receiver, idempotent order placement, and a large order
waiting for a person."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from muster_dev.process import wait_for_exit
from tests.helpers import ON_BOTH_SERVERS, REPO, async_wait_until
from tests.platform_support import TOKENS, Platform, platform

pytestmark = [pytest.mark.timeout(240), ON_BOTH_SERVERS]


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str]
) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("platform"), temporal_env) as started:
        yield started


def purchase(title: str = "Standing desk") -> dict[str, Any]:
    return {
        "kind": "purchase",
        "title": title,
        "description": "for the back",
        "amount": {"amount_minor": 89_000, "currency": "EUR"},
        "context": {"supplier": "ACME"},
    }


def order_body(amount: int = 2_500, order_id: str | None = None) -> dict[str, Any]:
    return {
        "order_id": order_id or f"g-{uuid.uuid4().hex[:10]}",
        "customer_id": "cust-9",
        "customer_email": "cust9@example.com",
        "items": [{"sku": "WIDGET-1", "quantity": 1,
                   "unit_price": {"amount_minor": amount, "currency": "EUR"}}],
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "payment_token": "tok_visa",
    }  # fmt: skip


async def create(running: Platform, user: str, body: dict[str, Any]) -> dict[str, Any]:
    async with running.client(user) as api:
        response = await api.post("/v1/approvals", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_callers_must_authenticate(running: Platform) -> None:
    async with httpx.AsyncClient(base_url=running.gateway) as anonymous:
        response = await anonymous.get("/v1/approvals")
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        wrong = await anonymous.get(
            "/v1/approvals", headers={"Authorization": "Bearer not-a-token"}
        )
        assert wrong.status_code == 401
        # Identity headers are believed only from the trusted proxy network (loopback here).
        proxied = await anonymous.get("/v1/approvals", headers={"X-Forwarded-User": "carol"})
        assert proxied.status_code == 200


async def test_request_notifies_approvers_by_mail_and_webhook(running: Platform) -> None:
    created = await create(running, "dave", purchase("Monitor arm"))
    request_id = created["request"]["request_id"]

    async def asked() -> dict[str, Any] | None:
        async with running.client("dave") as api:
            state: dict[str, Any] = (await api.get(f"/v1/approvals/{request_id}")).json()
        return state if state["approvers"] else None

    state = await async_wait_until(asked, what="approvers asked", timeout=30)
    assert state["approvers"] == ["alice", "bob"]
    assert state["policy"] == "purchases"

    def mailed() -> bool:
        return all(
            any(request_id in m["body"] for m in running.mail_to(address))
            for address in ("alice@example.com", "bob@example.com")
        )

    await async_wait_until(_async(mailed), what="e-mails to alice and bob", timeout=30)
    message = next(m for m in running.mail_to("alice@example.com") if request_id in m["body"])
    assert message["subject"] == "Approval needed: Monitor arm"
    assert f"/ui/approvals/{request_id}" in message["body"]
    assert message["idempotency_key"] == f"{request_id}:level-0"

    def hooked() -> dict[str, Any] | None:
        return next(
            (
                c
                for c in running.webhook.received
                if c["body"]["muster"]["request_id"] == request_id
            ),
            None,
        )

    call = await async_wait_until(_async(hooked), what="webhook call", timeout=30)
    assert call["headers"]["Idempotency-Key"] == f"{request_id}:level-0"
    assert call["body"]["text"] == "Approval needed: Monitor arm"
    assert call["body"]["muster"]["event"] == "requested"


async def test_authorization_failures_are_403_and_leave_history_alone(
    running: Platform, client: Client
) -> None:
    created = await create(running, "alice", purchase("Chair"))  # alice is an approver too
    request_id = created["request"]["request_id"]
    await _wait_asked(running, "alice", request_id)
    async with running.client("alice") as alice, running.client("shop") as shop:
        own = await alice.post(f"/v1/approvals/{request_id}/approve")
        assert own.status_code == 403
        assert "does not allow approving one's own request" in own.json()["detail"]
        outsider = await shop.post(f"/v1/approvals/{request_id}/approve")
        assert outsider.status_code == 403
        assert outsider.json()["type"] == "urn:muster:problem:forbidden"
        peek = await shop.get(f"/v1/approvals/{request_id}")
        assert peek.status_code == 403
    history = await client.get_workflow_handle(f"approval-{request_id}").fetch_history()
    assert not [
        e for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]  # fmt: skip


async def test_quorum_with_concurrent_and_duplicate_decisions(running: Platform) -> None:
    created = await create(running, "dave", purchase("Two screens"))
    request_id = created["request"]["request_id"]
    await _wait_asked(running, "dave", request_id)
    async with running.client("alice") as alice, running.client("bob") as bob:
        no_reason = await bob.post(f"/v1/approvals/{request_id}/reject", json={})
        assert no_reason.status_code == 422
        assert "a rejection needs a reason" in no_reason.json()["detail"]
        first = await alice.post(f"/v1/approvals/{request_id}/approve")
        again = await alice.post(f"/v1/approvals/{request_id}/approve")
        assert first.status_code == again.status_code == 200
        assert again.json()["status"] == "pending"
        assert [d["approver"] for d in again.json()["decisions"]] == ["alice"]
        # Both approvers at once: both count, once each.
        both = await asyncio.gather(
            alice.post(f"/v1/approvals/{request_id}/approve"),
            bob.post(f"/v1/approvals/{request_id}/approve", json={"reason": "ok"}),
        )
        assert [r.status_code for r in both] == [200, 200]
        final = (await alice.get(f"/v1/approvals/{request_id}")).json()
        assert final["status"] == "approved"
        assert sorted(d["approver"] for d in final["decisions"]) == ["alice", "bob"]
        # Retrying a counted decision stays idempotent after the request closed; anything
        # else is refused.
        retried = await alice.post(f"/v1/approvals/{request_id}/approve")
        assert retried.status_code == 200
        assert retried.json()["status"] == "approved"
        late = await bob.post(f"/v1/approvals/{request_id}/reject", json={"reason": "changed"})
        assert late.status_code == 409
        assert "approved" in late.json()["detail"]
    # The worker counts the outcome and how long people took, by policy (never by request).
    policy = final["policy"]

    async def counted() -> str | None:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(running.metrics["muster_approval"])).text
        lines = [line for line in text.splitlines() if f'policy="{policy}"' in line]
        done = [line for line in lines if line.startswith("muster_approvals_completed{")
                and 'outcome="approved"' in line]  # fmt: skip
        return text if done and float(done[0].rsplit(" ", 1)[1]) >= 1 else None

    text = await async_wait_until(counted, what="the approval worker's outcome metrics", timeout=30)
    assert "# TYPE muster_approval_decision_seconds histogram" in text
    assert "muster_approval_decision_seconds_bucket{" in text
    assert request_id not in text, "no request ids as labels"


async def listed(running: Platform, user: str, **params: str) -> list[str]:
    """Request ids ``GET /v1/approvals`` lists for ``user`` (a visibility query)."""
    async with running.client(user) as api:
        response = await api.get("/v1/approvals", params=params)
    assert response.status_code == 200, response.text
    return [item["request_id"] for item in response.json()]


async def test_listing_filters_and_scopes(running: Platform) -> None:
    created = await create(running, "dave", purchase("Keyboard"))
    request_id = created["request"]["request_id"]
    await _wait_asked(running, "dave", request_id)

    async def visible() -> bool:
        return request_id in await listed(running, "alice", status="pending", approver="alice")

    await async_wait_until(visible, what="pending request listed for alice", timeout=30)
    assert request_id in await listed(running, "dave", policy="purchases")
    assert request_id not in await listed(running, "shop")  # not involved: not listed
    # Someone else's inbox shows only what the caller is in: nothing to shop, the request
    # to dave (its requester).
    assert request_id not in await listed(running, "shop", approver="alice")
    assert request_id in await listed(running, "dave", approver="alice")
    assert request_id in await listed(running, "carol")  # an admin sees everything
    async with running.client("alice") as api:
        bad = await api.get("/v1/approvals", params={"status": "sleeping"})
        assert bad.status_code == 422
        injected = await api.get("/v1/approvals", params={"policy": "x' OR '1'='1"})
        assert injected.status_code == 422


async def test_a_listing_is_one_page_of_at_most_limit(running: Platform) -> None:
    # The gateway asks Temporal for one page of `limit` executions: never more, and no fewer
    # when more match.
    ids = [(await create(running, "dave", purchase(f"Chair {n}")))["request"]["request_id"]
           for n in range(3)]  # fmt: skip

    async def all_listed() -> bool:
        return set(ids) <= set(await listed(running, "dave", limit="500"))

    await async_wait_until(all_listed, what="dave's three requests listed", timeout=30)
    assert len(await listed(running, "dave", limit="2")) == 2
    assert len(await listed(running, "dave", limit="3")) == 3


async def test_an_unanswered_request_escalates_and_the_next_level_decides(
    running: Platform,
) -> None:
    created = await create(running, "dave", {**purchase("Soldering station"), "kind": "equipment"})
    request_id = created["request"]["request_id"]

    async def escalated() -> bool:
        return request_id in await listed(running, "carol", status="pending", approver="carol")

    await async_wait_until(escalated, what="escalated request listed for carol", timeout=60)
    async with running.client("carol") as carol:
        state = (await carol.get(f"/v1/approvals/{request_id}")).json()
        assert state["policy"] == "quick-escalation"
        assert state["level"] == 1
        assert state["approvers"] == ["bob", "carol"]
        decided = await carol.post(f"/v1/approvals/{request_id}/approve")
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "approved"

    async def gone() -> bool:
        return request_id not in await listed(running, "carol", status="pending")

    await async_wait_until(gone, what="decided request no longer listed as pending", timeout=30)


async def test_a_request_survives_a_worker_restart(running: Platform) -> None:
    created = await create(running, "dave", purchase("Docking station"))
    request_id = created["request"]["request_id"]
    await _wait_asked(running, "dave", request_id)
    worker = running.processes["approval"]
    worker.signal(signal.SIGTERM)
    assert wait_for_exit(worker, timeout=30) == 0
    running.start_approval_worker()
    async with running.client("alice") as alice, running.client("bob") as bob:
        assert (await alice.post(f"/v1/approvals/{request_id}/approve")).status_code == 200
        decided = await bob.post(f"/v1/approvals/{request_id}/approve")
        assert decided.json()["status"] == "approved"

    def told() -> bool:
        return any(
            m["subject"] == "Approved: Docking station" for m in running.mail_to("dave@example.com")
        )

    await async_wait_until(_async(told), what="requester told the outcome", timeout=30)


async def test_orders_are_idempotent_per_key(running: Platform) -> None:
    body = order_body()
    key = f"k-{uuid.uuid4().hex[:8]}"
    async with running.client("shop") as shop:
        missing = await shop.post("/v1/orders", json=body)
        assert missing.status_code == 422
        assert "Idempotency-Key" in missing.json()["detail"]
        first = await shop.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 201, first.text
        assert "Idempotent-Replayed" not in first.headers
        # The same request again is answered as the first was, marked as a replay.
        again = await shop.post("/v1/orders", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["Location"] == first.headers["Location"]
        assert again.json()["order_id"] == body["order_id"]
        other = dict(body, payment_token="tok_other")
        conflict = await shop.post("/v1/orders", json=other, headers={"Idempotency-Key": key})
        assert conflict.status_code == 422
        assert conflict.json()["type"] == "urn:muster:problem:idempotency-conflict"
        twice = await shop.post("/v1/orders", json=body, headers={"Idempotency-Key": f"{key}-2"})
        assert twice.status_code == 409
        assert twice.json()["type"] == "urn:muster:problem:order-exists"

        async def fulfilled() -> bool:
            state = (await shop.get(f"/v1/orders/{body['order_id']}")).json()
            return bool(state["status"] == "fulfilled")

        await async_wait_until(fulfilled, what="order fulfilled", timeout=60)
    async with running.client("dave") as dave:
        assert (await dave.get(f"/v1/orders/{body['order_id']}")).status_code == 403
        # Keys are per caller: dave's k-1 is not the shop's.
        mine = order_body()
        own = await dave.post("/v1/orders", json=mine, headers={"Idempotency-Key": key})
        assert own.status_code == 201, own.text


async def test_one_key_two_orders_is_one_charge_even_across_a_gateway_restart(
    running: Platform, client: Client
) -> None:
    """The report: order repro-a, then repro-b under the same key, both 201, two charges."""
    key = f"k-{uuid.uuid4().hex[:8]}"
    first_order, second_order = order_body(), order_body()
    async with running.client("shop") as shop:
        first = await shop.post("/v1/orders", json=first_order, headers={"Idempotency-Key": key})
        assert first.status_code == 201, first.text
    # The key is held in Temporal, not in the gateway's memory.
    running.restart_gateway()
    async with running.client("shop") as shop:
        second = await shop.post("/v1/orders", json=second_order, headers={"Idempotency-Key": key})
        assert second.status_code == 422, second.text
        assert second.json()["type"] == "urn:muster:problem:idempotency-conflict"
        assert "another request" in second.json()["detail"]
        replay = await shop.post("/v1/orders", json=first_order, headers={"Idempotency-Key": key})
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"

        async def fulfilled() -> bool:
            state = (await shop.get(f"/v1/orders/{first_order['order_id']}")).json()
            return bool(state["status"] == "fulfilled")

        await async_wait_until(fulfilled, what="first order fulfilled", timeout=60)
    charged = [
        row for row in running.backends.get("/payment/ledger")["charges"]
        if row["order_id"] in (first_order["order_id"], second_order["order_id"])
    ]  # fmt: skip
    assert [row["order_id"] for row in charged] == [first_order["order_id"]]
    second_id = f"order-{second_order['order_id']}"
    with pytest.raises(RPCError, match="not found"):
        await client.get_workflow_handle(second_id).describe()


async def test_a_large_order_waits_for_finance(running: Platform) -> None:
    body = order_body(amount=150_000)  # 1,500.00 EUR: the large-orders policy applies
    async with running.client("shop") as shop:
        placed = await shop.post("/v1/orders", json=body, headers={"Idempotency-Key": "big-1"})
        assert placed.status_code == 201

        async def waiting() -> bool:
            state = (await shop.get(f"/v1/orders/{body['order_id']}")).json()
            return bool(state["status"] == "awaiting_approval")

        await async_wait_until(waiting, what="order awaiting approval", timeout=60)
    request_id = f"order-{body['order_id']}"
    await _wait_asked(running, "carol", request_id)
    async with running.client("alice") as alice:
        state = (await alice.get(f"/v1/approvals/{request_id}")).json()
        assert state["policy"] == "large-orders"
        # The list shows the title the request carries (the saga starts it without a memo).
        title = state["request"]["title"]
        assert title == f"Order {body['order_id']} for 1500.00 EUR"

        async def listed() -> list[dict[str, Any]] | None:
            rows = (await alice.get("/v1/approvals", params={"status": "pending"})).json()
            return [r for r in rows if r["request_id"] == request_id] or None

        assert [r["title"] for r in await async_wait_until(listed, what="listed")] == [title]
        assert state["request"]["amount"] == {"amount_minor": 150_000, "currency": "EUR"}
        # Whoever is asked to approve an order may look at it; nobody else may.
        assert (await alice.get(f"/v1/orders/{body['order_id']}")).status_code == 200
        decided = await alice.post(f"/v1/approvals/{request_id}/approve")
        assert decided.status_code == 200
    async with running.client("dave") as dave:
        refused = await dave.get(f"/v1/orders/{body['order_id']}")
        assert refused.status_code == 403
        assert "nor is asked to approve it" in refused.json()["detail"]
        page = await dave.get(f"/ui/orders/{body['order_id']}")
        assert page.status_code == 403
        assert page.headers["content-type"].startswith("text/html")
        assert "nor is asked to approve it" in page.text
    async with running.client("shop") as shop:

        async def fulfilled() -> bool:
            state = (await shop.get(f"/v1/orders/{body['order_id']}")).json()
            return bool(state["status"] == "fulfilled")

        await async_wait_until(fulfilled, what="large order fulfilled", timeout=60)


async def test_the_openapi_document_describes_the_api(running: Platform) -> None:
    async with httpx.AsyncClient(base_url=running.gateway) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("/v1/approvals", "/v1/approvals/{request_id}/approve", "/v1/orders"):
        assert path in paths
    assert (REPO / "examples" / "gateway" / "tokens.yaml").exists()


async def _wait_asked(running: Platform, user: str, request_id: str) -> None:
    async def asked() -> bool:
        async with running.client(user) as api:
            response = await api.get(f"/v1/approvals/{request_id}")
        return response.status_code == 200 and bool(response.json()["deadline"])

    await async_wait_until(asked, what=f"request {request_id} ready", timeout=60)


def _async(check: Any) -> Any:
    async def wrapped() -> Any:
        return await asyncio.to_thread(check)

    return wrapped


def kubectl_muster(running: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``kubectl-muster`` plugin as kubectl runs it (its own process)."""
    return subprocess.run(
        [sys.executable, "-m", "muster_operator.kubectl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MUSTER_GATEWAY_URL": running.gateway},
    )


async def test_kubectl_muster_lists_and_decides_approvals(running: Platform) -> None:
    created = await create(running, "dave", purchase("Plugin desk"))
    request_id = created["request"]["request_id"]
    await _wait_asked(running, "alice", request_id)

    alice = ("approvals", "--token", TOKENS["alice"])
    listed = await asyncio.to_thread(
        kubectl_muster, running, *alice, "list", "--status", "pending", "-o", "json"
    )
    assert listed.returncode == 0, listed.stderr
    assert request_id in {row["request_id"] for row in json.loads(listed.stdout)}
    # Flags go before or after the verb, as in kubectl.
    table = await asyncio.to_thread(
        kubectl_muster, running, "approvals", "list", "--token", TOKENS["alice"], "-n", "x"
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["REQUEST", "STATUS", "POLICY"]
    assert any(line.startswith(request_id) for line in table.stdout.splitlines())

    # Bad input says what to do; nothing is decided by it.
    no_reason = await asyncio.to_thread(kubectl_muster, running, *alice, "reject", request_id)
    assert no_reason.returncode == 2
    assert "reject needs --reason" in no_reason.stderr
    no_token = await asyncio.to_thread(kubectl_muster, running, "approvals", "list")
    assert no_token.returncode == 2
    assert "pass --token TOKEN or set MUSTER_TOKEN" in no_token.stderr
    wrong = await asyncio.to_thread(kubectl_muster, running, "approvals", "--token", "nope", "list")
    assert wrong.returncode == 1
    assert "the gateway answered 401" in wrong.stderr
    # dave asked for it: he may not decide it.
    self_approval = await asyncio.to_thread(
        kubectl_muster, running, "approvals", "--token", TOKENS["dave"], "approve", request_id
    )
    assert self_approval.returncode == 1
    assert "the gateway answered 403" in self_approval.stderr

    approved = await asyncio.to_thread(
        kubectl_muster,
        running,
        "approvals",
        "approve",
        request_id,
        "--reason",
        "fine",
        "--token",
        TOKENS["alice"],
    )
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"approval {request_id}: pending (1 of 2 approvals)"
    bob = ("approvals", "--token", TOKENS["bob"])
    second = await asyncio.to_thread(kubectl_muster, running, *bob, "approve", request_id)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"approval {request_id}: approved"
    async with running.client("alice") as api:
        state = (await api.get(f"/v1/approvals/{request_id}")).json()
    assert state["status"] == "approved"
    assert [d["approver"] for d in state["decisions"]] == ["alice", "bob"]


async def test_a_declined_card_is_one_log_line_without_a_traceback(running: Platform) -> None:
    body = order_body()
    body["payment_token"] = "tok_declined"
    async with running.client("shop") as shop:
        placed = await shop.post("/v1/orders", json=body, headers={"Idempotency-Key": "dec-1"})
        assert placed.status_code == 201, placed.text

        async def compensated() -> bool:
            state = (await shop.get(f"/v1/orders/{body['order_id']}")).json()
            return bool(state["status"] == "compensated")

        await async_wait_until(compensated, what="declined order compensated", timeout=60)
    records = [
        json.loads(line)
        for line in (running.tmp / "fulfillment.log").read_text().splitlines()
        if line.startswith("{") and body["order_id"] in line
    ]
    declined = [r for r in records if "CardDeclined" in r["msg"]]
    assert len(declined) == 1, declined
    assert declined[0]["level"] == "info"
    assert "card was declined" in declined[0]["msg"]
    assert not [r for r in records if "exc" in r], "a traceback was logged for an expected failure"


async def test_admins_see_every_request_on_the_page(running: Platform) -> None:
    created = await create(running, "dave", purchase("Admin sees this"))
    request_id = created["request"]["request_id"]
    await _wait_asked(running, "dave", request_id)
    async with running.client("carol") as carol:  # carol is in muster-admins, not asked

        async def listed() -> str | None:
            page = await carol.get("/ui/")
            return page.text if request_id in page.text else None

        page = await async_wait_until(listed, what="the request on carol's page", timeout=30)
    assert "Everyone&#39;s open requests" in page or "Everyone's open requests" in page
    assert "Admin sees this" in page
    async with running.client("bob") as bob:
        assert "Everyone" not in (await bob.get("/ui/")).text  # not an admin


async def test_decided_by_me_lists_what_i_decided(running: Platform) -> None:
    created = await create(running, "dave", purchase("Decided history"))
    request_id = created["request"]["request_id"]
    await _wait_asked(running, "dave", request_id)
    async with running.client("alice") as alice:
        decided = await alice.post(
            f"/v1/approvals/{request_id}/reject", json={"reason": "not this quarter"}
        )
        assert decided.json()["status"] == "rejected"

        async def listed() -> str | None:
            page = await alice.get("/ui/decided")
            return page.text if request_id in page.text else None

        page = await async_wait_until(listed, what="the request under decided by me", timeout=30)
        assert "rejected: not this quarter" in page
        # Through the API too: a closed request alice decided is still hers to list.
        rows = (await alice.get("/v1/approvals", params={"status": "rejected"})).json()
        assert request_id in [row["request_id"] for row in rows]
    async with running.client("bob") as bob:
        assert request_id not in (await bob.get("/ui/decided")).text


async def test_a_requester_allowed_to_self_approve_gets_the_buttons(running: Platform) -> None:
    policies = running.tmp / "policies"
    (policies / "self-service.yaml").write_text(
        "apiVersion: muster.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: self-service}\n"
        "spec:\n  appliesTo: {kinds: [self-service]}\n  approvers: {users: [alice, bob]}\n"
        "  allowSelfApproval: true\n"
    )
    body = {"kind": "self-service", "title": "Own laptop", "policy": "self-service"}

    async def created() -> dict[str, Any] | None:
        async with running.client("alice") as api:
            response = await api.post("/v1/approvals", json=body)
        return dict(response.json()) if response.status_code == 201 else None

    state = await async_wait_until(created, what="the new policy picked up", timeout=30)
    request_id = state["request"]["request_id"]
    await _wait_asked(running, "alice", request_id)
    async with running.client("alice") as alice:
        page = (await alice.get(f"/ui/approvals/{request_id}")).text
    assert ">Approve</button>" in page


def muster_orders(running: Platform, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """``muster-orders`` as a person runs it, against the platform's Temporal."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "muster-orders"), *args],
        input=stdin, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **{k: v for k, v in running.approval_env.items() if "TEMPORAL" in k}},
    )  # fmt: skip


async def test_muster_orders_place_wait_prints_one_line(running: Platform) -> None:
    good, declined = order_body(), order_body()
    declined["payment_token"] = "tok_declined"
    placed = await asyncio.to_thread(
        muster_orders, running, "place", "-", "--wait", stdin=json.dumps(good)
    )
    assert placed.returncode == 0, placed.stderr
    line = placed.stdout.strip()
    assert line.startswith(f"order {good['order_id']}: fulfilled (25.00 EUR, tracking number ")
    assert "\n" not in line
    refused = await asyncio.to_thread(
        muster_orders, running, "place", "-", "--wait", stdin=json.dumps(declined)
    )
    assert refused.returncode == 1
    assert refused.stdout.strip() == (
        f"order {declined['order_id']}: compensated: card declined (payment refused (402): "
        "the card was declined)"
    )
    full = await asyncio.to_thread(
        muster_orders, running, "place", "-", "--wait", "--json",
        stdin=json.dumps(order_body()),
    )  # fmt: skip
    assert full.returncode == 0, full.stderr
    assert json.loads(full.stdout)["status"] == "fulfilled"
    bare = await asyncio.to_thread(muster_orders, running, "place", "-", "--json", stdin="{}")
    assert bare.returncode == 2
    assert "--json goes with --wait" in bare.stderr
