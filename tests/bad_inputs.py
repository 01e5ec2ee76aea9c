"""The table of malformed inputs: every way in (the HTTP API, workflow inputs started
straight through the ``temporal`` CLI, the ``muster-orders`` CLI) with what it must answer.

One case is one line. A case says what it sends and what must come back: a 4xx (or a CLI
error, or a workflow that failed at once with ``InvalidWorkflowInput``) whose message says
``says``. ``tests/temporal/test_bad_inputs.py`` runs the table against the real processes
and proves that none of it wrote anything: no workflow, no ledger row, no e-mail.

To add a case, add a line to :data:`API`, :data:`WORKFLOWS` or :data:`CLI`. Bodies are the
valid ``approval()`` and ``order()`` with one thing broken: ``broken(order(), items__0__
quantity="2")`` replaces a field (``__`` separates the path; :data:`DROP` removes it). In
paths, ``{request}`` is a pending approval request and ``{order}`` a fulfilled order, both
made for the run; in headers, ``{key}`` is the key that placed ``{order}``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

DROP = object()
"""In :func:`broken`: remove the field."""
NO_BODY = object()
"""An API case that sends no body at all."""
BIG = 5 * 1024 * 1024
LONG_ID = "x" * 10_000


def approval() -> dict[str, Any]:
    """A valid ``POST /v1/approvals`` body (the ``purchases`` policy governs it)."""
    return {
        "kind": "purchase",
        "title": "Standing desk",
        "description": "for the back\nand the knees",
        "amount": {"amount_minor": 89_000, "currency": "EUR"},
        "context": {"supplier": "ACME"},
    }


def order(order_id: str = "bad-order") -> dict[str, Any]:
    """A valid ``POST /v1/orders`` body."""
    return {
        "order_id": order_id,
        "customer_id": "cust-9",
        "customer_email": "cust9@example.com",
        "items": [
            {"sku": "WIDGET-1", "quantity": 1,
             "unit_price": {"amount_minor": 2_500, "currency": "EUR"}},
        ],
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"},
        "payment_token": "tok_visa",
    }  # fmt: skip


def broken(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``body`` with fields replaced (or removed with :data:`DROP`); ``a__0__b`` is a path."""
    result = copy.deepcopy(body)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target: Any = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        key: Any = int(last) if isinstance(target, list) else last
        if value is DROP:
            del target[key]
        else:
            target[key] = value
    return result


def items(count: int, **price: Any) -> list[dict[str, Any]]:
    """``count`` order lines with distinct SKUs."""
    unit = {"amount_minor": 100, "currency": "EUR", **price}
    return [{"sku": f"SKU-{n}", "quantity": 1, "unit_price": unit} for n in range(count)]


@dataclass(frozen=True)
class ApiCase:
    """One request to the gateway and the refusal it must get."""

    name: str
    method: str
    path: str
    body: Any = NO_BODY
    status: int = 422
    says: str = ""
    user: str | None = "dave"
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    """Sent as the body exactly (not JSON-encoded)."""
    chunked: bool = False
    """Send ``raw`` without Content-Length, in chunks."""


def api(name: str, method: str, path: str, body: Any = NO_BODY, status: int = 422,
        says: str = "", **more: Any) -> ApiCase:  # fmt: skip
    """An :class:`ApiCase` on one line."""
    return ApiCase(name, method, path, body, status, says, **more)


KEY = {"Idempotency-Key": "bad-input-key"}

