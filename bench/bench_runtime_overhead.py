"""What Muster's runtime costs: a bare SDK worker versus one built the Muster way.

Both variants run the same four-activity workflow on the same dev server, one after the
other in one run. "bare" is the SDK with its defaults; "muster" adds everything a Muster
worker carries: the pydantic data converter, the OpenTelemetry tracing plugin with a
real SDK tracer provider, the Core metrics buffer drained into the /metrics store, and
Muster's sandbox runner. Prints throughput and end-to-end latency percentiles, and the
muster/bare throughput ratio.

Run: ``make bench`` or ``python -m bench.bench_runtime_overhead [--workflows N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.harness import REPO, CountingExporter, Result, compile_sources, drive, print_table
from bench.workloads import BenchFourSteps, BenchInput, step
from muster_dev.process import free_port
from muster_dev.temporal import DevServer, DevServerConfig
from muster_runtime.client import connect
from muster_runtime.metrics import MetricsHub
from muster_runtime.sandbox import muster_workflow_runner
from muster_runtime.settings import TemporalSettings
from muster_runtime.telemetry import build_resource, setup_tracing


async def run_variant(
    name: str,
    make_client: Callable[[], Awaitable[Client]],
    worker_kwargs: dict[str, Any],
    workflows: int,
    concurrency: int,
) -> Result:
    client = await make_client()
    task_queue = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=task_queue, workflows=[BenchFourSteps], activities=[step],
        **worker_kwargs,
    ):  # fmt: skip
        # Warm up: imports, sandbox, sticky cache.
        await drive(client, "BenchFourSteps", task_queue, 10, concurrency, lambda i: BenchInput(
            request_id=f"w{i}", amount_minor=i))  # fmt: skip
        seconds, latencies = await drive(
            client, "BenchFourSteps", task_queue, workflows, concurrency,
            lambda i: BenchInput(request_id=f"r{i}", amount_minor=i),
        )  # fmt: skip
    return Result(name, workflows, seconds, latencies)


async def main(workflows: int, concurrency: int) -> None:
    compile_sources(REPO / "services", REPO / "bench")
    server = DevServer(DevServerConfig(port=free_port(), ui_port=None))
    server.start()
    try:
        address = server.config.address

        async def bare_client() -> Client:
            return await Client.connect(address, data_converter=pydantic_data_converter)

        exporter = CountingExporter()
        provider = setup_tracing(
            build_resource("muster-bench", "0"),
            extra_processors=[BatchSpanProcessor(exporter)],
            env={},
            set_global=False,
        )
        assert provider is not None
        trace.set_tracer_provider(provider)
        hub = MetricsHub()
        drainer = asyncio.create_task(hub.drain_forever())

        async def muster_client() -> Client:
            return await connect(TemporalSettings(address=address), runtime=hub.runtime)

        bare = await run_variant("bare", bare_client, {}, workflows, concurrency)
        muster = await run_variant(
            "muster", muster_client, {"workflow_runner": muster_workflow_runner()},
            workflows, concurrency,
        )  # fmt: skip
        drainer.cancel()
        provider.force_flush()
        metrics_bytes = len(hub.render())
    finally:
        server.stop()

    print(f"\n{workflows} workflows x 4 activities, concurrency {concurrency}, one dev server\n")
    print_table([bare, muster])
    print(f"\nmuster/bare throughput: {muster.throughput / bare.throughput:.2f}")
    print(f"spans exported by the muster variant: {exporter.spans}")
    print(f"/metrics body after the run: {metrics_bytes} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workflows", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.workflows, args.concurrency))
    from muster_runtime.shutdown import exit_now

    exit_now(0)
