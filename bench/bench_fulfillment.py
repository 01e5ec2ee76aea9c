"""What the order saga costs, in one run on one dev server with the same worker settings:

(a) bare     a workflow of four no-op activities, SDK defaults, no Muster machinery;
(a')         the same workflow with Muster's machinery (to split the cost in two);
(b) stubbed  ``OrderFulfillment`` with every Muster part on (saga helper, search attributes,
             pydantic converter, tracing plugin with a real tracer provider, Core metrics
             buffer, Muster's sandbox runner) and the backends stubbed in-process;
(c) full     the same with the real reference backends over HTTP (SQLite, idempotency).

Prints throughput and p50/p99 end-to-end latency per variant and the (b)/(a) ratio; the
target is (b) at 90% of (a) or better. Ratios are given twice: from the merged totals, and
as the median of the ratios taken within each round. The second is the one the target is
judged by: a host shared with other work changes speed from minute to minute, the variants
of one round ran seconds apart under the same conditions, and the merged totals weigh the
slow minutes most.

Run: ``make bench`` or ``python -m bench.bench_fulfillment [--workflows N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Client
from temporalio.contrib.opentelemetry import ReplaySafeTracerProvider
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.harness import (
    REPO,
    BenchTemporal,
    CountingExporter,
    Result,
    Run,
    add_temporal_option,
    bench_temporal,
    compile_sources,
    describe_ratios,
    drive,
    print_side_by_side,
    print_table,
    rotate,
    temporal_kinds,
)
from bench.workloads import BenchFourSteps, BenchInput, step
from muster_api.common import Money
from muster_api.fulfillment import (
    WORKFLOW,
    Address,
    FulfillmentInput,
    Order,
    OrderItem,
    start_attributes,
)
from muster_fulfillment.activities import Backends, FulfillmentActivities
from muster_fulfillment.workflows import OrderFulfillment
from muster_runtime.client import connect
from muster_runtime.metrics import MetricsHub
from muster_runtime.sandbox import muster_workflow_runner
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings
from muster_runtime.telemetry import build_resource, setup_tracing
from tests.fulfillment_support import start_backends

BARE = "(a) bare, 4 activities"
MACHINERY = "(a') 4 activities, Muster"
STUBBED = "(b) saga, stub backends"
FULL = "(c) saga, real backends"
TARGET = 0.90


class StubBackends(Backends):
    """Answers like the reference backends, in-process, without HTTP or storage."""

    def __init__(self) -> None:
        super().__init__(httpx.AsyncClient(), {})

    async def post(self, backend: str, path: str, key: str, body: dict[str, Any]) -> Any:
        answers: dict[str, dict[str, Any]] = {
            "/reservations": {"reservation_id": f"res_{key}"},
            "/charges": {"charge_id": f"ch_{key}", "amount": body.get("amount")},
            "/shipments": {"shipment_id": f"shp_{key}", "tracking_number": "MU1"},
            "/messages": {"message_id": f"msg_{key}"},
            "/reservations/release": {"released": True},
            "/refunds": {"refunded": True},
            "/shipments/cancel": {"cancelled": True},
        }
        return answers[path]


def bench_order(i: int) -> FulfillmentInput:
    return FulfillmentInput(
        order=Order(
            order_id=f"b-{uuid.uuid4().hex[:12]}",
            customer_id=f"c{i}",
            customer_email="bench@example.com",
            items=[
                OrderItem(
                    sku="WIDGET-1", quantity=1, unit_price=Money(amount_minor=500, currency="EUR")
                )
            ],
            shipping_address=Address(
                name="B", line1="1 Road", city="Berlin", postal_code="10115", country="DE"
            ),
            payment_token="tok_visa",
        )
    )


async def run_variant(
    name: str,
    client: Client,
    workflow: str,
    worker_kwargs: dict[str, Any],
    argument: Callable[[int], Any],
    workflows: int,
    concurrency: int,
) -> Result:
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    # Orders start the way the CLI and the gateway start them: with their search attributes.
    options = (
        (lambda value: {"search_attributes": start_attributes(value.order)})
        if workflow == WORKFLOW
        else None
    )
    async with Worker(client, task_queue=task_queue, **worker_kwargs):
        await drive(client, workflow, task_queue, 10, concurrency, argument, start_options=options)
        seconds, latencies = await drive(
            client, workflow, task_queue, workflows, concurrency, argument, start_options=options
        )
    return Result(name, workflows, seconds, latencies)


@functools.cache
def process_tracing() -> tuple[ReplaySafeTracerProvider, CountingExporter]:
    """The process's tracer provider, with an exporter that counts spans: set once, as
    OpenTelemetry allows, and shared by the runs on each server."""
    exporter = CountingExporter()
    provider = setup_tracing(
        build_resource("muster-bench", "0"),
        extra_processors=[BatchSpanProcessor(exporter)],
        env={},
        set_global=False,
    )
    assert provider is not None
    trace.set_tracer_provider(provider)
    return provider, exporter


async def main(kind: str, workflows: int, concurrency: int, rounds: int) -> dict[str, str]:
    per_round = max(1, workflows // rounds)
    compile_sources(REPO / "services", REPO / "bench")
    scratch = Path(tempfile.mkdtemp(prefix="muster-bench-"))
    with bench_temporal(kind, scratch) as temporal:
        return await measure(temporal, scratch, per_round, concurrency, rounds)


async def measure(
    temporal: BenchTemporal, scratch: Path, per_round: int, concurrency: int, rounds: int
) -> dict[str, str]:
    backends = start_backends(scratch, {"MUSTER_BACKENDS_INITIAL_STOCK": '{"WIDGET-1": 100000000}'})
    http = httpx.AsyncClient(timeout=10)
    try:
        address = temporal.address
        provider, exporter = process_tracing()
        spans_before = exporter.spans
        hub = MetricsHub()
        drainer = asyncio.create_task(hub.drain_forever())

        async def bare_client() -> Client:
            return await Client.connect(address, data_converter=pydantic_data_converter)

        async def muster_client() -> Client:
            client = await connect(TemporalSettings(address=address), runtime=hub.runtime)
            await ensure_search_attributes(client, "default")
            return client

        stub = FulfillmentActivities(StubBackends(), {}, "large-orders")
        real = FulfillmentActivities(Backends(http, backends.urls()), {}, "large-orders")
        runner = {"workflow_runner": muster_workflow_runner()}
        clients = {"bare": await bare_client(), "muster": await muster_client()}

        def variant(
            name: str, client: str, workflow: str, kwargs: dict[str, Any], arg: Any
        ) -> tuple[str, Run]:
            async def run() -> Result:
                return await run_variant(
                    name, clients[client], workflow, kwargs, arg, per_round, concurrency
                )

            return name, run

        rotation = await rotate(
            [
                variant(BARE, "bare", "BenchFourSteps",
                        {"workflows": [BenchFourSteps], "activities": [step]},
                        lambda i: BenchInput(request_id=f"r{i}", amount_minor=i)),
                variant(MACHINERY, "muster", "BenchFourSteps",
                        {"workflows": [BenchFourSteps], "activities": [step], **runner},
                        lambda i: BenchInput(request_id=f"r{i}", amount_minor=i)),
                variant(STUBBED, "muster", WORKFLOW,
                        {"workflows": [OrderFulfillment], "activities": stub.all(),
                         **runner}, bench_order),
                variant(FULL, "muster", WORKFLOW,
                        {"workflows": [OrderFulfillment], "activities": real.all(),
                         **runner}, bench_order),
            ],
            rounds,
        )  # fmt: skip
        drainer.cancel()
        provider.force_flush()
    finally:
        await http.aclose()
        backends.process.stop()

    bare, machinery, stubbed, full = rotation.merged
    print(
        f"\n{per_round * rounds} workflows per variant in {rounds} rotated rounds, "
        f"concurrency {concurrency}, one {temporal.label}\n"
    )
    print_table(rotation.merged)

    def ratio(numerator: Result, denominator: Result) -> str:
        merged = numerator.throughput / denominator.throughput
        paired = rotation.paired_ratios(numerator.name, denominator.name)
        return f"{merged:.2f} merged; round by round {describe_ratios(paired)}"

    print(f"\n(b)/(a) throughput: {ratio(stubbed, bare)}")
    paired = statistics.median(rotation.paired_ratios(STUBBED, BARE))
    verdict = "met" if paired >= TARGET else "NOT met"
    print(f"  target: (b) at >= {TARGET:.2f} of (a), round by round median: {verdict}")
    print(f"  of which Muster's machinery (a')/(a): {ratio(machinery, bare)}")
    print(f"  and the saga itself (b)/(a'):         {ratio(stubbed, machinery)}")
    print(f"(c)/(b) throughput: {ratio(full, stubbed)}")
    print(f"spans exported: {exporter.spans - spans_before}")
    return {
        "(a) bare wf/s": f"{bare.throughput:.1f}",
        "(a') Muster machinery wf/s": f"{machinery.throughput:.1f}",
        "(b) saga, stubbed wf/s": f"{stubbed.throughput:.1f}",
        "(c) saga + backends wf/s": f"{full.throughput:.1f}",
        "(b)/(a) round median": f"{paired:.2f}",
        "(c) p50 / p99 ms": f"{full.percentile(0.5):.0f} / {full.percentile(0.99):.0f}",
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=600, help="per variant, all rounds")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=12)
    add_temporal_option(parser)
    args = parser.parse_args()
    kinds = temporal_kinds(args.temporal)
    figures: dict[str, dict[str, str]] = {}
    for kind in kinds:
        for name, value in asyncio.run(
            main(kind, args.workflows, args.concurrency, args.rounds)
        ).items():
            figures.setdefault(name, {})[kind] = value
    print_side_by_side(figures, kinds)
    from muster_runtime.shutdown import exit_now

    exit_now(0)