API: list[ApiCase] = [
    # -- who is calling ------------------------------------------------------------------
    api("no credentials", "GET", "/v1/approvals", status=401, says="authenticate with", user=None),
    api("garbage token", "GET", "/v1/approvals", status=401, says="was not accepted", user="!garbage"),
    api("empty bearer token", "GET", "/v1/approvals", status=401, says="the bearer token is empty", user=None, headers={"Authorization": "Bearer"}),
    api("10,000-character token", "GET", "/v1/approvals", status=401, says="not accepted", user="!" + "t" * 10_000),
    api("token of nobody", "GET", "/v1/orders/x", status=401, says="not accepted", user="!zed-demo-token"),
    api("basic auth", "GET", "/v1/approvals", status=401, says="only 'Authorization: Bearer", user=None, headers={"Authorization": "Basic YWxpY2U6eA=="}),
    api("bearer without a space", "GET", "/v1/approvals", status=401, says="Bearer", user=None, headers={"Authorization": "Beareralice-demo-token"}),
    # -- POST /v1/approvals: the body as a whole ---------------------------------------------
    api("not JSON", "POST", "/v1/approvals", raw=b"{not json", says="JSON"),
    api("empty body", "POST", "/v1/approvals", raw=b"", says="body"),
    api("JSON null", "POST", "/v1/approvals", raw=b"null", says="body"),
    api("JSON array", "POST", "/v1/approvals", body=[approval()], says="body"),
    api("JSON string", "POST", "/v1/approvals", body="purchase", says="body"),
    api("5 MB body", "POST", "/v1/approvals", raw=b'{"title": "' + b"x" * BIG + b'"}', status=413, says="at most"),
    api("5 MB body, chunked", "POST", "/v1/approvals", raw=b"x" * BIG, status=413, says="at most", chunked=True),
    api("deeply nested JSON", "POST", "/v1/approvals", raw=b"[" * 100_000 + b"]" * 100_000, says="body"),
    api("text/plain body", "POST", "/v1/approvals", raw=b"kind=purchase", headers={"Content-Type": "text/plain"}, says="body"),
    # -- POST /v1/approvals: fields -----------------------------------------------------
    api("kind missing", "POST", "/v1/approvals", broken(approval(), kind=DROP), says="body.kind: Field required"),
    api("title missing", "POST", "/v1/approvals", broken(approval(), title=DROP), says="body.title"),
    api("kind is a number", "POST", "/v1/approvals", broken(approval(), kind=7), says="body.kind"),
    api("kind in capitals", "POST", "/v1/approvals", broken(approval(), kind="Purchase"), says="body.kind"),
    api("kind of 65 characters", "POST", "/v1/approvals", broken(approval(), kind="k" * 65), says="at most 64"),
    api("title empty", "POST", "/v1/approvals", broken(approval(), title=""), says="body.title"),
    api("title of 10,000 characters", "POST", "/v1/approvals", broken(approval(), title="t" * 10_000), says="at most 200"),
    api("title with a line break", "POST", "/v1/approvals", broken(approval(), title="Line one\nLine two"), says="body.title: must be a single line"),
    api("title with a carriage return", "POST", "/v1/approvals", broken(approval(), title="a\rb"), says="carriage return"),
    api("title with NUL", "POST", "/v1/approvals", broken(approval(), title="a\x00b"), says="U+0000"),
    api("title with an escape sequence", "POST", "/v1/approvals", broken(approval(), title="\x1b[31mred"), says="escape"),
    api("title with a line separator", "POST", "/v1/approvals", broken(approval(), title="a\u2028b"), says="line separator"),
    api("title with a C1 control", "POST", "/v1/approvals", broken(approval(), title="a\x85b"), says="U+0085"),
    api("title with a lone surrogate", "POST", "/v1/approvals", raw=b'{"kind": "purchase", "title": "a\\ud800b"}', says="body.title"),
    api("title is a list", "POST", "/v1/approvals", broken(approval(), title=["Desk"]), says="body.title"),
    api("description with a bell", "POST", "/v1/approvals", broken(approval(), description="ring\x07"), says="body.description: may hold line breaks"),
    api("description of 4,001 characters", "POST", "/v1/approvals", broken(approval(), description="d" * 4_001), says="body.description"),
    api("amount_minor true", "POST", "/v1/approvals", broken(approval(), amount__amount_minor=True), says="body.amount.amount_minor: Input should be a valid integer"),
    api("amount_minor a string", "POST", "/v1/approvals", broken(approval(), amount__amount_minor="150000"), says="body.amount.amount_minor"),
    api("amount_minor a float", "POST", "/v1/approvals", broken(approval(), amount__amount_minor=1.5), says="not a float"),
    api("amount_minor negative", "POST", "/v1/approvals", broken(approval(), amount__amount_minor=-1), says="greater than or equal to 0"),
    api("amount_minor huge", "POST", "/v1/approvals", broken(approval(), amount__amount_minor=10**30), says="body.amount.amount_minor"),
    api("amount_minor over the limit", "POST", "/v1/approvals", broken(approval(), amount__amount_minor=10**13 + 1), says="less than or equal"),
    api("currency in lower case", "POST", "/v1/approvals", broken(approval(), amount__currency="eur"), says="ISO 4217"),
    api("currency a number", "POST", "/v1/approvals", broken(approval(), amount__currency=978), says="body.amount.currency"),
    api("currency missing", "POST", "/v1/approvals", broken(approval(), amount__currency=DROP), says="body.amount.currency: Field required"),
    api("amount with an unknown field", "POST", "/v1/approvals", broken(approval(), amount__cents=5), says="body.amount.cents: Extra inputs are not permitted"),
    api("amount is a number", "POST", "/v1/approvals", broken(approval(), amount=890), says="body.amount"),
    api("request_id is the gateway's", "POST", "/v1/approvals", broken(approval(), request_id="mine"), says="body.request_id: Extra inputs are not permitted"),
    api("requester is the caller", "POST", "/v1/approvals", broken(approval(), requester="alice"), says="body.requester"),
    api("unknown policy", "POST", "/v1/approvals", broken(approval(), policy="nope"), says="known: large-orders, purchases, quick-escalation, vacation-requests"),
    api("policy that does not apply", "POST", "/v1/approvals", broken(approval(), policy="vacation-requests"), says="governs kinds"),
    api("policy name with a quote", "POST", "/v1/approvals", broken(approval(), policy="x' OR '1'='1"), says="body.policy"),
    api("no policy for the kind", "POST", "/v1/approvals", broken(approval(), kind="spaceship"), says="no ApprovalPolicy governs kind 'spaceship'"),
    api("context value a number", "POST", "/v1/approvals", broken(approval(), context={"items": 3}), says="body.context.items"),
    api("context value with a line break", "POST", "/v1/approvals", broken(approval(), context={"note": "a\nb"}), says="body.context.note: must be a single line"),
    api("context name with a tab", "POST", "/v1/approvals", broken(approval(), context={"a\tb": "x"}), says="(key)"),
    api("context of 51 entries", "POST", "/v1/approvals", broken(approval(), context={str(n): "x" for n in range(51)}), says="body.context"),
    api("Idempotency-Key with a space", "POST", "/v1/approvals", approval(), headers={"Idempotency-Key": "a b"}, says="Idempotency-Key"),
    api("Idempotency-Key of 256 characters", "POST", "/v1/approvals", approval(), headers={"Idempotency-Key": "k" * 256}, says="Idempotency-Key"),
    api("Idempotency-Key reused for another body", "POST", "/v1/approvals", broken(approval(), title="Another desk"), headers={"Idempotency-Key": "{approval-key}"}, says="was already used"),
    # -- decisions ----------------------------------------------------------------------
    api("approve an unknown request", "POST", "/v1/approvals/req-nothing/approve", status=404, says="no approval request 'req-nothing'", user="alice"),
    api("approve a 10,000-character id", "POST", f"/v1/approvals/{LONG_ID}/approve", status=404, says="(10000 characters)", user="alice"),
    api("approve a path-traversal id", "POST", "/v1/approvals/..%2F..%2Fetc%2Fpasswd/approve", status=404, says="", user="alice"),
    api("approve an id with a line break", "POST", "/v1/approvals/req%0Ax/approve", status=404, says="no approval request 'req\\nx'", user="alice"),
    api("approve a unicode id", "POST", "/v1/approvals/r%C3%A9q/approve", status=404, says="no approval request", user="alice"),
    api("approve with a numeric reason", "POST", "/v1/approvals/{request}/approve", {"reason": 5}, says="body.reason", user="alice"),
    api("approve with a verdict field", "POST", "/v1/approvals/{request}/approve", {"verdict": "reject"}, says="body.verdict: Extra inputs", user="alice"),
    api("approve with an escape in the reason", "POST", "/v1/approvals/{request}/approve", {"reason": "ok\x1b[2J"}, says="body.reason", user="alice"),
    api("approve as someone not asked", "POST", "/v1/approvals/{request}/approve", status=403, says="shop may not decide", user="shop"),
    api("approve one's own request", "POST", "/v1/approvals/{request}/approve", status=403, says="dave may not decide", user="dave"),
    api("reject without a body", "POST", "/v1/approvals/{request}/reject", says="body", user="alice"),
    api("reject with no reason", "POST", "/v1/approvals/{request}/reject", {}, says="a rejection needs a reason", user="alice"),
    api("reject with a null reason", "POST", "/v1/approvals/{request}/reject", {"reason": None}, says="a rejection needs a reason", user="alice"),
    api("reject with an empty reason", "POST", "/v1/approvals/{request}/reject", {"reason": ""}, says="body.reason", user="alice"),
    api("reject with a blank reason", "POST", "/v1/approvals/{request}/reject", {"reason": " \n "}, says="not blank space", user="alice"),
    api("reject with a numeric reason", "POST", "/v1/approvals/{request}/reject", {"reason": 42}, says="body.reason", user="alice"),
    api("reject with a reason of 2,001 characters", "POST", "/v1/approvals/{request}/reject", {"reason": "r" * 2001}, says="body.reason", user="alice"),
    api("reject with a NUL in the reason", "POST", "/v1/approvals/{request}/reject", {"reason": "no\x00"}, says="U+0000", user="alice"),
    api("read a request of someone else", "GET", "/v1/approvals/{request}", status=403, says="neither requester nor approver", user="shop"),
    api("read a 10,000-character request id", "GET", f"/v1/approvals/{LONG_ID}", status=404, says="(10000 characters)"),
    # -- GET /v1/approvals --------------------------------------------------------------
    api("unknown status filter", "GET", "/v1/approvals?status=sleeping", says="status 'sleeping' is not one of"),
    api("policy filter with a quote", "GET", "/v1/approvals?policy=x%27%20OR%20%271%27%3D%271", says="policy"),
    api("approver filter with a quote", "GET", "/v1/approvals?approver=a%27b", says="approver"),
    api("limit zero", "GET", "/v1/approvals?limit=0", says="query.limit"),
    api("limit over 500", "GET", "/v1/approvals?limit=501", says="query.limit"),
    api("limit not a number", "GET", "/v1/approvals?limit=ten", says="query.limit"),
    api("limit a boolean", "GET", "/v1/approvals?limit=true", says="query.limit"),
    # -- POST /v1/orders ----------------------------------------------------------------
    api("order without Idempotency-Key", "POST", "/v1/orders", order("bad-nokey"), user="shop", says="Idempotency-Key"),
    api("order of nothing", "POST", "/v1/orders", {}, user="shop", headers=KEY, says="body.order_id: Field required"),
    api("quantity a string", "POST", "/v1/orders", broken(order("bad-q1"), items__0__quantity="2"), user="shop", headers=KEY, says="body.items.0.quantity"),
    api("unit price a string", "POST", "/v1/orders", broken(order("bad-q2"), items__0__unit_price__amount_minor="1999"), user="shop", headers=KEY, says="body.items.0.unit_price.amount_minor"),
    api("quantity true", "POST", "/v1/orders", broken(order("bad-q3"), items__0__quantity=True), user="shop", headers=KEY, says="body.items.0.quantity"),
    api("quantity zero", "POST", "/v1/orders", broken(order("bad-q4"), items__0__quantity=0), user="shop", headers=KEY, says="greater than or equal to 1"),
    api("quantity negative", "POST", "/v1/orders", broken(order("bad-q5"), items__0__quantity=-3), user="shop", headers=KEY, says="body.items.0.quantity"),
    api("quantity over 1,000", "POST", "/v1/orders", broken(order("bad-q6"), items__0__quantity=1001), user="shop", headers=KEY, says="less than or equal to 1000"),
    api("quantity a float", "POST", "/v1/orders", broken(order("bad-q7"), items__0__quantity=1.0), user="shop", headers=KEY, says="body.items.0.quantity"),
    api("unit price zero", "POST", "/v1/orders", broken(order("bad-p1"), items__0__unit_price__amount_minor=0), user="shop", headers=KEY, says="more than zero"),
    api("unit price negative", "POST", "/v1/orders", broken(order("bad-p2"), items__0__unit_price__amount_minor=-100), user="shop", headers=KEY, says="unit_price.amount_minor"),
    api("unit price huge", "POST", "/v1/orders", broken(order("bad-p3"), items__0__unit_price__amount_minor=10**20), user="shop", headers=KEY, says="unit_price.amount_minor"),
    api("total over the limit", "POST", "/v1/orders", broken(order("bad-p4"), items=items(100, amount_minor=10**13)), user="shop", headers=KEY, says="total"),
    api("two currencies", "POST", "/v1/orders", broken(order("bad-p5"), items=[*items(1), *items(2, currency="USD")[1:]]), user="shop", headers=KEY, says="one currency"),
    api("a SKU twice", "POST", "/v1/orders", broken(order("bad-p6"), items=items(1) * 2), user="shop", headers=KEY, says="SKU-0"),
    api("SKU in lower case", "POST", "/v1/orders", broken(order("bad-p7"), items__0__sku="widget-1"), user="shop", headers=KEY, says="body.items.0.sku"),
    api("no items", "POST", "/v1/orders", broken(order("bad-p8"), items=[]), user="shop", headers=KEY, says="body.items"),
    api("101 items", "POST", "/v1/orders", broken(order("bad-p9"), items=items(101)), user="shop", headers=KEY, says="body.items"),
    api("order id of 10,000 characters", "POST", "/v1/orders", order(LONG_ID), user="shop", headers=KEY, says="body.order_id"),
    api("order id with path traversal", "POST", "/v1/orders", order("../../etc/passwd"), user="shop", headers=KEY, says="body.order_id"),
    api("order id with a line break", "POST", "/v1/orders", order("bad\nid"), user="shop", headers=KEY, says="body.order_id"),
    api("order id with unicode", "POST", "/v1/orders", order("bestellung-ä"), user="shop", headers=KEY, says="body.order_id"),
    api("e-mail that is not one", "POST", "/v1/orders", broken(order("bad-e1"), customer_email="nobody"), user="shop", headers=KEY, says="body.customer_email"),
    api("e-mail with NUL", "POST", "/v1/orders", broken(order("bad-e2"), customer_email="a@b.c\x00"), user="shop", headers=KEY, says="body.customer_email: must be a single line"),
    api("customer id with a line break", "POST", "/v1/orders", broken(order("bad-e3"), customer_id="c\n9"), user="shop", headers=KEY, says="body.customer_id: must be a single line"),
    api("address line with a line break", "POST", "/v1/orders", broken(order("bad-a1"), shipping_address__line1="1 Main St\nBCC: x"), user="shop", headers=KEY, says="body.shipping_address.line1"),
    api("name with an escape sequence", "POST", "/v1/orders", broken(order("bad-a2"), shipping_address__name="\x1b]0;x\x07"), user="shop", headers=KEY, says="body.shipping_address.name"),
    api("country spelled out", "POST", "/v1/orders", broken(order("bad-a3"), shipping_address__country="Germany"), user="shop", headers=KEY, says="body.shipping_address.country"),
    api("address missing", "POST", "/v1/orders", broken(order("bad-a4"), shipping_address=DROP), user="shop", headers=KEY, says="body.shipping_address: Field required"),
    api("address with an unknown field", "POST", "/v1/orders", broken(order("bad-a5"), shipping_address__floor=3), user="shop", headers=KEY, says="body.shipping_address.floor"),
    api("payment token without tok_", "POST", "/v1/orders", broken(order("bad-t1"), payment_token="visa"), user="shop", headers=KEY, says="body.payment_token"),
    api("order with an unknown field", "POST", "/v1/orders", broken(order("bad-t2"), discount=50), user="shop", headers=KEY, says="body.discount: Extra inputs are not permitted"),
    api("order id placed before, other key", "POST", "/v1/orders", "{order-body}", status=409, user="shop", headers={"Idempotency-Key": "another-key"}, says="already placed"),
    api("key reused for another order", "POST", "/v1/orders", order("bad-other"), user="shop", headers={"Idempotency-Key": "{key}"}, says="was already used"),
    # -- orders by id ---------------------------------------------------------------------
    api("read an unknown order", "GET", "/v1/orders/nothing-here", status=404, says="no order 'nothing-here'", user="shop"),
    api("read a 10,000-character order id", "GET", f"/v1/orders/{LONG_ID}", status=404, says="(10000 characters)", user="shop"),
    api("read an order with a NUL in its id", "GET", "/v1/orders/a%00b", status=404, says="no order 'a\\x00b'", user="shop"),
    api("cancel an unknown order", "DELETE", "/v1/orders/nothing-here", status=404, says="no order", user="shop"),
    api("cancel a finished order", "DELETE", "/v1/orders/{order}", status=409, says="nothing to cancel", user="shop"),
    api("cancel someone else's order", "DELETE", "/v1/orders/{order}", status=403, says="neither placed", user="dave"),
    api("resolve a finished order", "POST", "/v1/orders/{order}/resolve", {"action": "mark_resolved", "note": "done by hand"}, status=409, says="only an order that needs attention", user="carol"),
    api("resolve as a non-admin", "POST", "/v1/orders/{order}/resolve", {"action": "mark_resolved", "note": "done"}, status=403, says="muster-admins", user="shop"),
    api("resolve with an unknown action", "POST", "/v1/orders/{order}/resolve", {"action": "refund"}, says="body.action", user="carol"),
    api("resolve with a NUL in the note", "POST", "/v1/orders/{order}/resolve", {"action": "mark_resolved", "note": "x\x00y"}, says="body.note", user="carol"),
    api("resolve with an operator field", "POST", "/v1/orders/{order}/resolve", {"action": "mark_resolved", "operator": "alice"}, says="body.operator", user="carol"),
    api("resolve an unknown order", "POST", "/v1/orders/nothing-here/resolve", {"action": "mark_resolved", "note": "done"}, status=404, says="no order", user="carol"),
    # -- routes and methods -------------------------------------------------------------
    api("a method the route does not have", "PUT", "/v1/orders", order("bad-m1"), status=405, says="allowed: POST", user="shop"),
    api("POST to a request", "POST", "/v1/approvals/{request}", status=405, says="allowed: GET"),
    api("no such route", "GET", "/v1/nothing", status=404, says="the API is under /v1"),
    api("a trailing slash", "POST", "/v1/orders/", order("bad-m2"), status=404, says="nothing at", user="shop", headers=KEY),
]  # fmt: skip


