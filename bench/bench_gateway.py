"""How fast approval requests can be started through the gateway, as a series of sizes.

One gateway (``python -m muster_gateway``) and one approval worker process
(``python -m muster_approval``), as deployed, against one Temporal. For each size of
``--sizes`` (default 100, 1k, 10k starts):

1. peak: ``POST /v1/approvals`` that many times, ``--concurrency`` calls in flight (a closed
   loop): starts per second and the latency of each call;
2. at 80 % of that peak: the same number of starts again, each sent when it is due whatever
   became of the earlier ones (an open loop, as independent callers behave), timed from when
   it was due; target p99 under 100 ms and no 5xx answer at all.

The gateway answers a start with the request's state, which it asks the workflow for, so a
call includes the worker's first workflow task. Notifications are off in the bench's policy.

Run: ``make bench`` or ``python -m bench.bench_gateway --sizes 100,1k``; ``--temporal both``
measures the dev server and the real server side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench import machine, results
from bench.bench_approval import POLICY, percentile, start_gateway, start_worker
from bench.harness import (
    REPO,
    BenchTemporal,
    add_temporal_option,
    bench_temporal,
    compile_sources,
    temporal_kinds,
)
from muster_api.search_attributes import cli_types

SIZES = "100,1k,10k"
P99_TARGET_MS = 100.0
PEAK_SHARE = 0.8
BODY = {"kind": "purchase", "title": "Bench purchase", "policy": "bench"}


STARTED = (201, 202)
"""A start answered with the request's state, or ``202 Accepted`` with its ``Location`` when
the state read waited ``MUSTER_GATEWAY_STATE_READ_TIMEOUT`` in vain: both started it."""


class Calls:
    """The answers of one run: the latency in ms of every start (a 202 too: it is the slowest
    kind, and leaving it out would flatter the p99), how many were 202, and the status of
    every answer that started nothing."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.accepted = 0
        self.failures: dict[int, int] = {}
        self.sample: str = ""

    def answered(self, response: httpx.Response, latency_ms: float) -> None:
        if response.status_code in STARTED:
            self.latencies.append(latency_ms)
            self.accepted += response.status_code == 202
            return
        self.failures[response.status_code] = self.failures.get(response.status_code, 0) + 1
        self.sample = self.sample or f"{response.status_code}: {response.text[:300]}"

    @property
    def errors_5xx(self) -> int:
        return sum(n for status, n in self.failures.items() if status >= 500)


