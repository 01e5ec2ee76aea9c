"""Parked approvals: memory of a worker with many waiting requests, and decision latency.

One approval worker process (``python -m muster_approval``, as deployed) against a local
dev server that keeps its state in SQLite, like ``make up``. The bench

1. measures the idle worker's RSS, then parks ``--requests`` pending requests (started
   ``--concurrency`` at a time) and reports how long starting them took, how long until
   every one had pinned its policy and asked its approvers, and the worker's RSS after;
2. decides ``--decide`` of them (``--decide-concurrency`` at a time) through the ``decide``
   update, as the gateway does, and reports decision→completion latency: from sending
   the update until the workflow's result is available.

Notifications are off in the bench policy (e-mail has its own tests); reminders too, so
parked requests only have their 7-day timer. Run: ``make bench`` or
``python -m bench.bench_approval --requests 10000 --decide 1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from temporalio.client import Client

from bench.harness import (
    REPO,
    BenchTemporal,
    add_temporal_option,
    bench_temporal,
    compile_sources,
    print_side_by_side,
    temporal_kinds,
)
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
from muster_dev.process import ManagedProcess
from muster_runtime.client import connect
from muster_runtime.polling import async_wait_until
from muster_runtime.settings import TemporalSettings
from tests.helpers import free_port, http_get, start_service, wait_until

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

RSS_TARGET_MB = 150.0
P99_TARGET_MS = 250.0


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def start_worker(scratch: Path, address: str) -> ManagedProcess:
    policies = scratch / "policies"
    policies.mkdir()
    (policies / "bench.yaml").write_text(POLICY)
    port = free_port()
    process = start_service(
        "muster_approval",
        {
            "TEMPORAL_ADDRESS": address,
            "MUSTER_APPROVAL_POLICIES_DIR": str(policies),
            "MUSTER_APPROVAL_DIRECTORY_FILE": str(REPO / "examples" / "directory.yaml"),
            # Required since production settings have no defaults in the checkout; only
            # links in notifications use it, and the bench's policy sends none.
            "MUSTER_APPROVAL_PUBLIC_URL": "http://127.0.0.1:9/ui",
            "MUSTER_APPROVAL_HTTP__HOST": "127.0.0.1",
            "MUSTER_APPROVAL_HTTP__PORT": str(port),
            "MUSTER_LOG__LEVEL": "WARNING",
        },
        scratch / "approval.log",
    )

    def ready() -> bool:
        assert process.running(), process.tail()
        try:
            return http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    wait_until(ready, what="approval worker ready", timeout=120)
    return process


def request(i: int, run: str) -> ApprovalRequest:
    return ApprovalRequest(
        request_id=f"bench-{run}-{i}",
        kind="purchase",
        requester="dave",
        title=f"Bench purchase {i}",
        policy="bench",
        context={"n": str(i)},
    )


async def park(client: Client, run: str, requests: int, concurrency: int) -> float:
    """Start ``requests`` approvals; seconds until every start call returned."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            wanted = request(i, run)
            await client.start_workflow(
                WORKFLOW,
                wanted,
                id=approval_workflow_id(wanted.request_id),
                task_queue=TASK_QUEUE,
                result_type=ApprovalResult,
            )

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace, kind: str = "dev") -> dict[str, str]:
    compile_sources(REPO / "services")
    scratch = Path(tempfile.mkdtemp(prefix="muster-bench-approval-"))
    with bench_temporal(
        kind,
        scratch,
        db_file=None if args.in_memory else scratch / "temporal.sqlite",
        search_attributes=cli_types(),
    ) as temporal:
        return await measure(args, temporal, scratch)


