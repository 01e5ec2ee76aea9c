"""``muster-orders``: place, inspect, cancel and resolve orders from a terminal.

Talks to whatever Temporal the ``TEMPORAL_*`` variables name (``muster up`` prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from muster_api.fulfillment import (
    RESOLVE_UPDATE,
    STATE_QUERY,
    TASK_QUEUE,
    WORKFLOW,
    FulfillmentInput,
    Order,
    OrderResult,
    OrderState,
    ResolveInput,
    start_attributes,
    workflow_id,
)
from muster_runtime.client import connect
from muster_runtime.settings import SettingsError, TemporalSettings, load_settings
from muster_runtime.shutdown import exit_now


def read_order(path: str) -> Order:
    """An order from a JSON file (``-`` for standard input), validated."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return Order.model_validate_json(text)


async def place(client: Client, order: Order, *, wait: bool) -> str:
    """Start the order's workflow; optionally wait for its result."""
    handle = await client.start_workflow(
        WORKFLOW,
        FulfillmentInput(order=order),
        id=workflow_id(order.order_id),
        task_queue=TASK_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=start_attributes(order),
        result_type=OrderResult,
    )
    if not wait:
        return f"order {order.order_id} placed (workflow {handle.id}, run {handle.result_run_id})"
    result: OrderResult = await handle.result()
    return result.model_dump_json(indent=2)


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
    p.add_argument("--wait", action="store_true", help="wait for the outcome and print it")
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


async def run(args: argparse.Namespace, temporal: TemporalSettings) -> str:
    """Execute one command."""
    client = await connect(temporal, tracing=False)
    if args.command == "place":
        return await place(client, read_order(args.file), wait=args.wait)
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
    args = build_parser().parse_args(argv)
    try:
        temporal = load_settings(TemporalSettings)
    except SettingsError as exc:
        for line in exc.problems:
            print(f"muster-orders: configuration error: {line}", file=sys.stderr)
        exit_now(2)
    try:
        print(asyncio.run(run(args, temporal)))
    except (ValidationError, json.JSONDecodeError) as exc:
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
    exit_now(0)