@dataclass(frozen=True)
class WorkflowCase:
    """A workflow started through the ``temporal`` CLI with raw JSON inputs (one per
    ``--input``); it must fail at once with ``InvalidWorkflowInput`` saying ``says`` (or
    the CLI itself refuses, and no workflow exists)."""

    name: str
    workflow: str
    task_queue: str
    inputs: tuple[str, ...]
    says: str
    flags: tuple[str, ...] = ()
    cli_refuses: bool = False


def wf(name: str, workflow: str, queue: str, inputs: tuple[str, ...], says: str,
       **more: Any) -> WorkflowCase:  # fmt: skip
    """A :class:`WorkflowCase` on one line."""
    return WorkflowCase(name, workflow, queue, inputs, says, **more)


APPROVAL_INPUT = '{"request_id": "raw-1", "kind": "purchase", "requester": "dave", "title": "Desk", "policy": "purchases"}'  # fmt: skip
ORDER_INPUT = '{"order_id": "raw-1", "customer_id": "c", "customer_email": "c@example.com", "items": [{"sku": "WIDGET-1", "quantity": QTY, "unit_price": {"amount_minor": 100, "currency": "EUR"}}], "shipping_address": {"name": "A", "line1": "B", "city": "C", "postal_code": "10115", "country": "DE"}, "payment_token": "tok_visa"}'  # fmt: skip
A, F, S, C = "muster-approval", "muster-fulfillment", "muster-scheduling", "muster-canary"

