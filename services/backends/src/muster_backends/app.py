"""The HTTP API of the reference backends: four services under one app, with idempotency,
ledgers, RFC 9457 problem documents, fault injection and trace propagation.

Paths: ``/inventory``, ``/payment``, ``/shipping``, ``/notification``, and ``/admin/faults``.
Every POST needs an ``Idempotency-Key`` header.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from opentelemetry import propagate, trace
from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from muster_backends import inventory, notification, payment, shipping
from muster_backends.models import (
    CancelShipmentRequest,
    ChargeRequest,
    Fault,
    IdempotencyKey,
    MessageRequest,
    RefundRequest,
    ReleaseRequest,
    ReserveRequest,
    ShipmentRequest,
    StockLevel,
)
from muster_backends.store import (
    PROBLEM,
    IdempotencyConflict,
    Outcome,
    Store,
    fingerprint,
    problem,
)

BACKENDS = ("inventory", "payment", "shipping", "notification")
PROBLEM_JSON = "application/problem+json"

tracer = trace.get_tracer("muster.backends")

REQUESTS = Counter(
    "muster_backend_requests",
    "Backend operations by backend, operation and outcome",
    ["backend", "operation", "outcome"],
)
LATENCY = Histogram(
    "muster_backend_request_duration_seconds",
    "Time to answer a backend operation",
    ["backend", "operation"],
)


@dataclass
class Backends:
    """The four stores, their fault settings and the shipping coverage."""

    stores: dict[str, Store]
    faults: dict[str, Fault]
    countries: frozenset[str]
    rng: random.Random = field(default_factory=random.Random)

    def close(self) -> None:
        """Close every database."""
        for store in self.stores.values():
            store.close()


def open_backends(
    data_dir: Path,
    *,
    faults: dict[str, Fault],
    countries: frozenset[str],
    initial_stock: dict[str, int],
    seed: int | None = None,
) -> Backends:
    """Open (or create) the four databases under ``data_dir``."""
    schemas = {
        "inventory": inventory.SCHEMA,
        "payment": payment.SCHEMA,
        "shipping": shipping.SCHEMA,
        "notification": notification.SCHEMA,
    }
    stores = {name: Store(data_dir / f"{name}.db", schema) for name, schema in schemas.items()}
    with stores["inventory"].transaction() as conn:
        inventory.seed(conn, initial_stock)
    return Backends(stores, dict(faults), countries, random.Random(seed))  # noqa: S311


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"where": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
    },
}
_MEANINGS = {
    402: "Payment refused (a declining test token)",
    404: "No such backend",
    409: "Out of stock, or a compensation of something never done",
    422: "Invalid request, an unknown SKU or address, or an Idempotency-Key reused",
    503: "A fault injected on purpose (see /admin/faults)",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses: each status an application/problem+json problem document."""
    return {
        code: {
            "description": _MEANINGS[code],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        for code in codes
    }


def _json(outcome: Outcome, *, replayed: bool = False) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    media = PROBLEM_JSON if outcome.is_problem else "application/json"
    return JSONResponse(outcome.body, status_code=outcome.status, media_type=media, headers=headers)


def create_app(backends: Backends) -> FastAPI:
    """The ASGI application over already opened stores."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        backends.close()

    post_paths: set[str] = set()
    # The API reference (/docs, /redoc) serves its assets from the installed package.
    app = FastAPIOffline(
        title="Muster reference backends",
        version="1",
        description=__doc__,
        lifespan=lifespan,
        static_url="/docs-assets",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"where": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['where']}: {e['problem']}" for e in errors)
        REQUESTS.labels(_backend_of(request), _operation(request), "invalid").inc()
        return _json(problem(422, "validation", "Invalid request", detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's 400 for a body its parser gave up on (JSON nested too deeply, say).
            detail = f"body: the request body could not be read as JSON: {exc.__cause__!r}"
            return _json(problem(422, "validation", "Invalid request", detail[:500]))
        response = _json(problem(exc.status_code, "http", "Request failed", str(exc.detail)))
        response.headers.update(exc.headers or {})  # a 405 says what is allowed
        return response

    @app.middleware("http")
    async def observe_and_inject_faults(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        backend = _backend_of(request)
        operation = f"POST {request.url.path}" if request.url.path in post_paths else "other"
        # FastAPI opens the request's server span (continuing the caller's traceparent);
        # without it (no tracer provider configured for FastAPI) open one here.
        current = trace.get_current_span()
        with (
            nullcontext(current)
            if current.is_recording()
            else tracer.start_as_current_span(
                f"{request.method} {request.url.path}",
                context=propagate.extract(dict(request.headers)),
                kind=trace.SpanKind.SERVER,
                attributes={"http.request.method": request.method},
            )
        ) as span:
            started = time.perf_counter()
            fault = backends.faults.get(backend) if request.method == "POST" else None
            if (
                fault is not None
                and fault.paths is not None
                and request.url.path not in fault.paths
            ):
                fault = None
            if fault is not None and fault.latency_ms:
                await asyncio.sleep(fault.latency_ms / 1000)
            if fault is not None and backends.rng.random() < fault.error_rate:
                REQUESTS.labels(backend, operation, "fault").inc()
                span.set_attribute("muster.fault", "error")
                return _json(
                    problem(503, "injected-fault", "Injected fault", f"{backend} error injected")
                )
            response = await call_next(request)
            span.set_attribute("http.response.status_code", response.status_code)
            LATENCY.labels(backend, _operation(request)).observe(time.perf_counter() - started)
            if fault is not None and backends.rng.random() < fault.lost_response_rate:
                # The work is done and committed; the caller will time out before it hears.
                span.set_attribute("muster.fault", "lost-response")
                REQUESTS.labels(backend, operation, "lost_response").inc()
                await asyncio.sleep(fault.lost_response_delay_seconds)
            return response

    async def run(
        request: Request,
        backend: str,
        key: str,
        body: Any,
        operation: Callable[[Any], Outcome],
    ) -> JSONResponse:
        store = backends.stores[backend]
        name = _operation(request)
        try:
            outcome, replayed = await store.idempotent(
                key,
                fingerprint("POST", request.url.path, body.model_dump(mode="json")),
                operation,
            )
        except IdempotencyConflict:
            REQUESTS.labels(backend, name, "conflict").inc()
            return _json(
                problem(
                    422,
                    "idempotency-conflict",
                    "Idempotency-Key reused",
                    f"Idempotency-Key {key!r} was already used for a different request; "
                    "use a new key for a new request",
                )
            )
        if replayed:
            result = "replayed"
        elif outcome.is_problem:
            result = "business"
        else:
            result = "ok"
        REQUESTS.labels(backend, name, result).inc()
        return _json(outcome, replayed=replayed)

    # -- inventory ------------------------------------------------------------------------
    inv = APIRouter(prefix="/inventory", tags=["inventory"])

    @inv.post("/reservations", status_code=201, responses=problems(409, 422, 503))
    async def reserve(body: ReserveRequest, key: IdempotencyKey, request: Request) -> JSONResponse:
        """Reserve every item of an order, or none (409 out-of-stock, 422 unknown-sku)."""
        return await run(request, "inventory", key, body, lambda c: inventory.reserve(c, key, body))

    @inv.post("/reservations/release", responses=problems(409, 422, 503))
    async def release(body: ReleaseRequest, key: IdempotencyKey, request: Request) -> JSONResponse:
        """Compensation: put reserved stock back, or void a reservation never made."""
        return await run(request, "inventory", key, body, lambda c: inventory.release(c, key, body))

    @inv.get("/stock", responses=problems())
    async def stock() -> list[dict[str, Any]]:
        """Stock on hand per SKU."""
        return await backends.stores["inventory"].read("SELECT * FROM stock ORDER BY sku")

    @inv.put("/stock/{sku}", responses=problems(422))
    async def set_stock(sku: str, body: StockLevel) -> JSONResponse:
        """Set stock on hand (an inventory count); the difference is a ledger move."""
        store = backends.stores["inventory"]
        async with store.lock:
            with store.transaction() as conn:
                outcome = inventory.set_stock(conn, sku, body.on_hand)
        return _json(outcome)

    @inv.get("/reservations", responses=problems(422))
    async def reservations(order_id: str | None = Query(default=None)) -> list[dict[str, Any]]:
        """Reservations, optionally of one order."""
        return await _rows(backends.stores["inventory"], "reservations", order_id)

    @inv.get("/ledger", responses=problems(422))
    async def inventory_ledger(
        order_id: str | None = Query(default=None),
        after_id: int | None = Query(default=None, ge=0, description="moves after this id"),
        limit: int | None = Query(default=None, ge=1, le=10_000),
    ) -> list[dict[str, Any]]:
        """Every stock move (initial, reserve, release, count), oldest first.

        ``after_id`` and ``limit`` page through the ledger by id (what a sync with a
        watermark needs).
        """
        if after_id is None and limit is None:
            return await _rows(backends.stores["inventory"], "moves", order_id, order_by="id")
        return await backends.stores["inventory"].read(
            "SELECT * FROM moves WHERE id > ? AND (? IS NULL OR order_id = ?) ORDER BY id LIMIT ?",
            (after_id or 0, order_id, order_id, limit or -1),
        )

    # -- payment --------------------------------------------------------------------------
    pay = APIRouter(prefix="/payment", tags=["payment"])

    @pay.post("/charges", status_code=201, responses=problems(402, 409, 422, 503))
    async def charge(body: ChargeRequest, key: IdempotencyKey, request: Request) -> JSONResponse:
        """Capture an amount (402 card-declined for the declining test tokens)."""
        return await run(request, "payment", key, body, lambda c: payment.charge(c, key, body))

    @pay.post("/refunds", responses=problems(409, 422, 503))
    async def refund(body: RefundRequest, key: IdempotencyKey, request: Request) -> JSONResponse:
        """Compensation: refund a charge in full, or void a charge never made."""
        return await run(request, "payment", key, body, lambda c: payment.refund(c, key, body))

    @pay.get("/charges", responses=problems(422))
    async def charges(order_id: str | None = Query(default=None)) -> list[dict[str, Any]]:
        """Charges, optionally of one order."""
        return await _rows(backends.stores["payment"], "charges", order_id)

    @pay.get("/ledger", responses=problems(422))
    async def payment_ledger(order_id: str | None = Query(default=None)) -> dict[str, Any]:
        """Charges and refunds."""
        store = backends.stores["payment"]
        return {
            "charges": await _rows(store, "charges", order_id),
            "refunds": await _rows(store, "refunds", order_id),
        }

    # -- shipping -------------------------------------------------------------------------
    ship = APIRouter(prefix="/shipping", tags=["shipping"])

    @ship.post("/shipments", status_code=201, responses=problems(409, 422, 503))
    async def book(body: ShipmentRequest, key: IdempotencyKey, request: Request) -> JSONResponse:
        """Book a shipment (422 address-rejected for addresses no carrier serves)."""
        return await run(
            request,
            "shipping",
            key,
            body,
            lambda c: shipping.create(c, key, body, backends.countries),
        )

    @ship.post("/shipments/cancel", responses=problems(409, 422, 503))
    async def cancel(
        body: CancelShipmentRequest, key: IdempotencyKey, request: Request
    ) -> JSONResponse:
        """Compensation: cancel a shipment, or void one never booked."""
        return await run(request, "shipping", key, body, lambda c: shipping.cancel(c, key, body))

    @ship.get("/ledger", responses=problems(422))
    async def shipping_ledger(order_id: str | None = Query(default=None)) -> list[dict[str, Any]]:
        """Every shipment with its status."""
        return await _rows(backends.stores["shipping"], "shipments", order_id)

    # -- notification -----------------------------------------------------------------------
    note = APIRouter(prefix="/notification", tags=["notification"])

    @note.post("/messages", status_code=202, responses=problems(409, 422, 503))
    async def send(body: MessageRequest, key: IdempotencyKey, request: Request) -> JSONResponse:
        """Send a templated message (once per key)."""
        return await run(
            request, "notification", key, body, lambda c: notification.send(c, key, body)
        )

    @note.get("/ledger", responses=problems(422))
    async def notification_ledger(
        order_id: str | None = Query(default=None),
    ) -> list[dict[str, Any]]:
        """Every message sent."""
        return await _rows(backends.stores["notification"], "messages", order_id)

    # -- admin ----------------------------------------------------------------------------------
    admin = APIRouter(prefix="/admin", tags=["admin"])

    @admin.get("/faults", responses=problems())
    async def get_faults() -> dict[str, Fault]:
        """Current fault injection per backend."""
        return {name: backends.faults.get(name, Fault()) for name in BACKENDS}

    @admin.put("/faults/{backend}", responses=problems(404, 422))
    async def put_fault(backend: str, body: Fault) -> Fault:
        """Set fault injection for one backend (all zero turns it off)."""
        if backend not in BACKENDS:
            raise HTTPException(404, f"no backend {backend!r}; known: {', '.join(BACKENDS)}")
        backends.faults[backend] = body
        return body

    for name, router in (("inventory", inv), ("payment", pay), ("shipping", ship)):
        _add_health(router, backends.stores[name], name)
    _add_health(note, backends.stores["notification"], "notification")
    for router in (inv, pay, ship, note, admin):
        app.include_router(router)
    post_paths.update(
        str(getattr(route, "path", ""))
        for route in app.routes
        if "POST" in getattr(route, "methods", ())
    )
    return app


def _add_health(router: APIRouter, store: Store, name: str) -> None:
    """``GET /<backend>/healthz``: the backend's database answers (what a health check calls)."""

    @router.get("/healthz", responses=problems())
    async def healthz() -> dict[str, Any]:
        rows = await store.read("SELECT 1 AS ok")
        return {"service": name, "ok": bool(rows and rows[0]["ok"] == 1)}


async def _rows(
    store: Store, table: str, order_id: str | None, order_by: str = "rowid"
) -> list[dict[str, Any]]:
    if order_id is None:
        return await store.read(f"SELECT * FROM {table} ORDER BY {order_by}")  # noqa: S608
    return await store.read(
        f"SELECT * FROM {table} WHERE order_id = ? ORDER BY {order_by}",  # noqa: S608
        (order_id,),
    )


def _backend_of(request: Request) -> str:
    first = request.url.path.strip("/").split("/", 1)[0]
    return first if first in (*BACKENDS, "admin") else "other"


def _operation(request: Request) -> str:
    """A bounded label: the route template, not the raw path."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return f"{request.method} {path}" if path else f"{request.method} (unmatched)"


__all__ = ["BACKENDS", "PROBLEM", "Backends", "create_app", "open_backends"]
