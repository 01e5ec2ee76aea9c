"""The approver page in a real browser: headless Debian Chromium driven by Playwright.

An approver signs in, finds the large order waiting for them, opens it and sees what it
takes to decide: the order's lines (SKU, name, quantity, unit price, line total), the
customer, the ship-to address and the total with thousands grouped. Rejecting without a
reason is refused (by the browser, and by the server when the browser's check is
bypassed); a reason leads to a confirmation step, which she leaves; she approves, sees the
outcome in words, follows the link to the order until it is fulfilled and back, finds the
request under "Decided by you", meets an error page that keeps her signed in, and signs
out. Every page of the journey is screenshotted (under the test's tmp dir) and checked with
axe-core (injected from npm's package): no serious or critical violation is allowed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.helpers import REPO, async_wait_until
from tests.platform_support import TOKENS, Platform, platform

pytestmark = pytest.mark.timeout(300)

AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


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


class Journey:
    """Screenshots and accessibility checks of each page the test visits."""

    def __init__(self, page: Page, folder: Path) -> None:
        if not AXE.is_file():
            pytest.fail(f"{AXE} missing: run 'make axe' (installs npm's axe-core)")
        self.page = page
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.checked: dict[str, list[dict[str, Any]]] = {}

    async def check(self, name: str) -> None:
        """Screenshot the page as ``NN-name.png`` and run axe-core on it."""
        number = len(self.checked) + 1
        await self.page.screenshot(path=self.folder / f"{number:02d}-{name}.png", full_page=True)
        await self.page.add_script_tag(content=AXE.read_text())
        result = await self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        violations = [
            {"id": v["id"], "impact": v["impact"], "nodes": len(v["nodes"]), "help": v["help"]}
            for v in result["violations"]
        ]
        self.checked[name] = violations
        blocking = [v for v in violations if v["impact"] in BLOCKING]
        assert not blocking, f"axe on {name} ({self.page.url}): {json.dumps(blocking, indent=1)}"

    def report(self) -> None:
        (self.folder / "axe.json").write_text(json.dumps(self.checked, indent=2))
        print(f"screenshots and axe results of {len(self.checked)} pages in {self.folder}")


def large_order() -> dict[str, Any]:
    """25 gadgets at 49.50 EUR: 1,237.50 EUR, over the large-orders threshold."""
    return {
        "order_id": f"web-{uuid.uuid4().hex[:8]}",
        "customer_id": "cust-42",
        "customer_email": "ada@example.com",
        "items": [{"sku": "GADGET-2", "name": "Gadget, model 2", "quantity": 25,
                   "unit_price": {"amount_minor": 4_950, "currency": "EUR"}}],
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical Way",
                             "city": "London", "postal_code": "N1 9GU", "country": "GB"},
        "payment_token": "tok_visa",
    }  # fmt: skip


async def sign_in(page: Page, base: str, user: str) -> None:
    await page.goto(f"{base}/ui/")
    await expect(page).to_have_url(f"{base}/ui/login")  # not signed in: sent to the form
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("Access token").fill(TOKENS[user])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/ui/")


async def test_an_approver_decides_a_large_order_in_the_browser(
    running: Platform, browser: Browser, tmp_path: Path
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
    async with running.client("alice") as alice:
        title = (await alice.get(f"/v1/approvals/{request_id}")).json()["request"]["title"]

    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    page = await context.new_page()
    journey = Journey(page, tmp_path / "screenshots")
    base = running.gateway
    try:
        # A wrong token is refused with a message, and nobody is signed in.
        await page.goto(f"{base}/ui/login")
        await page.get_by_label("User id").fill("alice")
        await page.get_by_label("Access token").fill("not-the-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("do not match")
        await journey.check("login-refused")

        await sign_in(page, base, "alice")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Alice")
        row = page.get_by_role("row").filter(has_text=order["order_id"])
        await expect(row).to_contain_text(title)
        await expect(row).to_contain_text("1,237.50 EUR")
        await expect(row).to_contain_text("0 of 1")
        await expect(row).to_contain_text("left")  # the deadline, in words
        await journey.check("inbox")

        # The request: everything it takes to decide, and one title everywhere.
        await row.get_by_role("link").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(title)
        await expect(page.locator("#status")).to_have_text("pending")
        items = page.get_by_role("table", name=f"Order {order['order_id']}")
        line = items.get_by_role("row").filter(has_text="GADGET-2")
        for cell in ("GADGET-2", "Gadget, model 2", "25", "49.50 EUR", "1,237.50 EUR"):
            await expect(line).to_contain_text(cell)
        await expect(page.locator("#total")).to_have_text("1,237.50 EUR")
        customer = page.get_by_role("table", name="Customer")
        await expect(customer).to_contain_text("cust-42")
        await expect(customer).to_contain_text("12 Analytical Way")
        await expect(customer).to_contain_text("N1 9GU London")
        await expect(page.get_by_role("row", name="Policy")).to_contain_text("large-orders")
        approve = page.get_by_role("button", name="Approve")
        reject = page.get_by_role("button", name="Reject…")
        colours = [
            await button.evaluate("b => getComputedStyle(b).backgroundColor")
            for button in (approve, reject)
        ]
        assert colours[0] != colours[1], "Approve and Reject look the same"
        await journey.check("request")

        # Rejecting without a reason: the browser will not send it ...
        await reject.click()
        await expect(page).to_have_url(f"{base}/ui/approvals/{request_id}")
        reason = page.get_by_label("Reason (required to reject)")
        assert await reason.evaluate("r => !r.validity.valid")
        # ... and neither does the server, for a browser that skips the check.
        await reason.evaluate("r => { r.form.noValidate = true; }")
        await reject.click()
        await expect(page.get_by_role("alert")).to_contain_text("A rejection needs a reason")
        await expect(page.locator("#status")).to_have_text("pending")
        await journey.check("reject-without-reason")

        # With a reason, Reject asks for confirmation first; going back changes nothing.
        await page.get_by_label("Reason (required to reject)").fill("too many gadgets")
        await page.get_by_role("button", name="Reject…").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Reject this request?")
        await expect(page.get_by_text("too many gadgets")).to_be_visible()
        await journey.check("confirm-reject")
        await page.get_by_role("link", name="No, go back").click()
        await expect(page.locator("#status")).to_have_text("pending")

        await page.get_by_label("Comment (optional)").fill("customer is known to us")
        await page.get_by_role("button", name="Approve").click()
        await expect(page.get_by_role("status")).to_contain_text("You approved this request")
        await expect(page.locator("#status")).to_have_text("approved")
        await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        decisions = page.get_by_role("list", name="Decisions").get_by_role("listitem")
        await expect(decisions).to_have_count(1)
        await expect(decisions).to_contain_text("Alice Approver approved: customer is known")
        audit = page.get_by_role("list", name="Audit trail")
        await expect(audit).to_contain_text("Alice Approver approved")
        await expect(audit).to_contain_text("Policy large-orders applies")
        words = await audit.inner_text()
        assert not re.search(r"sha256|\[|'|_", words), words
        await journey.check("approved")

        # The order goes on to fulfilled (reload until it is) and links back.
        await page.get_by_role("link", name=f"Order {order['order_id']}").first.click()

        async def fulfilled() -> bool:
            await page.reload()
            return await page.locator("#status").inner_text() == "fulfilled"

        await async_wait_until(fulfilled, what="the order fulfilled", timeout=90)
        await expect(page.get_by_role("row", name="Tracking number")).to_be_visible()
        steps = await page.get_by_role("list", name="Steps").inner_text()
        assert "Approval: done (approved by alice)" in steps, steps
        assert not re.search(r"\[|'|_|\bundo\b|failure-notice", steps), steps
        await journey.check("order")
        await page.get_by_role("link", name="The approval request for this order").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(title)

        await page.get_by_role("link", name="Decided by you").click()
        decided = page.get_by_role("row").filter(has_text=title)
        await expect(decided).to_contain_text("approved: customer is known to us")
        await journey.check("decided")

        # Nothing waits for alice any more.
        await page.get_by_role("link", name="Waiting for you").click()
        await expect(page.get_by_role("row").filter(has_text=order["order_id"])).to_have_count(0)

        # An error page keeps her signed in.
        await page.goto(f"{base}/ui/approvals/no-such-request")
        await expect(page.get_by_role("alert")).to_contain_text("no approval request")
        await expect(page.get_by_role("banner")).to_contain_text("Signed in as alice")
        await journey.check("not-found")

        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(f"{base}/ui/login")
        await page.goto(f"{base}/ui/")
        await expect(page).to_have_url(f"{base}/ui/login")
    finally:
        journey.report()
        await context.close()

    # The decision is attributed to alice, through the web page.
    async with running.client("alice") as alice:
        state = (await alice.get(f"/v1/approvals/{request_id}")).json()
    assert [(d["approver"], d["verdict"], d["via"]) for d in state["decisions"]] == [
        ("alice", "approve", "web")
    ]
    assert state["decisions"][0]["reason"] == "customer is known to us"
