"""The approver page in a real browser: headless Debian Chromium driven by Playwright.

An approver signs in, finds the large order waiting for them with its context and
deadline, approves it with a reason, and follows the link to see the order proceed to
fulfilled. A second approver's attempt to reject without a reason is refused on the page.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.helpers import async_wait_until
from tests.platform_support import TOKENS, Platform, platform

pytestmark = pytest.mark.timeout(300)


def chromium_path() -> str:
    """The system Chromium (``make browser`` installs it); MUSTER_CHROMIUM overrides."""
    found = os.environ.get("MUSTER_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "no Chromium found: run 'make browser' (installs Debian's chromium) or set "
            "MUSTER_CHROMIUM to a Chromium/Chrome executable"
        )
    return found


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str]
) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("browser-platform"), temporal_env) as started:
        yield started


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield launched
        finally:
            await launched.close()


def large_order() -> dict[str, Any]:
    return {
        "order_id": f"web-{uuid.uuid4().hex[:8]}",
        "customer_id": "cust-web",
        "customer_email": "web@example.com",
        "items": [{"sku": "GADGET-2", "quantity": 3,
                   "unit_price": {"amount_minor": 60_000, "currency": "EUR"}}],
        "shipping_address": {"name": "Grace", "line1": "2 Side St", "city": "Hamburg",
                             "postal_code": "20095", "country": "DE"},
        "payment_token": "tok_visa",
    }  # fmt: skip


async def sign_in(page: Page, base: str, user: str) -> None:
    await page.goto(f"{base}/ui/")
    await expect(page).to_have_url(f"{base}/ui/login")  # not signed in: sent to the form
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("Access token").fill(TOKENS[user])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/ui/")


async def test_an_approver_approves_a_large_order_in_the_browser(
    running: Platform, browser: Browser
) -> None:
    order = large_order()
    async with running.client("shop") as shop:
        placed = await shop.post(
            "/v1/orders", json=order, headers={"Idempotency-Key": order["order_id"]}
        )
        assert placed.status_code == 201, placed.text
    request_id = f"order-{order['order_id']}"

    async def listed_for_alice() -> bool:
        async with running.client("alice") as alice:
            response = await alice.get(
                "/v1/approvals", params={"status": "pending", "approver": "alice"}
            )
        return any(item["request_id"] == request_id for item in response.json())

    await async_wait_until(listed_for_alice, what="order waiting for alice", timeout=90)

    context = await browser.new_context()
    page = await context.new_page()
    try:
        # A wrong token is refused with a message, and nothing is signed in.
        await page.goto(f"{running.gateway}/ui/login")
        await page.get_by_label("User id").fill("alice")
        await page.get_by_label("Access token").fill("not-the-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("do not match")

        await sign_in(page, running.gateway, "alice")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Alice")
        row = page.get_by_role("row").filter(has_text=order["order_id"])
        await expect(row).to_contain_text("1800.00 EUR")
        await expect(row).to_contain_text("0 of 1")
        await expect(row).to_contain_text("left")  # the deadline, in words

        await row.get_by_role("link").click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(order["order_id"])
        await expect(page.locator("#status")).to_have_text("pending")
        await expect(page.get_by_role("row", name="Policy")).to_contain_text("large-orders")

        # Rejecting without a reason is refused on the page; the request stays pending.
        await page.get_by_role("button", name="Reject").click()
        await expect(page.get_by_role("alert")).to_contain_text("reason")
        await expect(page.locator("#status")).to_have_text("pending")

        await page.get_by_label("Reason (required to reject)").fill("customer is known to us")
        await page.get_by_role("button", name="Approve").click()
        await expect(page.get_by_role("status")).to_contain_text("You approved this request")
        await expect(page.locator("#status")).to_have_text("approved")
        await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        decisions = page.get_by_role("list", name="Decisions").get_by_role("listitem")
        await expect(decisions).to_have_count(1)
        await expect(decisions).to_contain_text("alice approved")
        await expect(decisions).to_contain_text("customer is known to us")
        audit = page.get_by_role("list", name="Audit trail")
        await expect(audit).to_contain_text("alice")

        # Follow the order: it proceeds to fulfilled (the page refreshes itself).
        await page.get_by_role("link", name=order["order_id"]).click()
        await expect(page.locator("#status")).to_have_text("fulfilled", timeout=90_000)
        await expect(page.get_by_text("Tracking number")).to_be_visible()

        # Nothing waits for alice any more.
        await page.goto(f"{running.gateway}/ui/")
        await expect(page.get_by_role("row").filter(has_text=order["order_id"])).to_have_count(0)
    finally:
        await context.close()

    # The decision is attributed to alice, through the web page.
    async with running.client("alice") as alice:
        state = (await alice.get(f"/v1/approvals/{request_id}")).json()
    assert [(d["approver"], d["verdict"]) for d in state["decisions"]] == [("alice", "approve")]
    assert state["decisions"][0]["reason"] == "customer is known to us"
