"""Shared bench machinery: drive N workflows with bounded concurrency, print a table, and
start the Temporal a bench runs on (``--temporal dev|server|both``)."""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

from muster_dev.process import ManagedProcess, free_port
from muster_dev.temporal import DevServer, DevServerConfig
from muster_dev.temporal_server import ServerPorts, TemporalServer, TemporalServerConfig
from muster_runtime.polling import wait_until
from tests.helpers import http_get, start_service


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


async def drive_paced(
    client: Client,
    workflow: str,
    task_queue: str,
    workflows: int,
    rate: float,
    argument: Callable[[int], Any],
    *,
    id_prefix: str = "bench",
    start_options: Callable[[Any], dict[str, Any]] | None = None,
) -> tuple[float, list[float]]:
    """Start ``workflows`` executions at ``rate`` per second whatever becomes of the earlier
    ones (an open loop, as independent callers behave); (seconds until the last finished,
    latencies in ms). A latency counts from when its start was due, so a driver that falls
    behind shows as latency instead of hiding it."""
    latencies: list[float] = []
    began = time.perf_counter()

    async def one(i: int) -> None:
        due = began + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        value = argument(i)
        await client.execute_workflow(
            workflow,
            value,
            id=f"{id_prefix}-{uuid.uuid4()}",
            task_queue=task_queue,
            **(start_options(value) if start_options else {}),
        )
        latencies.append((time.perf_counter() - due) * 1000)

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


TEMPORAL_CHOICES = ("dev", "server", "both")


def add_temporal_option(parser: argparse.ArgumentParser) -> None:
    """``--temporal dev|server|both``: the dev server (default), the real server on
    PostgreSQL (``make temporal-server``), or both one after the other, side by side."""
    parser.add_argument(
        "--temporal",
        choices=TEMPORAL_CHOICES,
        default="dev",
        help="which Temporal: the dev server, the real server on PostgreSQL, or both in "
        "one run with the figures side by side (default dev)",
    )


def temporal_kinds(choice: str) -> list[str]:
    """The servers a ``--temporal`` choice runs on, in order."""
    return ["dev", "server"] if choice == "both" else [choice]


# Process markers (in /proc/<pid>/cmdline) of each kind's Temporal, for CPU accounting:
# the real server's work is split between temporal-server and PostgreSQL's backends.
TEMPORAL_MARKERS = {"dev": ("server start-dev",), "server": ("temporal-server", "postgres")}


@dataclass
class BenchTemporal:
    """A running Temporal for one bench: its kind, frontend address, and its processes (each
    with everything below it) for CPU accounting."""

    kind: str
    address: str
    pids: dict[str, int | None]

    @property
    def label(self) -> str:
        return "dev server" if self.kind == "dev" else "real server (PostgreSQL)"

    async def version(self) -> str:
        """What the server says it is (and, for the dev server, the CLI that runs it)."""
        client = await Client.connect(self.address)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
        version = f"Temporal server {info.server_version}"
        if self.kind == "dev":
            cli = await asyncio.to_thread(
                subprocess.run,
                [str(Path(sys.executable).parent / "temporal"), "--version"],
                capture_output=True,
                text=True,
                check=False,
            )
            version += f" in the dev server of {cli.stdout.split(' (')[0].strip()}"
        else:
            version += " on PostgreSQL"
        return version


@contextlib.contextmanager
def bench_temporal(
    kind: str,
    scratch: Path,
    *,
    db_file: Path | None = None,
    search_attributes: dict[str, str] | None = None,
) -> Iterator[BenchTemporal]:
    """Start the dev server (in memory unless ``db_file``) or the real server (PostgreSQL
    without fsync, like a dev server's scratch state: the figures compare the servers, not
    the disks), and stop it afterwards."""
    if kind == "dev":
        dev = DevServer(
            DevServerConfig(
                port=free_port(),
                ui_port=None,
                db_file=db_file,
                search_attributes=search_attributes or {},
            )
        )
        dev.start()
        try:
            yield BenchTemporal(kind, dev.config.address, {"Temporal": dev.process.pid})
        finally:
            dev.stop()
        return
    real = TemporalServer(
        TemporalServerConfig(
            state_dir=scratch / "temporal-server",
            ports=ServerPorts.block(free_port_block(307) + 300),
            postgres_port=free_port(),
            durable=False,
        )
    )
    real.start()
    try:
        yield BenchTemporal(
            kind,
            real.config.address,
            {
                "Temporal server": real.process.pid if real.process else None,
                "PostgreSQL": real.postgres.process.pid if real.postgres.process else None,
            },
        )
        print(f"real server memory (PSS) at the end: {memory_line(real)}")
    finally:
        real.stop()


def memory_line(server: TemporalServer) -> str:
    sizes = server.memory_bytes()
    return ", ".join(f"{name} {size / 2**20:.0f} MB" for name, size in sizes.items())


def print_side_by_side(figures: dict[str, dict[str, str]], kinds: list[str]) -> None:
    """One row per headline figure, one column per server, measured in the same run."""
    if len(kinds) < 2:
        return
    width = max(len(name) for name in figures) + 2
    print(f"\n{'same run, both servers':<{width}}" + "".join(f"{k:>16}" for k in kinds))
    for name, values in figures.items():
        print(f"{name:<{width}}" + "".join(f"{values.get(k, '-'):>16}" for k in kinds))


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports below the ephemeral range (the real
    server's membership ports must stay below 32768)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        base = random.randrange(10_000, low - count)
        if all(_bindable(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between 10000 and {low}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_ready(
    module: str, env: dict[str, str], log: Path, prefix: str, *, timeout: float = 120
) -> tuple[ManagedProcess, int]:
    """Start ``python -m module`` with its management port on loopback and wait until its
    ``/readyz`` answers 200; the process and that port (``/metrics`` is there too)."""
    port = free_port()
    process = start_service(
        module,
        {
            **env,
            f"{prefix}HTTP__HOST": "127.0.0.1",
            f"{prefix}HTTP__PORT": str(port),
            "MUSTER_LOG__LEVEL": "WARNING",
        },
        log,
    )

    def ready() -> bool:
        if not process.running():
            raise RuntimeError(f"{module} exited:\n{process.tail()}")
        try:
            return http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    wait_until(ready, what=f"{module} ready", timeout=timeout)
    return process, port
