"""The gateway's HTTP API (OpenAPI at ``/openapi.json``, reference at ``/docs``), every
error as ``application/problem+json``.

Every endpoint needs an authenticated caller: ``Authorization: Bearer <token>``, or the
identity headers of a trusted authenticating proxy. Bodies are JSON, validated strictly
(JSON types as documented, no coercion; unknown fields are refused) and at most
``MUSTER_GATEWAY_MAX_BODY_BYTES`` long. ``Idempotency-Key`` binds a key to the caller and
the body for at least 24 hours: the same request again gets the same answer (with
``Idempotent-Replayed: true``), another body under the key gets a 422.

A create that started its workflow always says so: ``201`` with the state, or ``202
Accepted`` with a ``Location`` to GET when the worker did not answer in time. A ``503``
means the start failed or its outcome is unknown; with the same ``Idempotency-Key`` and
body a retry is safe.
"""

import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.exceptions import TemporalError

from muster_api.approval import ApprovalState
from muster_api.common import FreeText
from muster_api.fulfillment import Order, OrderState, ResolveInput
from muster_gateway import web
from muster_gateway.auth import Authenticator, Caller
from muster_gateway.problems import (
    PROBLEM_JSON,
    PROBLEM_TYPE,
    GatewayError,
    Problem,
    from_temporal,
    shown,
)
from muster_gateway.service import (
    ApprovalSummary,
    DecisionBody,
    Gateway,
    NewApproval,
    RejectBody,
    Started,
)
from muster_gateway.tracing import add_request_ids

log = logging.getLogger(__name__)

# Kept for callers of the former module-level constant.
PROBLEM = PROBLEM_TYPE
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DISCARD_LIMIT = 64 * 1024 * 1024
"""Most of a refused body read and dropped (beyond it, the connection is closed)."""

FASTAPI_BODY_ERROR = "There was an error parsing the body"
"""FastAPI's 400 for a body its parser gave up on (JSON nested too deeply, say)."""
KEY_PATTERN = r"^[A-Za-z0-9._:-]+$"
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=KEY_PATTERN,
        description="Same caller, key and body: the same order (replayed: 201, or 202 "
        "while the worker has not answered); the same key "
        "with another body: 422. A key is held for at least 24 hours.",
    ),
]
OptionalIdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=KEY_PATTERN,
        description="Same caller, key and body: the same request (replayed: 201, or "
        "202 while the worker has not answered); the same "
        "key with another body: 422. A key is held for at least 24 hours.",
    ),
]