WORKFLOWS: list[WorkflowCase] = [
    wf("Approval without input", "Approval", A, (), "it got 0 arguments, it takes 1"),
    wf("Approval given a string", "Approval", A, ('"please approve"',), "Input should be an object"),
    wf("Approval given an empty object", "Approval", A, ("{}",), "request_id: Field required"),
    wf("Approval with an amount as a string", "Approval", A, (APPROVAL_INPUT[:-1] + ', "amount": {"amount_minor": "5", "currency": "EUR"}}',), "amount.amount_minor: Input should be a valid integer"),
    wf("Approval with an unknown field", "Approval", A, (APPROVAL_INPUT[:-1] + ', "approved": true}',), "approved: Extra inputs are not permitted"),
    wf("Approval given two inputs", "Approval", A, (APPROVAL_INPUT, APPROVAL_INPUT), "it got 2 arguments, it takes 1"),
    wf("Approval in binary/plain", "Approval", A, ("yes",), "argument 0 is bytes", flags=("--input-meta", "encoding=binary/plain")),
    wf("Approval with input that is not JSON", "Approval", A, ("{not json",), "", cli_refuses=True),
    wf("OrderFulfillment without input", "OrderFulfillment", F, (), "it got 0 arguments"),
    wf("OrderFulfillment given null", "OrderFulfillment", F, ("null",), "Input should be an object"),
    wf("OrderFulfillment given an empty object", "OrderFulfillment", F, ("{}",), "order: Field required"),
    wf("OrderFulfillment with a quantity as a string", "OrderFulfillment", F, ('{"order": ' + ORDER_INPUT.replace("QTY", '"2"') + "}",), "order.items.0.quantity: Input should be a valid integer"),
    wf("OrderFulfillment with a quantity of zero", "OrderFulfillment", F, ('{"order": ' + ORDER_INPUT.replace("QTY", "0") + "}",), "greater than or equal to 1"),
    wf("OrderFulfillment with an unknown field", "OrderFulfillment", F, ('{"order": ' + ORDER_INPUT.replace("QTY", "1") + ', "rush": true}',), "rush: Extra inputs are not permitted"),
    wf("OrderFulfillment given the order bare", "OrderFulfillment", F, (ORDER_INPUT.replace("QTY", "1"),), "order: Field required"),
    wf("OrderFulfillment given three inputs", "OrderFulfillment", F, ("{}", "{}", "{}"), "it got 3 arguments"),
    wf("DailyReport with days_back a string", "DailyReport", S, ('{"days_back": "1"}',), "days_back: Input should be a valid integer"),
    wf("DailyReport looking back 1,000 days", "DailyReport", S, ('{"days_back": 1000}',), "days_back: Input should be less than or equal to 366"),
    wf("DailyReport given a list", "DailyReport", S, ("[1, 2]",), "DailyReport"),
    wf("DailyReport given two inputs", "DailyReport", S, ("{}", "{}"), "it got 2 arguments, it takes 0 to 1"),
    wf("DataSync with a batch of zero", "DataSync", S, ('{"batch_size": 0}',), "batch_size: Input should be greater than or equal to 1"),
    wf("DataSync with a boolean batch", "DataSync", S, ('{"batch_size": true}',), "batch_size: Input should be a valid integer"),
    wf("DataSync with an unknown field", "DataSync", S, ('{"since": 5}',), "since: Extra inputs are not permitted"),
    wf("HealthCheck with services a string", "HealthCheck", S, ('{"services": "payment"}',), "services: Input should be a valid array"),
    wf("HealthCheck with a numeric service", "HealthCheck", S, ('{"services": [1]}',), "services.0: Input should be a valid string"),
    wf("ApprovalReminders without input", "ApprovalReminders", S, (), "it got 0 arguments, it takes 1"),
    wf("ApprovalReminders for a path", "ApprovalReminders", S, ('{"policy": "../etc"}',), "policy: String should match pattern"),
    wf("ApprovalReminders with a numeric policy", "ApprovalReminders", S, ('{"policy": 5}',), "policy: Input should be a valid string"),
    wf("CanaryPing without input", "CanaryPing", C, (), "it got 0 arguments"),
    wf("CanaryPing with an empty message", "CanaryPing", C, ('{"message": ""}',), "message: String should have at least 1 character"),
    wf("CanaryPing with a numeric message", "CanaryPing", C, ('{"message": 5}',), "message: Input should be a valid string"),
]  # fmt: skip


