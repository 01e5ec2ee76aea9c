"""Muster's ids on the gateway's request spans. FastAPI itself opens the HTTP server span of
each request (continuing the caller's W3C ``traceparent``, named by the route template, never
a raw path); this adds the order or approval the request is about, so the trace that runs
from the request through the workflow (Temporal's headers carry it on) to the backends can be
found by id. Ids only: no names, addresses or tokens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from fastapi import FastAPI, Request, Response
from opentelemetry import trace

ORDER_ID = "muster.order_id"
APPROVAL_ID = "muster.approval_id"
_ATTRIBUTES = {"order_id": ORDER_ID, "request_id": APPROVAL_ID}
_REQUEST_SPAN: ContextVar[trace.Span | None] = ContextVar("muster_request_span", default=None)


def annotate(**ids: str) -> None:
    """Put Muster ids (``order_id=...``, ``request_id=...``) on the request's server span
    (and on the current span, when that is a child of it)."""
    spans = {trace.get_current_span()}
    request_span = _REQUEST_SPAN.get()
    if request_span is not None:
        spans.add(request_span)
    for span in spans:
        for name, value in ids.items():
            span.set_attribute(_ATTRIBUTES[name], value)


def add_request_ids(app: FastAPI) -> None:
    """Name the order or approval of every request of ``app`` on its server span."""

    @app.middleware("http")
    async def request_ids(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        span = trace.get_current_span()  # the server span FastAPI opened for this request
        token = _REQUEST_SPAN.set(span)
        try:
            response = await call_next(request)
        finally:
            _REQUEST_SPAN.reset(token)
        # Routing has run: the matched route's parameters are in the scope.
        for name, value in (request.scope.get("path_params") or {}).items():
            if name in _ATTRIBUTES:
                span.set_attribute(_ATTRIBUTES[name], str(value))
        return response
