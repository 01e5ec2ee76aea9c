"""Shared bench machinery: drive N workflows with bounded concurrency, and print a table."""

from __future__ import annotations

import asyncio
import compileall
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from temporalio.client import Client


def compile_sources(*roots: Path) -> None:
    """Write bytecode for the sources the workers import.

    Temporal's sandbox re-imports a workflow's module for every new workflow run; without
    a ``.pyc`` (``PYTHONDONTWRITEBYTECODE`` is set in some environments, and the workspace is
    installed editable) that means compiling the source every time, which production
    images never do (they ship bytecode). Benchmarks should measure the latter.
    """
    for root in roots:
        compileall.compile_dir(str(root), quiet=1)


class CountingExporter(SpanExporter):
    """Receives every finished span (as a real exporter would) and only counts them."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


@dataclass
class Result:
    """Throughput and latencies of one variant."""

    name: str
    workflows: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.workflows / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    client: Client,
    workflow: str,
    task_queue: str,
    workflows: int,
    concurrency: int,
    argument: Callable[[int], Any],
    *,
    id_prefix: str = "bench",
    start_options: Callable[[Any], dict[str, Any]] | None = None,
) -> tuple[float, list[float]]:
    """Run ``workflows`` executions, ``concurrency`` at a time; (seconds, latencies in ms)."""
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with semaphore:
            started = time.perf_counter()
            value = argument(i)
            await client.execute_workflow(
                workflow,
                value,
                id=f"{id_prefix}-{uuid.uuid4()}",
                task_queue=task_queue,
                **(start_options(value) if start_options else {}),
            )
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(workflows)))
    return time.perf_counter() - began, latencies


def print_table(results: list[Result]) -> None:
    """Throughput and latency percentiles, one row per variant."""
    print(f"{'variant':<24} {'wf/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for r in results:
        print(
            f"{r.name:<24} {r.throughput:>8.1f} {r.percentile(0.5):>8.1f} "
            f"{r.percentile(0.99):>8.1f} {statistics.fmean(r.latencies_ms):>8.1f}"
        )


Run = Callable[[], Awaitable[Result]]

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Rotation:
    """Every variant's merged result, and each round's results by variant name."""

    merged: list[Result]
    rounds: list[dict[str, Result]]

    def paired_ratios(self, numerator: str, denominator: str) -> list[float]:
        """Throughput of one variant over another's, round by round (sorted)."""
        return sorted(r[numerator].throughput / r[denominator].throughput for r in self.rounds)


async def rotate(variants: list[tuple[str, Run]], rounds: int) -> Rotation:
    """Run every variant ``rounds`` times in rotated order; keep each round and the merge.

    A dev server slows down as its history grows, so whichever variant ran first would look
    best; rotating the order (a b c, b c a, c a b, ...) spreads that drift evenly. A host
    shared with other work also changes speed from minute to minute: variants of one round
    ran seconds apart, so ratios taken within each round (:meth:`Rotation.paired_ratios`) see
    the same conditions, where the merged totals weigh the slow minutes most.
    """
    merged: dict[str, Result] = {}
    per_round: list[dict[str, Result]] = []
    for round_number in range(rounds):
        shift = round_number % len(variants)
        this_round: dict[str, Result] = {}
        for name, run in variants[shift:] + variants[:shift]:
            result = await run()
            this_round[name] = result
            if name in merged:
                previous = merged[name]
                merged[name] = Result(
                    name,
                    previous.workflows + result.workflows,
                    previous.seconds + result.seconds,
                    previous.latencies_ms + result.latencies_ms,
                )
            else:
                merged[name] = Result(name, result.workflows, result.seconds, result.latencies_ms)
        per_round.append(this_round)
    return Rotation([merged[name] for name, _ in variants], per_round)


def describe_ratios(ratios: list[float]) -> str:
    """Median, quartiles and range of per-round ratios, for a table footnote."""
    ordered = sorted(ratios)
    low, _, high = (
        statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 else ordered * 3
    )
    return (
        f"median {statistics.median(ordered):.2f} (quartiles {low:.2f} to {high:.2f}, "
        f"range {ordered[0]:.2f} to {ordered[-1]:.2f}, {len(ordered)} rounds)"
    )
