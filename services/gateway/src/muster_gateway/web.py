"""The approver page: server-rendered HTML, no JavaScript, usable with a keyboard and a
screen reader.

Sign in with a token (or through the proxy); see what waits for you, what you decided and,
as an admin, everyone's open requests; open a request with what it takes to decide it (for
an order: its lines, customer and ship-to address, read from the order itself); approve it,
or reject it with a reason after a confirmation step. Every form carries a CSRF token bound
to the session; a refused form says why and changes nothing.
"""

# No ``from __future__ import annotations``: FastAPI must see the ``Who`` dependency type,
# which is local to ``router``.
import asyncio
import hashlib
import hmac
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from muster_api import fulfillment
from muster_api.approval import ApprovalState, ApprovalStatus
from muster_api.fulfillment import FulfillmentInput, Order, OrderStatus, approval_request_id
from muster_gateway import view
from muster_gateway.auth import Authenticator, Caller
from muster_gateway.service import ApprovalSummary, Gateway, GatewayError

COOKIE = "muster_session"
REASON_LIMIT = 2000
"""Characters of a decision's reason (the workflow's limit)."""
FIELD_LIMITS = {"user": 256, "token": 1024, "csrf": 128, "verdict": 16, "confirm": 16}
"""Characters of the page's other form fields; anything longer is refused with a 422."""
DECIDED_SHOWN = 25
"""Requests the "decided by you" page shows (newest first)."""

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _left(value: datetime | None) -> str:
    if value is None:
        return ""
    seconds = int((value - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return "overdue"
    days, rest = divmod(seconds, 86_400)
    hours = rest // 3600
    return f"{days} d {hours} h left" if days else f"{hours} h {rest % 3600 // 60} min left"


templates.env.filters["when"] = _when
templates.env.filters["left"] = _left
templates.env.filters["money"] = view.money
templates.env.filters["status"] = view.status_words
templates.env.filters["plain"] = view.plain
templates.env.filters["order_status"] = lambda status: view.status_words(status, order=True)


def _chrome(request: Request) -> dict[str, Any]:
    """What every page's header needs: who is signed in, their form token, admin or not."""
    return {
        "who": getattr(request.state, "who", None),
        "csrf": getattr(request.state, "csrf", ""),
        "admin": getattr(request.state, "admin", False),
    }


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """A refusal on the approver page, as a page with the signed-in header (the API answers
    problem+json instead)."""
    return templates.TemplateResponse(
        request,
        "error.html",
        {**_chrome(request), "title": title, "detail": detail},
        status_code=status,
    )


def _too_long(what: str, value: str, limit: int) -> GatewayError:
    return GatewayError(
        422, "validation", "Too long",
        f"the {what} is {len(value):,} characters long; at most {limit:,} are allowed "
        "(nothing was changed)",
    )  # fmt: skip


def _check_lengths(**fields: str) -> None:
    for name, value in fields.items():
        if len(value) > FIELD_LIMITS[name]:
            raise _too_long(name, value, FIELD_LIMITS[name])


async def placed_order(client: Client, order_id: str) -> Order | None:
    """The order as it was placed: the input its workflow started with (immutable, so the
    page shows exactly what the approver is asked about)."""
    handle = client.get_workflow_handle(fulfillment.workflow_id(order_id))
    async for event in handle.fetch_history_events(page_size=1):
        started = event.workflow_execution_started_event_attributes
        decoded = await client.data_converter.decode(
            list(started.input.payloads), [FulfillmentInput]
        )
        placed = decoded[0]
        return placed.order if isinstance(placed, FulfillmentInput) else None
    return None


def router(gateway: Gateway, auth: Authenticator) -> APIRouter:
    """Routes under ``/ui``."""

    def csrf_token(request: Request, who: Caller) -> str:
        # Bound to the session cookie: a token from an earlier session, another user or
        # another browser does not pass. Proxy sign-ins have no cookie: bound to the user.
        cookie = request.cookies.get(COOKIE, "")
        bound = f"session|{cookie}" if who.via == "session" else f"{who.via}|{who.user}"
        return hmac.new(auth.session_key, f"csrf|{bound}".encode(), hashlib.sha256).hexdigest()

    async def remember(request: Request) -> None:
        """Who is signed in, if anyone (every /ui route; never refuses)."""
        who = auth.from_session(request.cookies.get(COOKIE))
        if who is None:
            peer = request.client.host if request.client else None
            who = auth.from_headers(dict(request.headers), peer)
        if who is not None:
            request.state.who = who
            request.state.csrf = csrf_token(request, who)
            request.state.admin = gateway.is_admin(who)

    ui = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(remember)])

    async def web_caller(request: Request) -> Caller:
        who: Caller | None = getattr(request.state, "who", None)
        if who is not None:
            return who
        if "authorization" in request.headers:
            raise GatewayError(
                401, "unauthenticated", "Not signed in",
                "the access token in the Authorization header is not valid; "
                "sign in at /ui/login with your user id and token",
            )  # fmt: skip
        if request.method != "GET":
            why = (
                "your session has expired or is not valid"
                if request.cookies.get(COOKIE)
                else "you are not signed in"
            )
            raise GatewayError(
                401, "unauthenticated", "Signed out",
                f"{why}; sign in again, then repeat what you did (nothing was changed)",
            )  # fmt: skip
        raise StarletteHTTPException(401, "sign in")

    Who = Annotated[Caller, Depends(web_caller)]  # noqa: N806 - a FastAPI dependency type

    def check_csrf(request: Request, token: str) -> None:
        expected = getattr(request.state, "csrf", "")
        if not (token and expected and hmac.compare_digest(token, expected)):
            raise GatewayError(
                403, "csrf", "Form expired",
                "this form does not belong to your current session (it is from an earlier "
                "sign-in, or was not made by this page); reload the page and try again "
                "(nothing was changed)",
            )  # fmt: skip

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request, template, {**_chrome(request), **context}, status_code=status
        )

    def names(*users: str) -> dict[str, str]:
        return {user: gateway.display_name(user) for user in users}

    @ui.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, error: str | None = None) -> HTMLResponse:
        return page(request, "login.html", error=error, proxy_only=auth.settings.mode == "proxy")

    @ui.post("/login")
    async def login(
        request: Request,
        user: Annotated[str, Form()] = "",
        token: Annotated[str, Form()] = "",
    ) -> Response:
        _check_lengths(user=user, token=token)
        found = auth.from_token(token) if token else None
        if found is None or found.user != user.strip():
            return page(
                request, "login.html", 401, error="That user and token do not match.",
                proxy_only=False,
            )  # fmt: skip
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(
            COOKIE,
            auth.session_cookie(found.user),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            max_age=int(auth.settings.session_hours * 3600),
        )
        return response

    @ui.post("/logout")
    async def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        _check_lengths(csrf=csrf)
        if getattr(request.state, "who", None) is not None:
            check_csrf(request, csrf)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @ui.get("/", response_class=HTMLResponse)
    async def inbox(request: Request, who: Who) -> HTMLResponse:
        waiting = await gateway.list_approvals(who, status="pending", approver=who.user)
        mine = [s for s in await gateway.list_approvals(who) if s.requester == who.user]
        details, unread = await _states(who, waiting)
        everyone: list[ApprovalSummary] = []
        if gateway.is_admin(who):
            everyone = await gateway.list_approvals(who, status="pending")
        return page(
            request, "inbox.html", name=gateway.display_name(who.user), waiting=details,
            unread=unread, read_timeout=gateway.state_read_timeout, mine=mine,
            everyone=everyone,
        )  # fmt: skip

    async def _states(
        who: Caller, summaries: list[ApprovalSummary]
    ) -> tuple[list[ApprovalState], list[ApprovalSummary]]:
        """Each waiting request's state, and the requests whose state could not be read in
        time. Every read is bounded by the gateway's state-read timeout: one request whose
        worker is down (a query waits for a worker up to Temporal's own limit) must not hold
        up the page, and it is still listed, from its summary."""

        async def one(summary: ApprovalSummary) -> ApprovalState | ApprovalSummary | None:
            try:
                return await gateway.get_approval(
                    who, summary.request_id, rpc_timeout=gateway.read_timeout
                )
            except GatewayError as exc:
                if exc.status == HTTPStatus.SERVICE_UNAVAILABLE:
                    return summary  # not readable now: listed without its details
                return None  # decided meanwhile, or no longer ours

        found = await asyncio.gather(*(one(s) for s in summaries))
        states = [f for f in found if isinstance(f, ApprovalState)]
        return states, [f for f in found if isinstance(f, ApprovalSummary)]

    @ui.get("/decided", response_class=HTMLResponse)
    async def decided(request: Request, who: Who) -> HTMLResponse:
        summaries = await gateway.list_approvals(who, decided_by=who.user, limit=DECIDED_SHOWN)
        rows = []
        states, unread = await _states(who, summaries)
        for state in states:
            mine = next((d for d in state.decisions if d.approver == who.user), None)
            if mine is not None:
                rows.append((state, mine))
        rows.sort(key=lambda row: row[1].at, reverse=True)
        return page(request, "decided.html", rows=rows, unread=unread,
                    read_timeout=gateway.state_read_timeout)  # fmt: skip

    @ui.get("/approvals/{request_id}", response_class=HTMLResponse)
    async def detail(
        request: Request, request_id: str, who: Who, done: str | None = None
    ) -> HTMLResponse:
        state = await gateway.get_approval(who, request_id)
        done = done if done in ("approved", "rejected") else None
        return await _detail(request, state, who, done=done)

    async def _detail(
        request: Request,
        state: ApprovalState,
        who: Caller,
        *,
        done: str | None = None,
        error: str | None = None,
        status: int = 200,
        reason: str = "",
    ) -> HTMLResponse:
        decided_by = {d.approver for d in state.decisions}
        may_decide = (
            state.status == ApprovalStatus.PENDING
            and who.user in state.approvers  # a requester only when the policy allows it
            and who.user not in decided_by
        )
        order_id = state.request.subject if state.request.kind == "order" else None
        order: Order | None = None
        order_note = ""
        if order_id:
            try:
                await gateway.get_order(who, order_id)  # may this caller see it?
                order = await placed_order(gateway.client, order_id)
            except GatewayError as refused:
                order_note = refused.detail
        people = names(
            *state.approvers, *decided_by, state.request.requester, *(a.actor for a in state.audit)
        )
        return page(
            request, "approval.html", status, state=state, may_decide=may_decide, done=done,
            error=error, order_id=order_id, order=order, order_note=order_note,
            lines=view.order_lines(order) if order else [],
            ship_to=view.address_lines(order.shipping_address) if order else [],
            total=view.money(order.total) if order else "",
            decisions=[view.decision_line(d, people) for d in state.decisions],
            audit=[(a.at, view.audit_line(a, people)) for a in state.audit],
            names=people, reason=reason, reason_limit=REASON_LIMIT,
        )  # fmt: skip

    @ui.post("/approvals/{request_id}/decide")
    async def decide_form(
        request: Request,
        request_id: str,
        who: Who,
        verdict: Annotated[str, Form()] = "",
        csrf: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
    ) -> Response:
        _check_lengths(verdict=verdict, csrf=csrf, confirm=confirm)
        check_csrf(request, csrf)
        if verdict not in ("approve", "reject"):
            raise GatewayError(
                422, "validation", "No decision",
                "choose Approve or Reject (nothing was changed)",
            )  # fmt: skip
        if len(reason) > REASON_LIMIT:
            raise _too_long("reason", reason, REASON_LIMIT)
        reason = reason.strip()
        state = await gateway.get_approval(who, request_id)
        if verdict == "reject" and not reason:
            return await _detail(
                request, state, who, status=422,
                error="A rejection needs a reason: say why, so the requester knows. "
                "Nothing was changed.",
            )  # fmt: skip
        if verdict == "reject" and confirm != "yes":
            return page(request, "confirm.html", state=state, reason=reason)
        try:
            await gateway.decide(who, request_id, verdict, reason or None, via="web")
        except GatewayError as refused:
            state = await gateway.get_approval(who, request_id)
            return await _detail(
                request, state, who, error=refused.detail, status=refused.status, reason=reason
            )
        done = "approved" if verdict == "approve" else "rejected"
        return RedirectResponse(f"/ui/approvals/{quote(request_id)}?done={done}", status_code=303)

    @ui.get("/orders/{order_id}", response_class=HTMLResponse)
    async def order_page(request: Request, order_id: str, who: Who) -> HTMLResponse:
        state = await gateway.get_order(who, order_id)
        order = await placed_order(gateway.client, order_id)
        ended = state.status in (
            OrderStatus.FULFILLED, OrderStatus.COMPENSATED, OrderStatus.RESOLVED
        )  # fmt: skip
        asked = any(step.step == "approval" for step in state.steps)
        return page(
            request, "order.html", state=state, ended=ended, order=order,
            lines=view.order_lines(order) if order else [],
            ship_to=view.address_lines(order.shipping_address) if order else [],
            steps=[(s.at, view.step_line(s)) for s in state.steps],
            approval_id=approval_request_id(order_id) if asked else None,
        )  # fmt: skip

    @ui.get("/{path:path}", response_class=HTMLResponse)
    async def unknown(path: str) -> HTMLResponse:
        raise GatewayError(404, "not-found", "No such page", f"there is no page /ui/{path[:100]}")

    return ui
