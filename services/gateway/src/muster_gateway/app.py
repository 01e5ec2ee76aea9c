"""The gateway's HTTP API (OpenAPI at ``/docs``), errors as ``application/problem+json``.

Every endpoint needs an authenticated caller: ``Authorization: Bearer <token>``, or the
identity headers of a trusted authenticating proxy (see :mod:`muster_gateway.auth`).
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from muster_api.approval import ApprovalState
from muster_api.fulfillment import Order, OrderState, ResolveInput
from muster_gateway import web
from muster_gateway.auth import Authenticator, Caller
from muster_gateway.service import (
    ApprovalSummary,
    DecisionBody,
    Gateway,
    GatewayError,
    NewApproval,
)
from muster_gateway.tracing import add_request_ids

PROBLEM = "urn:muster:problem:"

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Same key + same body = same order; same key + another body = 422",
    ),
]
OptionalIdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=255, pattern=r"^[A-Za-z0-9._:-]+$"),
]


class ResolveBody(BaseModel):
    """An admin's resolution of an order that needs attention."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["retry_compensation", "mark_resolved"]
    note: str = Field(default="", max_length=2000)


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    headers = {"Retry-After": "1"} if status == 503 else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="muster"'
    return JSONResponse(
        {"type": PROBLEM + kind, "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def create_app(gateway: Gateway, auth: Authenticator) -> FastAPI:
    """The API and the approver page over one Gateway."""
    app = FastAPI(
        title="Muster gateway",
        version="1",
        description=__doc__,
    )
    add_request_ids(app)

    @app.exception_handler(GatewayError)
    async def refused(request: Request, exc: GatewayError) -> Response:
        if request.url.path.startswith("/ui"):
            return web.error_page(request, exc.status, exc.title, exc.detail)
        return problem(exc.status, exc.kind, exc.title, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['where']}: {e['problem']}" for e in errors)
        return problem(422, "validation", "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and request.url.path.startswith("/ui"):
            return RedirectResponse("/ui/login", status_code=303)
        if request.url.path.startswith("/ui"):
            return web.error_page(request, exc.status_code, "Request failed", str(exc.detail))
        return problem(exc.status_code, "http", "Request failed", str(exc.detail))

    async def caller(request: Request) -> Caller:
        peer = request.client.host if request.client else None
        found = auth.from_headers(dict(request.headers), peer)
        if found is None:
            raise StarletteHTTPException(
                401, "authenticate with 'Authorization: Bearer <token>' (or via the proxy)"
            )
        return found

    Authenticated = Annotated[Caller, Depends(caller)]  # noqa: N806 - a FastAPI dependency type
    api = APIRouter(prefix="/v1")

    @api.post("/approvals", status_code=201, response_model=ApprovalState)
    async def create_approval(
        body: NewApproval,
        who: Authenticated,
        response: Response,
        key: OptionalIdempotencyKey = None,
    ) -> ApprovalState:
        """Ask for an approval; the caller is the requester. Policy: named, or the one that
        applies to the kind and amount."""
        state, created = await gateway.create_approval(who, body, key)
        response.status_code = 201 if created else 200
        response.headers["Location"] = f"/v1/approvals/{state.request.request_id}"
        return state

    @api.get("/approvals", response_model=list[ApprovalSummary])
    async def list_approvals(
        who: Authenticated,
        status: str | None = Query(default=None, description="pending, approved, rejected, ..."),
        policy: str | None = Query(default=None),
        approver: str | None = Query(default=None, description="waiting for this user"),
        limit: int = Query(default=50, ge=1, le=500),
    ) -> list[ApprovalSummary]:
        """Requests the caller requested or may decide (all of them, for admins)."""
        return await gateway.list_approvals(
            who, status=status, policy=policy, approver=approver, limit=limit
        )

    @api.get("/approvals/{request_id}", response_model=ApprovalState)
    async def get_approval(request_id: str, who: Authenticated) -> ApprovalState:
        """A request with its decisions, deadline and audit trail."""
        return await gateway.get_approval(who, request_id)

    @api.post("/approvals/{request_id}/approve", response_model=ApprovalState)
    async def approve(
        request_id: str, who: Authenticated, body: DecisionBody | None = None
    ) -> ApprovalState:
        """Approve as the caller (403 if not an approver or the requester)."""
        reason = body.reason if body else None
        return await gateway.decide(who, request_id, "approve", reason)

    @api.post("/approvals/{request_id}/reject", response_model=ApprovalState)
    async def reject(request_id: str, body: DecisionBody, who: Authenticated) -> ApprovalState:
        """Reject as the caller; a reason is required."""
        return await gateway.decide(who, request_id, "reject", body.reason)

    @api.post("/orders", status_code=201, response_model=OrderState)
    async def place_order(
        order: Order, key: IdempotencyKey, who: Authenticated, response: Response
    ) -> OrderState:
        """Place an order (needs ``Idempotency-Key``); it runs the fulfillment saga."""
        state, created = await gateway.place_order(who, order, key)
        response.status_code = 201 if created else 200
        response.headers["Location"] = f"/v1/orders/{order.order_id}"
        return state

    @api.get("/orders/{order_id}", response_model=OrderState)
    async def get_order(order_id: str, who: Authenticated) -> OrderState:
        """An order's status and step history."""
        return await gateway.get_order(who, order_id)

    @api.delete("/orders/{order_id}", response_model=OrderState, status_code=202)
    async def cancel_order(order_id: str, who: Authenticated) -> OrderState:
        """Cancel an order (compensates unless it has shipped)."""
        return await gateway.cancel_order(who, order_id)

    @api.post("/orders/{order_id}/resolve", response_model=OrderState)
    async def resolve_order(order_id: str, body: ResolveBody, who: Authenticated) -> OrderState:
        """Resolve an order that needs attention (admins)."""
        resolution = ResolveInput(action=body.action, operator=who.user, note=body.note)
        return await gateway.resolve_order(who, order_id, resolution)

    app.include_router(api)

    app.include_router(web.router(gateway, auth))
    return app
