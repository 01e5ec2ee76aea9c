"""One worker process of ``bench_fulfillment``: a variant's worker on its task queue, as a
process of its own (so one or two of them can run, as deployed), until SIGTERM.

Variants:

bare       a workflow of four no-op activities, SDK defaults, no Muster machinery;
machinery  the same workflow with Muster's machinery: pydantic converter, tracing plugin
           with a real tracer provider (its exporter only counts), Core metrics buffer
           drained into the /metrics store, Muster's sandbox runner;
stub       ``OrderFulfillment`` with all of that, the backends stubbed in-process;
full       the same with the real reference backends over HTTP (``--backends``).

Run by the bench: ``python -m bench.saga_worker --address HOST:PORT --variant stub
--task-queue Q --ready-file F``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.harness import CountingExporter
from bench.workloads import BenchFourSteps, step
from muster_fulfillment.activities import Backends, FulfillmentActivities
from muster_fulfillment.workflows import OrderFulfillment
from muster_runtime.client import connect
from muster_runtime.metrics import MetricsHub
from muster_runtime.sandbox import muster_workflow_runner
from muster_runtime.settings import TemporalSettings
from muster_runtime.shutdown import exit_now
from muster_runtime.telemetry import build_resource, setup_tracing

VARIANTS = ("bare", "machinery", "stub", "full")


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


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kwargs: dict[str, Any]
    if args.variant == "bare":
        client = await Client.connect(args.address, data_converter=pydantic_data_converter)
        kwargs = {"workflows": [BenchFourSteps], "activities": [step]}
    else:
        provider = setup_tracing(
            build_resource("muster-bench", "0"),
            extra_processors=[BatchSpanProcessor(CountingExporter())],
            env={},
            set_global=False,
        )
        assert provider is not None
        trace.set_tracer_provider(provider)
        hub = MetricsHub()
        drainer = asyncio.create_task(hub.drain_forever())
        client = await connect(TemporalSettings(address=args.address), runtime=hub.runtime)
        runner = muster_workflow_runner()
        if args.variant == "machinery":
            kwargs = {"workflows": [BenchFourSteps], "activities": [step]}
        else:
            backends: Backends = (
                StubBackends()
                if args.variant == "stub"
                else Backends(httpx.AsyncClient(timeout=10), json.loads(args.backends))
            )
            activities = FulfillmentActivities(backends, {}, "large-orders")
            kwargs = {"workflows": [OrderFulfillment], "activities": activities.all()}
        kwargs["workflow_runner"] = runner
    async with Worker(client, task_queue=args.task_queue, **kwargs):
        await asyncio.to_thread(Path(args.ready_file).write_text, "ready\n")
        await stop.wait()
    if args.variant != "bare":
        drainer.cancel()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--backends", default="{}", help="JSON: backend name → base URL")
    asyncio.run(serve(parser.parse_args(argv)))
    exit_now(0)


if __name__ == "__main__":
    main()
