"""Parked approvals as a series: a worker's memory with many waiting requests, decision
latency, and the "waiting for me" list, at each size.

One approval worker process (``python -m muster_approval``, as deployed) and one gateway
(``python -m muster_gateway``) against one Temporal. For each size of ``--sizes`` (default
1k, 10k, 50k, 100k waiting requests), in ascending order on the same server:

1. park requests until that many wait: started through the Temporal client (many at once,
   the fast way; the gateway is measured by ``bench_gateway``), then until every one has
   pinned its policy and asked its approvers (``MusterApprovers`` in visibility);
2. read the worker's RSS (growth over the idle worker's: target < 150 MB, flat, since the
   worker's small cache evicts waiting requests);
3. ask the gateway ``--list-samples`` times for alice's waiting requests, as her approver
   page does (``GET /v1/approvals?status=pending&approver=alice``; target p99 < 300 ms);
4. decide ``--decide`` random waiting requests through the ``decide`` update one after the
   other, as the gateway does, and time decision→completion: from sending the update to the
   workflow's result (target p99 < 250 ms).

The sizes build on each other (the next size parks only the difference, plus the requests
decided before), so the 100k series starts about 100,000 requests, not 161,000. Notifications
and reminders are off in the bench policy: parked requests have only their 7-day timer.

Run: ``make bench`` or ``python -m bench.bench_approval --sizes 1k,10k``; ``--temporal both``
measures the dev server and the real server side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from bench import machine, results
from bench.harness import (
    REPO,
    BenchTemporal,
    add_temporal_option,
    bench_temporal,
    compile_sources,
    start_ready,
    temporal_kinds,
)
from muster_api import search_attributes as sa
from muster_api.approval import (
    DECIDE_UPDATE,
    TASK_QUEUE,
    WORKFLOW,
    ApprovalRequest,
    ApprovalResult,
    ApprovalState,
    Decision,
)
from muster_api.approval import workflow_id as approval_workflow_id
from muster_api.search_attributes import cli_types
from muster_dev.process import ManagedProcess, free_port
from muster_runtime.client import connect
from muster_runtime.polling import async_wait_until
from muster_runtime.settings import TemporalSettings

POLICY = """\
apiVersion: muster.io/v1alpha1
kind: ApprovalPolicy
metadata: {name: bench}
spec:
  appliesTo: {kinds: [purchase]}
  approvers: {users: [alice, bob]}
  requiredApprovals: 1
  timeout: 7d
  onTimeout: Reject
  notifications: {email: {enabled: false}}
"""

SIZES = "1k,10k,50k,100k"
RSS_TARGET_MB = 150.0
P99_TARGET_MS = 250.0
LIST_TARGET_MS = 300.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def request(i: int, run: str) -> ApprovalRequest:
    return ApprovalRequest(
        request_id=f"bench-{run}-{i}",
        kind="purchase",
        requester="dave",
        title=f"Bench purchase {i}",
        policy="bench",
        context={"n": str(i)},
    )


@dataclass
class Parked:
    """Which requests of this run were started, and which of them still wait."""

    run: str
    started: int = 0
    waiting: set[int] = field(default_factory=set)


async def park(client: Client, parked: Parked, count: int, concurrency: int) -> float:
    """Start ``count`` more requests, ``concurrency`` at a time; seconds until every start
    call returned."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            wanted = request(i, parked.run)
            # As the gateway starts a request: its title in the memo, its attributes set.
            await client.start_workflow(
                WORKFLOW,
                wanted,
                id=approval_workflow_id(wanted.request_id),
                task_queue=TASK_QUEUE,
                result_type=ApprovalResult,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.PATTERN, "approval"),
                        SearchAttributePair(sa.STATUS, "pending"),
                        SearchAttributePair(sa.BUSINESS_KEY, wanted.request_id),
                        SearchAttributePair(sa.REQUESTER, wanted.requester),
                        SearchAttributePair(sa.REQUEST_KIND, wanted.kind),
                        SearchAttributePair(sa.POLICY, "bench"),
                    ]
                ),
                memo={"title": wanted.title},
            )

    first = parked.started
    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(first, first + count)))
    parked.started += count
    parked.waiting.update(range(first, first + count))
    return time.perf_counter() - began


