"""A large order placed at the gateway's NodePort waits for finance, its approver is e-mailed
through the namespace's mail relay, alice approves it on the approver page in Chromium, and
it is fulfilled with exactly one charge in the payment backend's ledger."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.cluster.release import MAILBOX, Release
from tests.cluster.test_release_e2e import applied, team  # noqa: F401
from tests.e2e.test_approver_page import browser, large_order, sign_in  # noqa: F401
from tests.helpers import async_wait_until, wait_until
from tests.platform_support import TOKENS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


async def test_a_large_order_approved_in_chromium_is_fulfilled(
    release: Release,
    applied: dict[str, str],  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    base = release.gateway_url
    order = large_order()
    order_id = order["order_id"]
    request_id = f"order-{order_id}"
    shop = {"Authorization": f"Bearer {TOKENS['shop']}"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        placed = await api.post("/v1/orders", json=order,
                                headers={**shop, "Idempotency-Key": order_id})  # fmt: skip
        assert placed.status_code == 201, placed.text
        placed_at = time.monotonic()

        async def waiting_for_alice() -> bool:
            listed = await api.get(
                "/v1/approvals",
                params={"status": "pending", "approver": "alice"},
                headers={"Authorization": f"Bearer {TOKENS['alice']}"},
            )
            return any(item["request_id"] == request_id for item in listed.json())

        try:
            await async_wait_until(waiting_for_alice, what="the order waiting for alice",
                                   timeout=120)  # fmt: skip
        except TimeoutError:
            state = await api.get(f"/v1/orders/{order_id}", headers=shop)
            pytest.fail(f"order {order_id} never waited for alice: {state.text}\n"
                        f"{release.diagnose()}")  # fmt: skip

    # The approvers were e-mailed through the namespace's relay.
    def mailed() -> bool:
        logs = release.kubectl("logs", "-n", release.namespace, MAILBOX).stdout
        return request_id in logs and "alice@example.com" in logs

    wait_until(mailed, what="the approval e-mail to reach the relay", timeout=120, interval=1)

    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    try:
        await sign_in(page, base, "alice")
        row = page.get_by_role("row").filter(has_text=order_id)
        await expect(row).to_contain_text("1,237.50 EUR")
        await row.get_by_role("link").click()
        await expect(page.locator("#status")).to_have_text("pending")
        await page.get_by_label("Comment (optional)").fill("approved on the cluster")
        await page.get_by_role("button", name="Approve").click()
        await expect(page.get_by_role("status")).to_contain_text("You approved this request")
        await page.get_by_role("link", name=f"Order {order_id}").first.click()

        async def fulfilled() -> bool:
            await page.reload()
            return await page.locator("#status").inner_text() == "fulfilled"

        await async_wait_until(fulfilled, what="the order fulfilled", timeout=180, interval=2)
        took = time.monotonic() - placed_at
        steps = await page.get_by_role("list", name="Steps").inner_text()
        assert "Approval: done (approved by alice)" in steps, steps
    finally:
        await context.close()

    with release.forward("backends", 8100) as backends:
        async with httpx.AsyncClient(base_url=f"http://{backends}", timeout=30) as api:
            ledger = (await api.get("/payment/ledger", params={"order_id": order_id})).json()
    assert [c["amount_minor"] for c in ledger["charges"]] == [123_750], ledger
    assert ledger["refunds"] == [], ledger
    print(f"order {order_id}: placed, e-mailed, approved in Chromium and fulfilled in {took:.1f}s")