async def measure(
    args: argparse.Namespace, temporal: BenchTemporal, scratch: Path
) -> dict[str, str]:
    worker: ManagedProcess | None = None
    try:
        address = temporal.address
        client = await connect(TemporalSettings(address=address))
        worker = start_worker(scratch, address)
        assert worker.pid is not None
        run = os.urandom(3).hex()
        idle, _ = rss_mb(worker.pid)

        start_seconds = await park(client, run, args.requests, args.concurrency)
        began_waiting = time.perf_counter()

        wanted: int = args.requests

        async def all_parked() -> bool:
            return await waiting_count(client, run) == wanted

        await async_wait_until(
            all_parked, what=f"{args.requests} requests waiting", timeout=3600, interval=1
        )
        parked_seconds = start_seconds + (time.perf_counter() - began_waiting)
        parked, peak = rss_mb(worker.pid)

        chosen = random.Random(7).sample(range(args.requests), args.decide)
        decide_seconds, latencies, acks = await decide(client, run, chosen, args.decide_concurrency)
        after_decisions, peak = rss_mb(worker.pid)
        remaining = await waiting_count(client, run)
    finally:
        if worker is not None:
            worker.stop()

    growth = parked - idle
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(
        f"{temporal.label}: approval worker, {args.requests} parked requests (start concurrency "
        f"{args.concurrency}), {args.decide} decisions (concurrency {args.decide_concurrency})"
    )
    print(f"{'measure':<40} {'value':>10} {'target':>10} {'ratio':>7}")

    def row(name: str, value: float, unit: str, target: float | None = None) -> None:
        shown = f"{value:.1f} {unit}"
        if target is None:
            print(f"{name:<40} {shown:>10} {'':>10} {'':>7}")
        else:
            print(f"{name:<40} {shown:>10} {f'{target:.0f} {unit}':>10} {value / target:>7.2f}")

    row("worker RSS idle", idle, "MB")
    row(f"worker RSS with {args.requests} waiting", parked, "MB")
    row("worker RSS growth for them", growth, "MB", RSS_TARGET_MB)
    row("worker RSS peak (VmHWM)", peak, "MB")
    row(f"worker RSS after {args.decide} decisions", after_decisions, "MB")
    row(f"start {args.requests} (all start calls)", start_seconds, "s")
    row("start rate", args.requests / start_seconds, "wf/s")
    row("until all asked their approvers", parked_seconds, "s")
    row("decision→update answered p50", percentile(acks, 0.5), "ms")
    row("decision→update answered p99", percentile(acks, 0.99), "ms")
    row("decision→completion p50", p50, "ms")
    row("decision→completion p99", p99, "ms", P99_TARGET_MS)
    row("decision→completion mean", statistics.fmean(latencies), "ms")
    row("decision→completion max", max(latencies), "ms")
    row("decisions per second", args.decide / decide_seconds, "/s")
    print(f"still waiting afterwards: {remaining} (expected {args.requests - args.decide})")
    if remaining != args.requests - args.decide:
        raise SystemExit("decided requests are still listed as waiting")
    return {
        "start rate (wf/s)": f"{args.requests / start_seconds:.0f}",
        "all asked their approvers (s)": f"{parked_seconds:.0f}",
        "update answered p50 (ms)": f"{percentile(acks, 0.5):.0f}",
        "decision→completion p50 (ms)": f"{p50:.0f}",
        "decision→completion p99 (ms)": f"{p99:.0f}",
        "worker RSS growth (MB)": f"{growth:.0f}",
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--decide", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--decide-concurrency", type=int, default=1, help="decisions in flight at once"
    )
    parser.add_argument(
        "--in-memory", action="store_true", help="dev server without its SQLite file"
    )
    add_temporal_option(parser)
    args = parser.parse_args(argv)
    if not 0 < args.decide <= args.requests:
        parser.error("--decide must be between 1 and --requests")
    return args


if __name__ == "__main__":
    arguments = parse()
    kinds = temporal_kinds(arguments.temporal)
    figures: dict[str, dict[str, str]] = {}
    for chosen in kinds:
        for name, value in asyncio.run(main(arguments, chosen)).items():
            figures.setdefault(name, {})[chosen] = value
    print_side_by_side(figures, kinds)