async def waiting_count(client: Client, run: str) -> int:
    query = (
        f"MusterPolicy = 'bench' AND MusterStatus = 'pending' AND MusterApprovers = 'alice' "
        f"AND MusterBusinessKey STARTS_WITH 'bench-{run}-'"
    )
    return (await client.count_workflows(query)).count


async def decide(
    client: Client, run: str, chosen: list[int], concurrency: int
) -> tuple[float, list[float], list[float]]:
    """Approve each chosen request; (seconds, decision→completion latencies in ms, and
    decision→update answered latencies in ms)."""
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    acks: list[float] = []
    decision = Decision(approver="alice", verdict="approve", reason="bench")

    async def one(i: int) -> None:
        async with semaphore:
            handle = client.get_workflow_handle(
                approval_workflow_id(f"bench-{run}-{i}"), result_type=ApprovalResult
            )
            began = time.perf_counter()
            state: ApprovalState = await handle.execute_update(
                DECIDE_UPDATE, decision, result_type=ApprovalState
            )
            acks.append((time.perf_counter() - began) * 1000)
            result = await handle.result()
            latencies.append((time.perf_counter() - began) * 1000)
            assert state.status.value == "approved", state.status
            assert result.approved, result

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in chosen))
    return time.perf_counter() - began, latencies, acks


async def waiting_for_me(gateway: str, samples: int) -> tuple[list[float], int]:
    """Ask the gateway for alice's waiting requests ``samples`` times, one after the other,
    as her approver page does; (latencies in ms, requests in the last answer)."""
    latencies: list[float] = []
    shown = 0
    async with httpx.AsyncClient(
        base_url=gateway, headers={"Authorization": "Bearer alice-demo-token"}, timeout=60
    ) as http:
        for _ in range(samples):
            began = time.perf_counter()
            response = await http.get(
                "/v1/approvals", params={"status": "pending", "approver": "alice"}
            )
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                raise SystemExit(
                    f"the gateway answered {response.status_code} to the waiting-for-me list: "
                    f"{response.text[:500]}"
                )
            shown = len(response.json())
    return latencies, shown


def start_worker(scratch: Path, address: str) -> ManagedProcess:
    process, _ = start_ready(
        "muster_approval",
        {
            "TEMPORAL_ADDRESS": address,
            "MUSTER_APPROVAL_POLICIES_DIR": str(scratch / "policies"),
            "MUSTER_APPROVAL_DIRECTORY_FILE": str(REPO / "examples" / "directory.yaml"),
            # Required since production settings have no defaults in the checkout; only
            # links in notifications use it, and the bench's policy sends none.
            "MUSTER_APPROVAL_PUBLIC_URL": "http://127.0.0.1:9/ui",
        },
        scratch / "approval.log",
        "MUSTER_APPROVAL_",
    )
    return process


def start_gateway(scratch: Path, address: str) -> tuple[ManagedProcess, str]:
    port = free_port()
    process, _ = start_ready(
        "muster_gateway",
        {
            "TEMPORAL_ADDRESS": address,
            "MUSTER_GATEWAY_API__HOST": "127.0.0.1",
            "MUSTER_GATEWAY_API__PORT": str(port),
            "MUSTER_GATEWAY_POLICIES_DIR": str(scratch / "policies"),
            "MUSTER_GATEWAY_DIRECTORY_FILE": str(REPO / "examples" / "directory.yaml"),
            "MUSTER_GATEWAY_AUTH__TOKENS_FILE": str(REPO / "examples/gateway/tokens.yaml"),
        },
        scratch / "gateway.log",
        "MUSTER_GATEWAY_",
    )
    return process, f"http://127.0.0.1:{port}"


async def main(args: argparse.Namespace, kind: str, report: results.Report) -> None:
    compile_sources(REPO / "services")
    scratch = Path(tempfile.mkdtemp(prefix="muster-bench-approval-"))
    (scratch / "policies").mkdir()
    (scratch / "policies" / "bench.yaml").write_text(POLICY)
    with bench_temporal(
        kind,
        scratch,
        db_file=None if args.in_memory else scratch / "temporal.sqlite",
        search_attributes=cli_types(),
    ) as temporal:
        run = report.server(kind, temporal.label, await temporal.version())
        await series(args, temporal, scratch, run, report)


