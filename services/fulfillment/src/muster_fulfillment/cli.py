"""``muster-orders``: place, inspect, cancel and resolve orders from a terminal.

Talks to whatever Temporal the ``TEMPORAL_*`` variables name (``muster up`` prints them).
``place --wait`` waits until the order is fulfilled, compensated or needs a person, and
prints one line saying which (``--json``: the whole state); it exits 0 when the order went
through and 1 when it did not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from muster_api.common import text_problems
from muster_api.fulfillment import (
    RESOLVE_UPDATE,
    STATE_QUERY,
    TASK_QUEUE,
    WORKFLOW,
    FulfillmentInput,
    Order,
    OrderState,
    OrderStatus,
    ResolveInput,
    approval_request_id,
    start_attributes,
    workflow_id,
)
from muster_runtime.client import connect, server_went_away
from muster_runtime.settings import SettingsError, TemporalSettings, load_settings
from muster_runtime.shutdown import exit_now


class InvalidOrder(ValueError):
    """An order that validates but holds text it must not (a control character, say)."""


def read_order(path: str) -> Order:
    """An order from a JSON file (``-`` for standard input), validated."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    order = Order.model_validate_json(text)
    problems = text_problems(order)
    if problems:
        where, problem = problems[0]
        raise InvalidOrder(f"{'.'.join(str(p) for p in where)}: {problem}")
    return order


SETTLED = {
    OrderStatus.FULFILLED,
    OrderStatus.COMPENSATED,
    OrderStatus.RESOLVED,
    OrderStatus.NEEDS_ATTENTION,
}
"""Where ``--wait`` stops: the order ended, or it waits for a person."""
WENT_THROUGH = {OrderStatus.FULFILLED, OrderStatus.RESOLVED}
_FAILURE = re.compile(r"^((?:[A-Z][a-z]+)+): (.*)$", re.DOTALL)


def failure_words(failure: str | None) -> str:
    """A saga's failure for people: ``CardDeclined: payment refused (402): the card was
    declined`` becomes ``card declined (payment refused (402): the card was declined)``."""
    if not failure:
        return "no reason recorded"
    found = _FAILURE.match(failure)
    if found is None:
        return failure
    kind = re.sub(r"(?<!^)([A-Z])", r" \1", found.group(1)).lower().replace("sku", "SKU")
    return f"{kind} ({found.group(2)})"


def outcome_line(state: OrderState) -> str:
    """One line: fulfilled / compensated: why / needs attention: why and what to do."""
    head = f"order {state.order_id}"
    if state.status == OrderStatus.FULFILLED:
        tracking = f", tracking number {state.tracking_number}" if state.tracking_number else ""
        return f"{head}: fulfilled ({state.total.display()}{tracking})"
    if state.status == OrderStatus.COMPENSATED:
        return f"{head}: compensated: {failure_words(state.failure)}"
    if state.status == OrderStatus.NEEDS_ATTENTION:
        owed = ", ".join(state.attention.failed_compensations) if state.attention else "?"
        why = failure_words(state.attention.reason if state.attention else state.failure)
        return (
            f"{head}: needs attention: {why}; still owed: {owed} (muster-orders resolve "
            f"{state.order_id} --action retry_compensation|mark_resolved)"
        )
    if state.status == OrderStatus.RESOLVED:
        return f"{head}: resolved by a person: {state.resolution_note or ''}".rstrip(": ")
    return f"{head}: {state.status.value.replace('_', ' ')}"


async def wait_for_outcome(client: Client, order_id: str, poll: float = 0.5) -> OrderState:
    """Query the order until it ended or waits for a person; says so once if it waits for
    an approval (that may take days)."""
    handle = client.get_workflow_handle(workflow_id(order_id))
    told = False
    down_since: float | None = None
    while True:
        try:
            state: OrderState = await handle.query(STATE_QUERY, result_type=OrderState)
        except RPCError as exc:
            # The wait carries on while the Temporal frontend restarts (up to two minutes).
            if not server_went_away(exc):
                raise
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > 120:
                raise
            await asyncio.sleep(poll)
            continue
        down_since = None
        if state.status in SETTLED:
            return state
        if state.status == OrderStatus.AWAITING_APPROVAL and not told:
            print(
                f"order {order_id} awaits approval (request {approval_request_id(order_id)}); "
                "waiting ...",
                file=sys.stderr,
            )
            told = True
        await asyncio.sleep(poll)