async def closed_loop(http: httpx.AsyncClient, count: int, concurrency: int) -> tuple[float, Calls]:
    """``count`` starts, ``concurrency`` in flight; (seconds, answers)."""
    calls = Calls()
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with semaphore:
            began = time.perf_counter()
            response = await http.post("/v1/approvals", json=BODY)
            calls.answered(response, (time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return time.perf_counter() - began, calls


async def open_loop(http: httpx.AsyncClient, count: int, rate: float) -> tuple[float, Calls]:
    """``count`` starts at ``rate`` per second; latency counts from when a call was due, so a
    caller that fell behind shows as latency instead of hiding it."""
    calls = Calls()
    began = time.perf_counter()

    async def one(i: int) -> None:
        due = began + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response = await http.post("/v1/approvals", json=BODY)
        calls.answered(response, (time.perf_counter() - due) * 1000)

    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - began, calls


async def main(args: argparse.Namespace, kind: str, report: results.Report) -> None:
    compile_sources(REPO / "services")
    scratch = Path(tempfile.mkdtemp(prefix="muster-bench-gateway-"))
    (scratch / "policies").mkdir()
    (scratch / "policies" / "bench.yaml").write_text(POLICY)
    with bench_temporal(
        kind, scratch, db_file=scratch / "temporal.sqlite", search_attributes=cli_types()
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
    worker = gateway = None
    try:
        worker = start_worker(scratch, temporal.address)
        gateway, url = start_gateway(scratch, temporal.address)
        meter = machine.CpuMeter(
            {
                "gateway": gateway.pid,
                "approval worker": worker.pid,
                **temporal.pids,
                "bench (client)": os.getpid(),
            },
            own="bench (client)",
        )
        limits = httpx.Limits(max_connections=args.concurrency * 4)
        async with httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": "Bearer dave-demo-token"},
            timeout=60,
            limits=limits,
        ) as http:
            await closed_loop(http, 20, 5)  # warm up: imports, connections, caches
            for size in args.sizes:
                with machine.measured() as conditions:
                    with meter.split(size, "start") as peak_split:
                        peak_seconds, peak = await closed_loop(http, size, args.concurrency)
                    peak_rate = size / peak_seconds
                    rate = PEAK_SHARE * peak_rate
                    with meter.split(size, "start") as paced_split:
                        _, paced = await open_loop(http, size, rate)
                point = measured_point(size, peak_rate, rate, peak, paced, conditions)
                point.split = {"peak": peak_split.as_json(), "paced": paced_split.as_json()}
                run.points.append(point)
                target = results.judge(
                    f"start latency p99 at {PEAK_SHARE:.0%} of peak", point.metrics["paced_p99_ms"],
                    P99_TARGET_MS, "ms", size=size, conditions=conditions,
                    max_load=args.max_load, max_foreign=args.max_foreign_cores,
                )  # fmt: skip
                errors = point.metrics["errors_5xx"]
                # A 5xx is a failure however busy the host was: judged whatever the load.
                no_5xx = results.Target(
                    "5xx answers", errors, 0.0, "", "lower", size,
                    results.MET if errors == 0 else results.MISSED,
                )  # fmt: skip
                run.targets += [target, no_5xx]
                print_point(temporal.label, args, point, [target, no_5xx])
                if target.verdict == results.MISSED:
                    print("\n".join(paced_split.lines()))
                for calls in (peak, paced):
                    if calls.sample:
                        print(f"  first failed answer: {calls.sample}")
                report.save(results.results_folder(args))
    finally:
        for process in (gateway, worker):
            if process is not None:
                process.stop()


def measured_point(
    size: int,
    peak_rate: float,
    rate: float,
    peak: Calls,
    paced: Calls,
    conditions: machine.Conditions,
) -> results.Point:
    def stats(calls: Calls, q: float) -> float:
        return percentile(calls.latencies, q) if calls.latencies else float("nan")

    metrics = {
        "starts": size,
        "peak_per_s": peak_rate,
        "peak_p50_ms": stats(peak, 0.5),
        "peak_p99_ms": stats(peak, 0.99),
        "paced_per_s": rate,
        "paced_p50_ms": stats(paced, 0.5),
        "paced_p99_ms": stats(paced, 0.99),
        "errors_5xx": peak.errors_5xx + paced.errors_5xx,
        "failed_calls": sum(peak.failures.values()) + sum(paced.failures.values()),
        "accepted_202": peak.accepted + paced.accepted,
    }
    return results.Point(
        size,
        {k: round(v, 2) for k, v in metrics.items()},
        conditions.as_json(),
        extra={"failures": {str(k): v for k, v in {**peak.failures, **paced.failures}.items()}},
    )


def print_point(
    label: str, args: argparse.Namespace, point: results.Point, targets: list[results.Target]
) -> None:
    m = point.metrics
    print(
        f"\n{label}: {point.size} starts through the gateway\n"
        f"  peak ({args.concurrency} in flight): {m['peak_per_s']:.1f}/s, "
        f"p50 {m['peak_p50_ms']:.0f} ms, p99 {m['peak_p99_ms']:.0f} ms\n"
        f"  at {PEAK_SHARE:.0%} of peak ({m['paced_per_s']:.1f}/s): p50 {m['paced_p50_ms']:.0f} "
        f"ms, p99 {m['paced_p99_ms']:.0f} ms; failed calls {m['failed_calls']:.0f} "
        f"(5xx {m['errors_5xx']:.0f}); answered 202 before the state was read "
        f"{m['accepted_202']:.0f}\n"
        f"  conditions: {machine.Conditions(**point.conditions).describe()}"
    )
    for target in targets:
        print(f"  {target.line}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results.add_series_options(parser, SIZES)
    parser.add_argument(
        "--concurrency", type=int, default=20, help="calls in flight for the peak (default 20)"
    )
    add_temporal_option(parser)
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


if __name__ == "__main__":
    arguments = parse()
    report = results.Report(
        "gateway", "Approval starts through the gateway",
        {k: v for k, v in vars(arguments).items() if k != "results"},
    )  # fmt: skip
    for kind in temporal_kinds(arguments.temporal):
        asyncio.run(main(arguments, kind, report))
    report.save(results.results_folder(arguments))
    print("\n" + "\n".join(report.summary()))