async def series(
    args: argparse.Namespace,
    temporal: BenchTemporal,
    scratch: Path,
    run: results.ServerRun,
    report: results.Report,
) -> None:
    worker: ManagedProcess | None = None
    gateway: ManagedProcess | None = None
    folder = results.results_folder(args)
    try:
        client = await connect(TemporalSettings(address=temporal.address), tracing=False)
        worker = start_worker(scratch, temporal.address)
        gateway, gateway_url = start_gateway(scratch, temporal.address)
        assert worker.pid is not None
        meter = machine.CpuMeter(
            {
                "approval worker": worker.pid,
                **temporal.pids,
                "gateway": gateway.pid,
                "bench (client)": os.getpid(),
            },
            own="bench (client)",
        )
        idle, _ = machine.rss_mb(worker.pid)
        parked = Parked(os.urandom(3).hex())
        chooser = random.Random(7)
        started_all = time.perf_counter()
        for size in args.sizes:
            more = size - len(parked.waiting)
            with machine.measured() as parking, meter.split(more) as parking_split:
                start_seconds = await park(client, parked, more, args.concurrency)
                expected = len(parked.waiting)

                async def all_parked(expected: int = expected) -> bool:
                    return await waiting_count(client, parked.run) == expected

                await async_wait_until(
                    all_parked, what=f"{expected} requests waiting", timeout=6 * 3600, interval=2
                )
            with machine.measured() as conditions:
                rss, peak = machine.rss_mb(worker.pid)
                with meter.split(args.list_samples, "list call") as list_split:
                    lists, shown = await waiting_for_me(gateway_url, args.list_samples)
                chosen = chooser.sample(sorted(parked.waiting), min(args.decide, size))
                with meter.split(len(chosen), "decision") as decide_split:
                    seconds, latencies, acks = await decide(
                        client, parked.run, chosen, args.decide_concurrency
                    )
                parked.waiting.difference_update(chosen)
                after_decisions, peak = machine.rss_mb(worker.pid)
            metrics = {
                "waiting": size,
                "rss_idle_mb": idle,
                "rss_mb": rss,
                "rss_growth_mb": rss - idle,
                "rss_peak_mb": peak,
                "rss_after_decisions_mb": after_decisions,
                "parked_now": more,
                "park_start_seconds": start_seconds,
                "park_seconds": parking.seconds,
                "park_rate": more / parking.seconds,
                "list_p50_ms": percentile(lists, 0.5),
                "list_p99_ms": percentile(lists, 0.99),
                # With 50 calls the p99 is nearly the slowest one: which call it was and how
                # slow tells a cold first query from a stall later.
                "list_first_ms": lists[0],
                "list_max_ms": max(lists),
                "list_slowest_call": float(lists.index(max(lists)) + 1),
                "list_shown": shown,
                "decide_p50_ms": percentile(latencies, 0.5),
                "decide_p99_ms": percentile(latencies, 0.99),
                "decide_mean_ms": statistics.fmean(latencies),
                "decide_max_ms": max(latencies),
                "ack_p50_ms": percentile(acks, 0.5),
                "ack_p99_ms": percentile(acks, 0.99),
                "decisions_per_s": len(chosen) / seconds,
            }
            point = results.Point(
                size,
                {k: round(v, 2) for k, v in metrics.items()},
                conditions.as_json(),
                {
                    "parking": parking_split.as_json(),
                    "list": list_split.as_json(),
                    "decisions": decide_split.as_json(),
                },
                {"parking_conditions": parking.as_json()},
            )
            run.points.append(point)
            limits = {"max_load": args.max_load, "max_foreign": args.max_foreign_cores}
            targets = [
                results.judge(
                    "worker RSS growth", rss - idle, RSS_TARGET_MB, "MB", size=size,
                    conditions=conditions, **limits,
                ),
                results.judge(
                    "decision→completion p99", metrics["decide_p99_ms"], P99_TARGET_MS, "ms",
                    size=size, conditions=conditions, **limits,
                ),
                results.judge(
                    "waiting-for-me list p99", metrics["list_p99_ms"], LIST_TARGET_MS, "ms",
                    size=size, conditions=conditions, **limits,
                ),
            ]  # fmt: skip
            run.targets += targets
            print_point(temporal, args, point, targets)
            print("  parking: " + "\n  ".join(parking_split.lines()))
            for target, split in zip(
                targets, (parking_split, decide_split, list_split), strict=True
            ):
                if target.verdict == results.MISSED:
                    print("\n".join(split.lines()))
            report.save(folder)
            remaining = await waiting_count(client, parked.run)
            if remaining != len(parked.waiting):
                raise SystemExit(
                    f"{remaining} requests are listed as waiting, {len(parked.waiting)} wait: "
                    "decided requests are still listed, or parked ones are not"
                )
        run.notes.append(
            f"series of {', '.join(str(s) for s in args.sizes)} took "
            f"{(time.perf_counter() - started_all) / 60:.1f} min; {parked.started} requests "
            "started in all"
        )
        print(run.notes[-1])
    finally:
        for process in (gateway, worker):
            if process is not None:
                process.stop()