_DESCRIPTIONS = {
    401: "No credentials, or credentials that were not accepted",
    403: "The caller may not do this (nothing was changed)",
    404: "No such request or order",
    409: "The request or order is in a state that does not allow this",
    413: "The body is larger than the gateway accepts",
    422: "The request is invalid: each problem is in `errors`, with where it is",
    503: "Temporal or a worker cannot answer now; try again (see Retry-After)",
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error statuses: each an ``application/problem+json`` Problem."""
    found: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[code],
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
        }
        if code == 401:
            response["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}
            }
        if code == 503:
            response["headers"] = {
                "Retry-After": {"schema": {"type": "string"}, "description": "seconds"}
            }
        found[code] = response
    return found


ACCEPTED_RETRY_AFTER = "2"
"""Seconds a 202's caller is asked to wait before it GETs the Location."""


class Accepted(BaseModel):
    """A create that started its workflow, whose state the worker has not answered yet."""

    status: Literal["accepted"] = Field(description="always 'accepted'")
    detail: str = Field(description="what happened, and where to read the state")


class ApprovalAccepted(Accepted):
    """An approval request that was started; GET the Location for its state."""

    request_id: str


class OrderAccepted(Accepted):
    """An order that was placed; GET the Location for its state."""

    order_id: str


def accepted(model: type[Accepted], location: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI response for a 202 Accepted answered with ``model``."""
    return {
        202: {
            "model": model,
            "description": "Started, but the worker did not answer in time: GET the Location "
            "(after Retry-After) for its state. It is not started again by a retry.",
            "headers": {
                "Location": {"schema": {"type": "string"}, "description": location},
                "Retry-After": {"schema": {"type": "string"}, "description": "seconds"},
            },
        }
    }


class ResolveBody(BaseModel):
    """An admin's resolution of an order that needs attention."""

    model_config = ConfigDict(extra="forbid", strict=True)

    action: Literal["retry_compensation", "mark_resolved"]
    note: FreeText = Field(
        default="",
        max_length=2000,
        description="what was done by hand (mark_resolved needs at least 3 characters)",
    )


def problem(
    status: int, kind: str, title: str, detail: str, headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:  # fmt: skip
    """An RFC 9457 problem response."""
    merged = dict(headers or {})
    if status == 503:
        merged.setdefault("Retry-After", "1")
    if status == 401:
        merged["WWW-Authenticate"] = 'Bearer realm="muster"'
    body = {"type": PROBLEM_TYPE + kind, "title": title, "status": status, "detail": detail}
    body.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=merged)


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413, before the app reads it: at
    once when ``Content-Length`` says so, or as soon as a streamed body passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._refuse(
                    scope, send, receive, 400, "Content-Length must be a number of bytes"
                )
                return
            if int(declared) > self.limit:
                # Answered from the headers alone, before a byte of the body is read.
                await self._refuse(scope, send, receive, 413, self._too_large(int(declared)))
                return
            await self.app(scope, receive, send)
            return
        # No length given (a chunked body): read it here, up to the limit, and hand the app
        # what arrived; past the limit, refuse at once.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, send, receive, 413, self._too_large(size))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> str:
        return (
            f"the body is {size} bytes or more; the gateway accepts at most {self.limit} "
            "bytes per request"
        )

    @staticmethod
    async def _refuse(scope: Scope, send: Send, receive: Receive, status: int, detail: str) -> None:
        """Answer with a problem (an error page on the approver page's paths), then read and
        drop the rest of the body (up to a bound), so that the client reads the answer
        rather than a reset in the middle of its upload. The answer is complete only then: a
        server stops reading once it is."""
        kind = "too-large" if status == 413 else "bad-request"
        title = "Body too large" if status == 413 else "Bad request"
        response: Response
        if str(scope.get("path", "")).startswith("/ui"):
            response = web.error_page(Request(scope), status, title, detail)
            response.headers["Connection"] = "close"
        else:
            response = problem(status, kind, title, detail, headers={"Connection": "close"})
        await send(
            {"type": "http.response.start", "status": status, "headers": response.raw_headers}
        )
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        dropped = 0
        while dropped < DISCARD_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                break
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _where(location: tuple[Any, ...]) -> str:
    return ".".join(shown(str(part), 40).strip("'") for part in location)


def create_app(
    gateway: Gateway, auth: Authenticator, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """The API and the approver page over one Gateway."""
    app = FastAPIOffline(
        title="Muster gateway",
        version="1",
        description=__doc__,
        static_url="/docs-assets",
        # "/v1/orders/" is not "/v1/orders": a 404, not a redirect nobody documents.
        redirect_slashes=False,
    )
    add_request_ids(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    def answer(request: Request, refusal: GatewayError) -> Response:
        if request.url.path.startswith("/ui"):
            return web.error_page(request, refusal.status, refusal.title, refusal.detail)
        return problem(refusal.status, refusal.kind, refusal.title, refusal.detail, **refusal.extra)

    @app.exception_handler(GatewayError)
    async def refused(request: Request, exc: GatewayError) -> Response:
        return answer(request, exc)

    @app.exception_handler(TemporalError)
    async def temporal_failed(request: Request, exc: TemporalError) -> Response:
        # The services map what they expect; anything else still gets a precise status.
        log.warning("%s %s: Temporal error %r", request.method, request.url.path, exc)
        return answer(request, from_temporal(exc, f"{request.method} {request.url.path}"))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        found = [
            {"where": _where(tuple(err["loc"])), "problem": str(err["msg"])} for err in exc.errors()
        ]
        detail = "; ".join(f"{e['where']}: {e['problem']}" for e in found)
        if request.url.path.startswith("/ui"):
            return web.error_page(request, 422, "Invalid request", detail)
        return problem(422, "validation", "Invalid request", detail, errors=found)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and request.url.path.startswith("/ui"):
            return RedirectResponse("/ui/login", status_code=303)
        if request.url.path.startswith("/ui"):
            return web.error_page(request, exc.status_code, "Request failed", str(exc.detail))
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_ERROR:
            cause = exc.__cause__
            why = "it is nested too deeply" if isinstance(cause, RecursionError) else str(cause)
            detail = f"body: the request body could not be read as JSON: {why}"
            where = [{"where": "body", "problem": detail.removeprefix("body: ")}]
            return problem(422, "validation", "Invalid request", detail, errors=where)
        titles = {404: "Not found", 405: "Method not allowed", 413: "Body too large"}
        return problem(
            exc.status_code,
            {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
                exc.status_code, "http"
            ),
            titles.get(exc.status_code, "Request failed"),
            _http_detail(request, exc),
            headers=dict(exc.headers or {}),  # 405 carries Allow
        )

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        # A bug: the caller gets an incident id, never a stack trace (that goes to the log).
        incident = uuid.uuid4().hex[:12]
        log.error(
            "%s %s failed (incident %s)", request.method, request.url.path, incident, exc_info=exc
        )
        return problem(
            500,
            "internal",
            "Internal error",
            f"the gateway failed on this request; quote incident {incident} to the operators",
            incident=incident,
        )

    bearer = HTTPBearer(
        auto_error=False,
        description="An access token: Authorization: Bearer <token>",
    )

    async def caller(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        peer = request.client.host if request.client else None
        found = auth.from_headers(dict(request.headers), peer)
        if found is not None:
            return found
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and not token.strip():
            reason = "the bearer token is empty: send 'Authorization: Bearer <token>'"
        elif scheme.lower() == "bearer":
            reason = (
                "the bearer token was not accepted: it is unknown or was revoked; check it, "
                "or ask for a new one"
            )
        elif scheme:
            reason = "only 'Authorization: Bearer <token>' is accepted"
        else:
            reason = "authenticate with 'Authorization: Bearer <token>'"
        raise GatewayError(401, "unauthenticated", "Not authenticated", reason)

    Authenticated = Annotated[Caller, Depends(caller)]  # noqa: N806 - a FastAPI dependency type
    api = APIRouter(prefix="/v1")

    def replayed(response: Response, created: bool) -> None:
        if not created:
            response.headers["Idempotent-Replayed"] = "true"

    def started(
        response: Response, started: Started[Any], location: str, body: Accepted
    ) -> Response | Any:
        """The state (the route's 201), or ``body`` as a 202 when the state is unread."""
        if started.state is not None:
            replayed(response, started.created)
            response.headers["Location"] = location
            return started.state
        headers = {"Location": location, "Retry-After": ACCEPTED_RETRY_AFTER}
        if not started.created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)

    @api.post(
        "/approvals",
        status_code=201,
        response_model=ApprovalState,
        responses={
            **accepted(ApprovalAccepted, "/v1/approvals/{request_id}"),
            **errors(401, 413, 422, 503),
        },
    )
    async def create_approval(
        body: NewApproval,
        who: Authenticated,
        response: Response,
        key: OptionalIdempotencyKey = None,
    ) -> Any:
        """Ask for an approval; the caller is the requester. Policy: named, or the one that
        applies to the kind and amount. The gateway chooses the request id. 202 when the
        request was started but the worker did not answer in time."""
        result = await gateway.create_approval(who, body, key)
        location = f"/v1/approvals/{result.id}"
        return started(
            response,
            result,
            location,
            ApprovalAccepted(
                request_id=result.id,
                status="accepted",
                detail=f"approval request {result.id} was started and the worker has not "
                f"answered yet; GET {location} for its state",
            ),
        )

    @api.get("/approvals", response_model=list[ApprovalSummary], responses=errors(401, 422, 503))
    async def list_approvals(
        who: Authenticated,
        status: str | None = Query(
            default=None,
            max_length=64,
            description="pending, approved, rejected, approved_on_timeout, "
            "rejected_on_timeout, cancelled",
        ),
        policy: str | None = Query(default=None, max_length=253),
        approver: str | None = Query(
            default=None, max_length=256, description="waiting for this user"
        ),
        limit: int = Query(default=50, ge=1, le=500),
    ) -> list[ApprovalSummary]:
        """Requests the caller requested or may decide (all of them, for admins)."""
        return await gateway.list_approvals(
            who, status=status, policy=policy, approver=approver, limit=limit
        )

    @api.get(
        "/approvals/{request_id}",
        response_model=ApprovalState,
        responses=errors(401, 403, 404, 503),
    )
    async def get_approval(request_id: str, who: Authenticated) -> ApprovalState:
        """A request with its decisions, deadline and audit trail."""
        return await gateway.get_approval(who, request_id)

    @api.post(
        "/approvals/{request_id}/approve",
        response_model=ApprovalState,
        responses=errors(401, 403, 404, 409, 413, 422, 503),
    )
    async def approve(
        request_id: str, who: Authenticated, body: DecisionBody | None = None
    ) -> ApprovalState:
        """Approve as the caller (403 if not an approver, or the requester). Approving
        again is not an error: it answers the state, unchanged."""
        reason = body.reason if body else None
        return await gateway.decide(who, request_id, "approve", reason)

    @api.post(
        "/approvals/{request_id}/reject",
        response_model=ApprovalState,
        responses=errors(401, 403, 404, 409, 413, 422, 503),
    )
    async def reject(request_id: str, body: RejectBody, who: Authenticated) -> ApprovalState:
        """Reject as the caller: a reject needs a reason (422 without one)."""
        return await gateway.decide(who, request_id, "reject", body.reason)

    @api.post(
        "/orders",
        status_code=201,
        response_model=OrderState,
        responses={
            **accepted(OrderAccepted, "/v1/orders/{order_id}"),
            **errors(401, 409, 413, 422, 503),
        },
    )
    async def place_order(
        order: Order, key: IdempotencyKey, who: Authenticated, response: Response
    ) -> Any:
        """Place an order (needs ``Idempotency-Key``); it runs the fulfillment saga. An
        order id is placed once (409 for another request with the same order id). 202 when
        the order was placed but the worker did not answer in time."""
        result = await gateway.place_order(who, order, key)
        location = f"/v1/orders/{result.id}"
        return started(
            response,
            result,
            location,
            OrderAccepted(
                order_id=result.id,
                status="accepted",
                detail=f"order {result.id} was placed and the worker has not answered yet; "
                f"GET {location} for its state",
            ),
        )

    @api.get("/orders/{order_id}", response_model=OrderState, responses=errors(401, 403, 404, 503))
    async def get_order(order_id: str, who: Authenticated) -> OrderState:
        """An order's status and step history."""
        return await gateway.get_order(who, order_id)

    @api.delete(
        "/orders/{order_id}",
        response_model=OrderState,
        status_code=202,
        responses=errors(401, 403, 404, 409, 503),
    )
    async def cancel_order(order_id: str, who: Authenticated) -> OrderState:
        """Cancel an order (compensates unless it has shipped; 409 once it has finished)."""
        return await gateway.cancel_order(who, order_id)

    @api.post(
        "/orders/{order_id}/resolve",
        response_model=OrderState,
        responses=errors(401, 403, 404, 409, 413, 422, 503),
    )
    async def resolve_order(order_id: str, body: ResolveBody, who: Authenticated) -> OrderState:
        """Resolve an order that needs attention (admins; 409 for any other order)."""
        resolution = ResolveInput(action=body.action, operator=who.user, note=body.note)
        return await gateway.resolve_order(who, order_id, resolution)

    app.include_router(api)
    app.include_router(web.router(gateway, auth))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem_schema.pop("$defs", {}))
        components["Problem"] = problem_schema
        # FastAPI's own validation-error shapes are never answered (ours is a Problem), and
        # it adds one to routes that cannot answer 422 at all (a path id is any string).
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for operations in schema["paths"].values():
            for operation in operations.values():
                content = operation["responses"].get("422", {}).get("content", {})
                if "application/json" in content:
                    del operation["responses"]["422"]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _message(error: Any) -> str:
    """pydantic's message; our own validators' words without its "Value error, " prefix."""
    if error.get("type") == "value_error" and "error" in (error.get("ctx") or {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


def _http_detail(request: Request, exc: StarletteHTTPException) -> str:
    if exc.status_code == 404:
        return f"nothing at {shown(request.url.path, 200)}; the API is under /v1 (see /docs)"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return (
            f"{request.method} is not allowed on {shown(request.url.path, 200)}; allowed: {allowed}"
        )
    return str(exc.detail)
