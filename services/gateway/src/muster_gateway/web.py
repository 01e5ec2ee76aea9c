"""The approver page: server-rendered HTML, no JavaScript, usable with a keyboard and a
screen reader. Sign in with a token (or through the proxy), see what waits for you, and
approve or reject with a reason."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from muster_api.approval import ApprovalState, ApprovalStatus
from muster_api.fulfillment import OrderStatus
from muster_gateway.auth import Authenticator, Caller
from muster_gateway.service import Gateway, GatewayError

COOKIE = "muster_session"
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


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """A refusal on the approver page, as a page (the API answers problem+json instead)."""
    return templates.TemplateResponse(
        request, "error.html", {"title": title, "detail": detail}, status_code=status
    )


def router(gateway: Gateway, auth: Authenticator) -> APIRouter:
    """Routes under ``/ui``."""
    ui = APIRouter(prefix="/ui", include_in_schema=False)

    async def web_caller(request: Request) -> Caller:
        session = auth.from_session(request.cookies.get(COOKIE))
        if session is not None:
            return session
        peer = request.client.host if request.client else None
        found = auth.from_headers(dict(request.headers), peer)
        if found is None:
            raise StarletteHTTPException(401, "sign in")
        return found

    Who = Annotated[Caller, Depends(web_caller)]  # noqa: N806 - a FastAPI dependency type

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, context, status_code=status)

    @ui.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, error: str | None = None) -> HTMLResponse:
        return page(request, "login.html", error=error, proxy_only=auth.settings.mode == "proxy")

    @ui.post("/login")
    async def login(
        request: Request, user: Annotated[str, Form()], token: Annotated[str, Form()]
    ) -> Response:
        found = auth.from_token(token)
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
    async def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @ui.get("/", response_class=HTMLResponse)
    async def inbox(request: Request, who: Who) -> HTMLResponse:
        waiting = await gateway.list_approvals(who, status="pending", approver=who.user)
        mine = [s for s in await gateway.list_approvals(who) if s.requester == who.user]
        details: list[ApprovalState] = []
        for summary in waiting:
            try:
                details.append(await gateway.get_approval(who, summary.request_id))
            except GatewayError:
                continue  # decided meanwhile, or no longer ours
        return page(
            request, "inbox.html", who=who, name=gateway.display_name(who.user),
            waiting=details, mine=mine,
        )  # fmt: skip

    @ui.get("/approvals/{request_id}", response_class=HTMLResponse)
    async def detail(
        request: Request, request_id: str, who: Who, done: str | None = None
    ) -> HTMLResponse:
        state = await gateway.get_approval(who, request_id)
        return _detail(request, state, who, done=done)

    def _detail(
        request: Request,
        state: ApprovalState,
        who: Caller,
        *,
        done: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        decided = {d.approver for d in state.decisions}
        may_decide = (
            state.status == ApprovalStatus.PENDING
            and who.user in state.approvers
            and who.user not in decided
            and (who.user != state.request.requester)
        )
        order_id = state.request.subject if state.request.kind == "order" else None
        return page(
            request, "approval.html", status, who=who, state=state, may_decide=may_decide,
            done=done, error=error, csrf=auth.csrf_token(who.user), order_id=order_id,
            names={u: gateway.display_name(u) for u in {*state.approvers,
                                                        state.request.requester}},
        )  # fmt: skip

    @ui.post("/approvals/{request_id}/decide")
    async def decide_form(
        request: Request,
        request_id: str,
        who: Who,
        verdict: Annotated[str, Form()],
        csrf: Annotated[str, Form()],
        reason: Annotated[str, Form()] = "",
    ) -> Response:
        if csrf != auth.csrf_token(who.user):
            raise StarletteHTTPException(403, "the form expired; reload the page and try again")
        if verdict not in ("approve", "reject"):
            raise StarletteHTTPException(422, "choose approve or reject")
        try:
            await gateway.decide(who, request_id, verdict, reason.strip() or None, via="web")
        except GatewayError as refused:
            state = await gateway.get_approval(who, request_id)
            return _detail(request, state, who, error=refused.detail, status=refused.status)
        return RedirectResponse(
            f"/ui/approvals/{quote(request_id)}?done={verdict}d", status_code=303
        )

    @ui.get("/orders/{order_id}", response_class=HTMLResponse)
    async def order_page(request: Request, order_id: str, who: Who) -> HTMLResponse:
        state = await gateway.get_order(who, order_id)
        ended = state.status in (
            OrderStatus.FULFILLED, OrderStatus.COMPENSATED, OrderStatus.RESOLVED
        )  # fmt: skip
        return page(request, "order.html", who=who, state=state, ended=ended)

    return ui