def print_point(
    temporal: BenchTemporal,
    args: argparse.Namespace,
    point: results.Point,
    targets: list[results.Target],
) -> None:
    m = point.metrics
    print(
        f"\n{temporal.label}: {point.size} waiting requests ({m['parked_now']:.0f} parked now "
        f"in {m['park_seconds']:.0f} s, {m['park_rate']:.0f}/s; start calls "
        f"{m['park_start_seconds']:.0f} s at concurrency {args.concurrency})"
    )
    rows = [
        ("worker RSS idle → with them waiting", f"{m['rss_idle_mb']:.0f} → {m['rss_mb']:.0f} MB"),
        ("worker RSS growth", f"{m['rss_growth_mb']:.0f} MB"),
        ("worker RSS peak / after decisions",
         f"{m['rss_peak_mb']:.0f} / {m['rss_after_decisions_mb']:.0f} MB"),
        (f"waiting-for-me list p50 / p99 ({args.list_samples} calls, {m['list_shown']:.0f} shown)",
         f"{m['list_p50_ms']:.0f} / {m['list_p99_ms']:.0f} ms"),
        ("waiting-for-me list: first call / slowest (which call)",
         f"{m['list_first_ms']:.0f} / {m['list_max_ms']:.0f} ms (#{m['list_slowest_call']:.0f})"),
        (f"decision→update answered p50 / p99 ({args.decide} decisions)",
         f"{m['ack_p50_ms']:.0f} / {m['ack_p99_ms']:.0f} ms"),
        ("decision→completion p50 / p99 / max",
         f"{m['decide_p50_ms']:.0f} / {m['decide_p99_ms']:.0f} / {m['decide_max_ms']:.0f} ms"),
    ]  # fmt: skip
    for name, value in rows:
        print(f"  {name:<58} {value:>16}")
    c = point.conditions
    print(
        f"  conditions: load {c['load_before'][0]} → {c['load_after'][0]}, other processes "
        f"{c['foreign_cores']} cores, bench {c['bench_cores']} cores"
    )
    for target in targets:
        print(f"  {target.line}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results.add_series_options(parser, SIZES)
    parser.add_argument("--decide", type=int, default=200, help="decisions at each size")
    parser.add_argument(
        "--decide-concurrency", type=int, default=1, help="decisions in flight at once"
    )
    parser.add_argument(
        "--concurrency", type=int, default=200, help="start calls in flight while parking"
    )
    parser.add_argument(
        "--list-samples", type=int, default=50, help="waiting-for-me list calls at each size"
    )
    parser.add_argument(
        "--in-memory", action="store_true", help="dev server without its SQLite file"
    )
    add_temporal_option(parser)
    args = parser.parse_args(argv)
    if args.decide < 1 or args.list_samples < 1 or args.concurrency < 1:
        parser.error("--decide, --list-samples and --concurrency must be at least 1")
    return args


def run_series(args: argparse.Namespace) -> results.Report:
    report = results.Report(
        "approval",
        "Parked approvals",
        {k: v for k, v in vars(args).items() if k not in ("results",)},
    )
    for kind in temporal_kinds(args.temporal):
        asyncio.run(main(args, kind, report))
    report.save(results.results_folder(args))
    print("\n" + "\n".join(report.summary()))
    return report


if __name__ == "__main__":
    run_series(parse())
