"""The API references (``/docs``) of the gateway and the backends work offline: the page
and every asset it loads come from the service itself (the installed fastapi-offline
package), and headless Chromium, with every request to another host blocked, renders
the operations."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Request, Route, async_playwright

from tests.platform_support import Platform, platform

pytestmark = pytest.mark.timeout(300)


def chromium_path() -> str:
    """The system Chromium (``make browser`` installs it); MUSTER_CHROMIUM overrides."""
    found = os.environ.get("MUSTER_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("no Chromium found: run 'make browser' or set MUSTER_CHROMIUM")
    return found


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str]
) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("docs"), temporal_env) as started:
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


def _bases(running: Platform) -> dict[str, str]:
    return {"gateway": running.gateway, "backends": running.backends.api}


@pytest.mark.parametrize("service", ["gateway", "backends"])
def test_the_page_loads_only_its_own_assets(running: Platform, service: str) -> None:
    base = _bases(running)[service]
    page = httpx.get(f"{base}/docs", timeout=10)
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", page.text)
    assert sources, page.text
    for source in sources:
        assert source.startswith("/"), f"{source} is not served by {service}"
        asset = httpx.get(f"{base}{source}", timeout=10)
        assert asset.status_code == 200, source
        assert len(asset.content) > 1000, source
    assert "cdn" not in page.text.lower()


@pytest.mark.parametrize("service", ["gateway", "backends"])
async def test_chromium_renders_the_reference_offline(
    running: Platform, browser: Browser, service: str
) -> None:
    base = _bases(running)[service]
    context = await browser.new_context()
    outside: list[str] = []

    async def only_here(route: Route, request: Request) -> None:
        if request.url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            await route.continue_()
        else:
            outside.append(request.url)
            await route.abort()

    await context.route("**/*", only_here)
    page = await context.new_page()
    try:
        await page.goto(f"{base}/docs")
        operations = page.locator(".opblock-summary-path")
        await operations.first.wait_for(timeout=30_000)
        paths = await operations.all_inner_texts()
    finally:
        await context.close()
    assert outside == [], "the page asked for something from another host"
    expected = "/v1/orders" if service == "gateway" else "/payment/charges"
    assert any(expected in path.replace("\u200b", "") for path in paths), paths