@dataclass(frozen=True)
class CliCase:
    """``muster-orders`` with arguments (``{file}`` is a file holding ``content``); it must
    exit with ``exit`` and say ``says`` on stderr."""

    name: str
    argv: tuple[str, ...]
    content: str | None
    exit: int
    says: str


def cli(name: str, argv: tuple[str, ...], content: str | None, exit: int, says: str) -> CliCase:
    """A :class:`CliCase` on one line."""
    return CliCase(name, argv, content, exit, says)


CLI: list[CliCase] = [
    cli("place a file that is not JSON", ("place", "{file}"), "{order", 2, "invalid order"),
    cli("place an empty file", ("place", "{file}"), "", 2, "invalid order"),
    cli("place a quantity as a string", ("place", "{file}"), ORDER_INPUT.replace("QTY", '"2"').replace("raw-1", "cli-bad-1"), 2, "items.0.quantity"),
    cli("place an order with an unknown field", ("place", "{file}"), ORDER_INPUT.replace("QTY", "1").replace("raw-1", "cli-bad-2")[:-1] + ', "rush": true}', 2, "rush"),
    cli("place an address with a line break", ("place", "{file}"), ORDER_INPUT.replace("QTY", "1").replace("raw-1", "cli-bad-3").replace('"line1": "B"', '"line1": "B\\nC"'), 2, "must be a single line"),
    cli("place a list of orders", ("place", "{file}"), "[]", 2, "invalid order"),
    cli("place a file that is not there", ("place", "/nonexistent/order.json"), None, 2, "No such file"),
]  # fmt: skip

COUNT = len(API) + len(WORKFLOWS) + len(CLI)
"""How many malformed inputs the table holds."""
