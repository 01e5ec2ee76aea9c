"""What the order saga costs, as a series over concurrency and worker processes, in one run on
one Temporal with the same worker settings (each variant's workers are processes of their
own, ``bench.saga_worker``):

(a) bare     a workflow of four no-op activities, SDK defaults, no Muster machinery;
(a')         the same workflow with Muster's machinery (to split the cost in two);
(b) stubbed  ``OrderFulfillment`` with every Muster part on (saga helper, search attributes,
             pydantic converter, tracing plugin with a real tracer provider, Core metrics
             buffer, Muster's sandbox runner) and the backends stubbed in-process;
(c) full     the same with the real reference backends over HTTP (SQLite, idempotency).

For each number of worker processes per variant (``--processes``, default 1 and 2) and each
concurrency (``--sizes``, default 5, 10, 20, 50 workflows in flight) the variants run in
rotated rounds; the bench prints throughput and p50/p99 end-to-end latency per variant and
the (b)/(a) ratio. The target is (b) at 90% of (a) or better, judged by the median of the
ratios taken within each round: a host shared with other work changes speed from minute to
minute, the variants of one round ran seconds apart under the same conditions, and merged
totals weigh the slow minutes most. Then each variant runs at 80% of its peak throughput
(the best of the concurrency series) as an open loop, and its p50/p99 end-to-end latency
there is reported.

Run: ``make bench`` or ``python -m bench.bench_fulfillment [--sizes 5,20] [--processes 1]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench import machine, results
from bench.harness import (
    REPO,
    BenchTemporal,
    Result,
    Run,
    add_temporal_option,
    bench_temporal,
    compile_sources,
    describe_ratios,
    drive,
    drive_paced,
    print_table,
    rotate,
    temporal_kinds,
)
from bench.saga_worker import VARIANTS
from bench.workloads import BenchInput
from muster_api.common import Money
from muster_api.fulfillment import (
    WORKFLOW,
    Address,
    FulfillmentInput,
    Order,
    OrderItem,
    start_attributes,
)
from muster_dev.process import ManagedProcess
from muster_runtime.client import connect
from muster_runtime.polling import wait_until
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings
from tests.fulfillment_support import start_backends
from tests.helpers import start_service

NAMES = {
    "bare": "(a) bare, 4 activities",
    "machinery": "(a') 4 activities, Muster",
    "stub": "(b) saga, stub backends",
    "full": "(c) saga, real backends",
}
SIZES = "5,10,20,50"
TARGET = 0.90
PEAK_SHARE = 0.8


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


def four_steps(i: int) -> BenchInput:
    return BenchInput(request_id=f"r{i}", amount_minor=i)


def order_options(value: Any) -> dict[str, Any]:
    # Orders start the way the CLI and the gateway start them: with their search attributes.
    return {"search_attributes": start_attributes(value.order)}


@dataclass
class Pool:
    """One variant's worker processes, all polling one task queue."""

    variant: str
    task_queue: str
    processes: list[ManagedProcess]

    @property
    def workflow(self) -> str:
        return WORKFLOW if self.variant in ("stub", "full") else "BenchFourSteps"

    @property
    def argument(self) -> Callable[[int], Any]:
        return bench_order if self.variant in ("stub", "full") else four_steps

    @property
    def options(self) -> Callable[[Any], dict[str, Any]] | None:
        return order_options if self.variant in ("stub", "full") else None

    def stop(self) -> None:
        for process in self.processes:
            process.stop(grace=20)


def start_pool(
    variant: str, count: int, address: str, scratch: Path, backends: dict[str, str]
) -> Pool:
    task_queue = f"bench-{variant}-{uuid.uuid4().hex[:8]}"
    processes: list[ManagedProcess] = []
    ready_files = []
    for n in range(count):
        marker = scratch / f"{task_queue}-{n}.ready"
        ready_files.append(marker)
        argv = [
            sys.executable, "-m", "bench.saga_worker", "--address", address,
            "--variant", variant, "--task-queue", task_queue,
            "--ready-file", str(marker), "--backends", json.dumps(backends),
        ]  # fmt: skip
        processes.append(
            start_service(
                "bench.saga_worker",
                {"PYTHONPATH": str(REPO)},
                scratch / f"{task_queue}-{n}.log",
                argv=argv,
            )
        )
    pool = Pool(variant, task_queue, processes)

    def ready() -> bool:
        for process in processes:
            if not process.running():
                pool.stop()
                raise RuntimeError(f"a {variant} worker exited:\n{process.tail()}")
        return all(path.exists() for path in ready_files)

    wait_until(ready, what=f"{count} {variant} worker process(es)", timeout=120)
    return pool


async def main(args: argparse.Namespace, kind: str, report: results.Report) -> None:
    compile_sources(REPO / "services", REPO / "bench")
    scratch = Path(tempfile.mkdtemp(prefix="muster-bench-"))
    with bench_temporal(kind, scratch) as temporal:
        run = report.server(kind, temporal.label, await temporal.version())
        await measure(args, temporal, scratch, run, report)