async def place(
    client: Client, order: Order, *, wait: bool, as_json: bool = False
) -> tuple[str, int]:
    """Start the order's workflow; with ``wait``, its outcome (a line, or JSON) and exit code."""
    handle = await client.start_workflow(
        WORKFLOW,
        FulfillmentInput(order=order),
        id=workflow_id(order.order_id),
        task_queue=TASK_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=start_attributes(order),
    )
    if not wait:
        placed = f"order {order.order_id} placed (workflow {handle.id}, run {handle.result_run_id})"
        return placed, 0
    state = await wait_for_outcome(client, order.order_id)
    code = 0 if state.status in WENT_THROUGH else 1
    return (state.model_dump_json(indent=2) if as_json else outcome_line(state)), code


async def status(client: Client, order_id: str) -> str:
    """The order's current state (query)."""
    handle = client.get_workflow_handle(workflow_id(order_id))
    state: OrderState = await handle.query(STATE_QUERY, result_type=OrderState)
    return state.model_dump_json(indent=2)


async def list_orders(client: Client, query: str, limit: int) -> str:
    """Orders matching a visibility query, newest first."""
    full = "MusterPattern = 'fulfillment'" + (f" AND ({query})" if query else "")
    lines = []
    async for execution in client.list_workflows(full, limit=limit):
        attrs = execution.typed_search_attributes
        status_value = next((p.value for p in attrs if p.key.name == "MusterStatus"), "?")
        running = execution.status == WorkflowExecutionStatus.RUNNING
        lines.append(f"{execution.id:<40} {status_value:<18} {'running' if running else 'closed'}")
    return "\n".join(lines) or "no orders match"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="muster-orders", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("place", help="place an order from a JSON file (- for stdin)")
    p.add_argument("file")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until the order is fulfilled, compensated or needs a person; print one line "
        "(exit 0 when it went through, 1 when not)",
    )
    p.add_argument("--json", action="store_true", help="with --wait: print the whole state")
    s = sub.add_parser("status", help="show an order's state and step history")
    s.add_argument("order_id")
    c = sub.add_parser("cancel", help="cancel an order (compensates unless already shipped)")
    c.add_argument("order_id")
    r = sub.add_parser("resolve", help="resolve an order that needs attention")
    r.add_argument("order_id")
    r.add_argument("--action", choices=["retry_compensation", "mark_resolved"], required=True)
    r.add_argument("--operator", required=True, help="who you are")
    r.add_argument("--note", default="", help="what was done (needed for mark_resolved)")
    ls = sub.add_parser(
        "list", help="list orders (e.g. --query \"MusterStatus = 'needs_attention'\")"
    )
    ls.add_argument("--query", default="")
    ls.add_argument("--limit", type=int, default=50)
    return parser


async def run(args: argparse.Namespace, temporal: TemporalSettings) -> str | tuple[str, int]:
    """Execute one command: what to print (and, for ``place``, the exit code)."""
    client = await connect(temporal, tracing=False)
    if args.command == "place":
        return await place(client, read_order(args.file), wait=args.wait, as_json=args.json)
    if args.command == "status":
        return await status(client, args.order_id)
    if args.command == "cancel":
        await client.get_workflow_handle(workflow_id(args.order_id)).cancel()
        return f"cancellation of order {args.order_id} requested"
    if args.command == "resolve":
        resolution = ResolveInput(action=args.action, operator=args.operator, note=args.note)
        state: OrderState = await client.get_workflow_handle(
            workflow_id(args.order_id)
        ).execute_update(RESOLVE_UPDATE, resolution, result_type=OrderState)
        return state.model_dump_json(indent=2)
    return await list_orders(client, args.query, args.limit)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``muster-orders``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "place" and args.json and not args.wait:
        parser.error("--json goes with --wait (it prints the order's state once it settled)")
    try:
        temporal = load_settings(TemporalSettings)
    except SettingsError as exc:
        for line in exc.problems:
            print(f"muster-orders: configuration error: {line}", file=sys.stderr)
        exit_now(2)
    code = 0
    try:
        done = asyncio.run(run(args, temporal))
        text, code = done if isinstance(done, tuple) else (done, 0)
        print(text)
    except (ValidationError, json.JSONDecodeError, InvalidOrder) as exc:
        print(f"muster-orders: invalid order: {exc}", file=sys.stderr)
        exit_now(2)
    except OSError as exc:
        print(f"muster-orders: {exc}", file=sys.stderr)
        exit_now(2)
    except WorkflowAlreadyStartedError:
        print("muster-orders: an order with this id was already placed", file=sys.stderr)
        exit_now(1)
    except WorkflowUpdateFailedError as exc:
        print(f"muster-orders: refused: {exc.cause}", file=sys.stderr)
        exit_now(1)
    except RPCError as exc:
        print(f"muster-orders: Temporal said: {exc.message}", file=sys.stderr)
        exit_now(1)
    exit_now(code)
