"""Every case of the approver page's bad-input table (``tests/bad_inputs_page.py``) against
the real gateway on the dev server: each gets a 4xx page (HTML) that says what is wrong,
signs nobody in or out, and writes nothing: the request the forms aim at ends the run with
no decision and no accepted update in its history."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.bad_inputs_page import PAGE, PageCase
from tests.helpers import async_wait_until
from tests.platform_support import Platform, platform

pytestmark = pytest.mark.timeout(240)

COOKIE = "muster_session"


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, temporal_env: dict[str, str]
) -> Iterator[Platform]:
    with platform(tmp_path_factory.mktemp("page-bad-inputs"), temporal_env) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target(running: Platform) -> AsyncIterator[str]:
    """A pending purchase of dave's that alice and bob may decide."""
    async with running.client("dave") as dave:
        created = await dave.post(
            "/v1/approvals", json={"kind": "purchase", "title": "Bad-input target"}
        )
        assert created.status_code == 201, created.text
        request_id = str(created.json()["request"]["request_id"])

        async def asked() -> bool:
            state = (await dave.get(f"/v1/approvals/{request_id}")).json()
            return bool(state["deadline"])

        await async_wait_until(asked, what="the target request asked", timeout=60)
    yield request_id


def session(key: bytes, user: str, expires_in: float) -> str:
    """A session cookie as the gateway signs one (``user|expiry|hmac``, base64)."""
    payload = f"{user}|{int(time.time() + expires_in)}"
    signature = hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()
    return base64.urlsafe_b64encode(f"{payload}|{signature}".encode()).decode()


async def csrf_of(http: httpx.AsyncClient, cookie: str) -> str:
    """The form token the gateway renders for a session (every page's sign-out form)."""
    page = await http.get("/ui/", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, page.text
    return found.group(1)


def cookie_for(running: Platform, who: str | None) -> str | None:
    key = running.session_key
    return {
        None: None,
        "expired": session(key, "alice", -60),
        "forged": session(b"another key, not the gateway's", "alice", 3600),
        "garbage": "bm90IGEgc2Vzc2lvbg",
    }.get(who, session(key, who or "", 3600))


@pytest.mark.parametrize("case", PAGE, ids=[case.name for case in PAGE])
async def test_the_page_refuses(case: PageCase, running: Platform, target: str) -> None:
    async with httpx.AsyncClient(base_url=running.gateway, timeout=30) as http:
        cookie = cookie_for(running, case.session)
        tokens = {
            "valid": lambda: csrf_of(http, cookie or ""),
            "earlier": lambda: csrf_of(http, session(running.session_key, "alice", 1800)),
            "bob": lambda: csrf_of(http, session(running.session_key, "bob", 3600)),
        }
        make = tokens.get(case.csrf) if cookie is not None or case.csrf != "valid" else None
        token = (
            await make() if make else {"forged": "0" * 64, "valid": ""}.get(case.csrf, case.csrf)
        )
        form = None
        if case.form is not None:
            form = {**case.form, **({"csrf": token} if token else {})}
        headers = dict(case.headers)
        if cookie is not None:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        response = await http.request(
            case.method, case.path.format(request=target), data=form, headers=headers
        )
    assert response.status_code == case.status, response.text[:2000]
    assert response.headers["content-type"].startswith("text/html")
    text = html.unescape(response.text)
    assert case.says in text, text[:3000]
    assert "set-cookie" not in response.headers  # nobody signed in or out


async def test_nothing_was_written(running: Platform, target: str, client: Client) -> None:
    async with running.client("alice") as alice:
        state = (await alice.get(f"/v1/approvals/{target}")).json()
    assert state["status"] == "pending"
    assert state["decisions"] == []
    history = await client.get_workflow_handle(f"approval-{target}").fetch_history()
    accepted = [
        e for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]  # fmt: skip
    assert accepted == []