async def measure(
    args: argparse.Namespace,
    temporal: BenchTemporal,
    scratch: Path,
    run: results.ServerRun,
    report: results.Report,
) -> None:
    backends = start_backends(scratch, {"MUSTER_BACKENDS_INITIAL_STOCK": '{"WIDGET-1": 100000000}'})
    try:
        address = temporal.address
        bare = await Client.connect(address, data_converter=pydantic_data_converter)
        muster = await connect(TemporalSettings(address=address))
        await ensure_search_attributes(muster, "default")
        clients = {"bare": bare, "machinery": muster, "stub": muster, "full": muster}
        for processes in args.processes:
            pools = {
                v: start_pool(v, processes, address, scratch, backends.urls())
                for v in args.variants
            }
            try:
                await series(args, temporal, run, report, processes, pools, clients, backends)
            finally:
                for pool in pools.values():
                    pool.stop()
    finally:
        backends.process.stop()


def meter_for(pool: Pool, temporal: BenchTemporal, backends: ManagedProcess) -> machine.CpuMeter:
    parts: dict[str, int | None] = {f"worker {n + 1}": p.pid for n, p in enumerate(pool.processes)}
    parts.update(temporal.pids)
    if pool.variant == "full":
        parts["backends"] = backends.pid
    parts["bench (client)"] = os.getpid()
    return machine.CpuMeter(parts, own="bench (client)")


def merged_split(splits: list[machine.CpuSplit]) -> machine.CpuSplit:
    """Several rounds' CPU as one; every worker process counted as "worker"."""
    seconds: dict[str, float] = {}
    for split in splits:
        for name, used in split.seconds.items():
            key = "worker processes" if name.startswith("worker ") else name
            seconds[key] = seconds.get(key, 0.0) + used
    return machine.CpuSplit(
        seconds, sum(s.units for s in splits), "workflow", sum(s.wall for s in splits)
    )


async def series(
    args: argparse.Namespace,
    temporal: BenchTemporal,
    run: results.ServerRun,
    report: results.Report,
    processes: int,
    pools: dict[str, Pool],
    clients: dict[str, Client],
    backends: Any,
) -> None:
    label = f"{processes} worker process" + ("es" if processes > 1 else "")
    for pool in pools.values():  # warm up: imports, sandbox, sticky cache
        await drive(
            clients[pool.variant], pool.workflow, pool.task_queue, 10, 5, pool.argument,
            start_options=pool.options,
        )  # fmt: skip
    peak: dict[str, float] = {}
    for concurrency in args.sizes:
        per_round = max(args.workflows // args.rounds, 4 * concurrency)
        cpu: dict[str, list[machine.CpuSplit]] = {v: [] for v in pools}

        def variant(
            pool: Pool,
            concurrency: int = concurrency,
            per_round: int = per_round,
            cpu: dict[str, list[machine.CpuSplit]] = cpu,
        ) -> tuple[str, Run]:
            meter = meter_for(pool, temporal, backends.process)

            async def one() -> Result:
                with meter.split(per_round) as split:
                    seconds, latencies = await drive(
                        clients[pool.variant], pool.workflow, pool.task_queue, per_round,
                        concurrency, pool.argument, start_options=pool.options,
                    )  # fmt: skip
                cpu[pool.variant].append(split)
                return Result(NAMES[pool.variant], per_round, seconds, latencies)

            return NAMES[pool.variant], one

        with machine.measured() as conditions:
            rotation = await rotate([variant(p) for p in pools.values()], args.rounds)
        merged = {r.name: r for r in rotation.merged}
        print(
            f"\n{temporal.label}, {label}, concurrency {concurrency}: {per_round * args.rounds} "
            f"workflows per variant in {args.rounds} rotated rounds\n"
        )
        print_table(rotation.merged)
        metrics: dict[str, float] = {"processes": processes, "concurrency": concurrency}
        for v in pools:
            result = merged[NAMES[v]]
            peak[v] = max(peak.get(v, 0.0), result.throughput)
            metrics[f"{v}_wf_per_s"] = result.throughput
            metrics[f"{v}_p50_ms"] = result.percentile(0.5)
            metrics[f"{v}_p99_ms"] = result.percentile(0.99)
        ratios: dict[str, list[float]] = {}
        for key, (numerator, denominator) in {
            "stub_to_bare": ("stub", "bare"),
            "machinery_to_bare": ("machinery", "bare"),
            "stub_to_machinery": ("stub", "machinery"),
            "full_to_stub": ("full", "stub"),
        }.items():
            if numerator in pools and denominator in pools:
                paired = rotation.paired_ratios(NAMES[numerator], NAMES[denominator])
                ratios[key] = paired
                metrics[f"{key}_median"] = statistics.median(paired)
                metrics[f"{key}_merged"] = (
                    merged[NAMES[numerator]].throughput / merged[NAMES[denominator]].throughput
                )
                print(f"{NAMES[numerator]} / {NAMES[denominator]}: {describe_ratios(paired)}")
        splits = {v: merged_split(cpu[v]) for v in pools}
        point = results.Point(
            concurrency,
            {k: round(v, 3) for k, v in metrics.items()},
            conditions.as_json(),
            {v: split.as_json() for v, split in splits.items()},
            {"round_ratios": {k: [round(r, 3) for r in v] for k, v in ratios.items()}},
            series=label,
        )
        run.points.append(point)
        print(f"conditions: {conditions.describe()}")
        if "stub_to_bare_median" in metrics:
            target = results.judge(
                f"(b)/(a) throughput, round median, {label}", metrics["stub_to_bare_median"],
                TARGET, "", better="higher", size=concurrency, conditions=conditions,
                max_load=args.max_load, max_foreign=args.max_foreign_cores,
            )  # fmt: skip
            run.targets.append(target)
            print(target.line)
            if target.verdict == results.MISSED:
                for v in ("bare", "stub"):
                    print(f"{NAMES[v]}: " + "\n  ".join(splits[v].lines()))
        report.save(results.results_folder(args))
    await paced(args, temporal, run, report, label, pools, clients, backends, peak)


async def paced(
    args: argparse.Namespace,
    temporal: BenchTemporal,
    run: results.ServerRun,
    report: results.Report,
    label: str,
    pools: dict[str, Pool],
    clients: dict[str, Client],
    backends: Any,
    peak: dict[str, float],
) -> None:
    """Each variant at 80% of its peak throughput, an open loop: p50/p99 end to end."""
    print(f"\n{temporal.label}, {label}: at {PEAK_SHARE:.0%} of each variant's peak")
    print(
        f"{'variant':<26} {'peak/s':>8} {'offered/s':>9} {'done/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for v, pool in pools.items():
        rate = PEAK_SHARE * peak[v]
        count = max(20, int(rate * args.paced_seconds))
        meter = meter_for(pool, temporal, backends.process)
        with machine.measured() as conditions, meter.split(count) as split:
            seconds, latencies = await drive_paced(
                clients[v], pool.workflow, pool.task_queue, count, rate, pool.argument,
                start_options=pool.options,
            )  # fmt: skip
        result = Result(NAMES[v], count, seconds, latencies)
        metrics = {
            "peak_wf_per_s": peak[v],
            "offered_wf_per_s": rate,
            "done_wf_per_s": result.throughput,
            "p50_ms": result.percentile(0.5),
            "p99_ms": result.percentile(0.99),
            "workflows": count,
        }
        print(
            f"{NAMES[v]:<26} {peak[v]:>8.1f} {rate:>9.1f} {result.throughput:>8.1f} "
            f"{metrics['p50_ms']:>8.0f} {metrics['p99_ms']:>8.0f}"
        )
        run.points.append(
            results.Point(
                0,
                {k: round(x, 3) for k, x in metrics.items()},
                conditions.as_json(),
                {v: merged_split([split]).as_json()},
                {"variant": v},
                series=f"{label}, {PEAK_SHARE:.0%} of peak",
            )
        )
        report.save(results.results_folder(args))


def processes_list(text: str) -> list[int]:
    values = results.sizes(text)
    if any(v > 8 for v in values):
        raise argparse.ArgumentTypeError("--processes: at most 8 worker processes per variant")
    return values


def variants_list(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"--variants: {', '.join(unknown) or 'none given'}; choose from {', '.join(VARIANTS)}"
        )
    return [v for v in VARIANTS if v in chosen]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    results.add_series_options(parser, SIZES)
    parser.add_argument(
        "--workflows",
        type=int,
        default=300,
        help="per variant and concurrency, all rounds (at least 4x the concurrency per round)",
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--processes",
        type=processes_list,
        default=[1, 2],
        help="worker processes per variant, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--variants",
        type=variants_list,
        default=list(VARIANTS),
        help=f"which variants (default {','.join(VARIANTS)})",
    )
    parser.add_argument(
        "--paced-seconds",
        type=float,
        default=30.0,
        help="how long each variant runs at 80%% of its peak (default 30)",
    )
    add_temporal_option(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.workflows < 1:
        parser.error("--rounds and --workflows must be at least 1")
    return args


if __name__ == "__main__":
    arguments = parse()
    report = results.Report(
        "fulfillment", "Order saga throughput",
        {k: v for k, v in vars(arguments).items() if k != "results"},
    )  # fmt: skip
    for kind in temporal_kinds(arguments.temporal):
        asyncio.run(main(arguments, kind, report))
    report.save(results.results_folder(arguments))
    print("\n" + "\n".join(report.summary()))
    from muster_runtime.shutdown import exit_now

    exit_now(0)
