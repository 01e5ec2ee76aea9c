"""What the operator costs over calling Temporal yourself, as a series of sizes; each size on
a fresh Temporal and a fresh kube-apiserver:

direct    N ``create_schedule`` calls through the SDK (the same spec, memo and search
          attributes the operator writes), 50 at a time; the calls return before Temporal
          has done its share (each schedule starts a workflow), so the row below is the time
          until Temporal is idle again;
operator  N ``Schedule`` resources created at once through the real kube-apiserver; the
          clock stops when the last one reports ``Ready=True`` for its generation; then
          until Temporal is idle, and until every status shows its next run (filled in by
          the first resync); then ``--idle-seconds`` with nothing changing, counting the
          API server's writes to Muster's resources (its ``apiserver_request_total``).

Per resource, "apply → Ready" is the time from the API server accepting the create to a
watch seeing Ready; "reconcile" is the operator's own handler time (its
``controller_runtime_reconcile_time_seconds`` histogram). Targets at every size (default
100, 500, 1,000, 2,000 Schedules): all Ready within 1.3x of the direct calls' work (until
Temporal is idle), p99 reconcile under 1 s, the operator's RSS growth under 200 MB, and no
API writes at all while nothing changes. When Temporal shares the cores with the operator
and the API server, its own work for N creates overlaps the operator's run but not the
direct calls, so "all Ready / direct calls returned" is printed too.

Run: ``make bench`` or ``python -m bench.bench_operator [--sizes 100,500]``
(``make kube-tools`` first).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from bench import machine, results
from bench.harness import (
    REPO,
    BenchTemporal,
    add_temporal_option,
    bench_temporal,
    temporal_kinds,
)
from muster_api import search_attributes as sa
from muster_api import v1alpha1
from muster_dev.kube import KubeAccess, LocalControlPlane
from muster_dev.process import ManagedProcess, free_port
from muster_operator.reconcile import desired_schedule, schedule_memo
from muster_runtime.client import connect
from muster_runtime.polling import wait_until
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings

GROUP, VERSION, PLURAL = "muster.io", "v1alpha1", "schedules"
NAMESPACE = "bench"
FLOOR_NAMESPACE = "bench-unwatched"  # the operator does not watch it: the API server alone
SIZES = "100,500,1000,2000"
RATIO_TARGET = 1.3
RECONCILE_P99_TARGET_MS = 1000.0
RSS_TARGET_MB = 200.0
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "APPLY")


def quiet_hour(now: dt.datetime | None = None) -> int:
    """The UTC hour twelve hours from now: daily schedules at that hour do not fire while the
    bench runs. (A fixed hour fired during runs made in it: each firing changes the
    Schedule's status, and the idle minutes counted those writes as waste.)"""
    return ((now or dt.datetime.now(dt.UTC)).hour + 12) % 24


QUIET_HOUR = quiet_hour()


def spec(i: int) -> dict[str, Any]:
    """A daily schedule (minute varies) of a workflow nobody runs, at an hour far from now:
    nothing fires in the run."""
    return {
        "cron": [f"{i % 60} {QUIET_HOUR} * * *"],
        "timeZone": "UTC",
        "policy": {"overlap": "Skip"},
        "workflow": {"type": "BenchReport", "taskQueue": "bench-none"},
    }


def resource(name: str, i: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A Schedule resource body."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec(i),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def histogram_quantile(text: str, name: str, q: float) -> tuple[float, int]:
    """Prometheus' histogram_quantile over one scrape: (seconds, observations)."""
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("controller") == "schedule":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if not total:
        return 0.0, 0
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower, int(total)
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share, int(total)
        lower, below = bound, count
    return lower, int(total)


# -- direct ----------------------------------------------------------------------------------


async def direct(client: Client, count: int, concurrency: int) -> tuple[float, list[float]]:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        model = v1alpha1.Schedule.model_validate(resource(f"direct-{i}", i))
        async with semaphore:
            started = time.perf_counter()
            await client.create_schedule(
                f"direct.direct-{i}",
                desired_schedule(model),
                memo=schedule_memo(model),
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.PATTERN, "schedule"),
                        SearchAttributePair(sa.SCHEDULE, f"direct/direct-{i}"),
                    ]
                ),
            )
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - began, latencies


# -- through the operator --------------------------------------------------------------------


def install_crds(api_client: k8s.ApiClient) -> None:
    ext = k8s.ApiextensionsV1Api(api_client)
    for path in sorted((REPO / "charts/muster/files/crds").glob("*.yaml")):
        ext.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    custom = k8s.CustomObjectsApi(api_client)
    wait_until(
        lambda: custom.list_cluster_custom_object(GROUP, VERSION, PLURAL) is not None,
        what="the Schedule CRD to be served",
        timeout=60,
        ignore=(ApiException,),
    )


def start_operator(access: KubeAccess, address: str, scratch: Path) -> tuple[ManagedProcess, int]:
    metrics_port, liveness_port = free_port(), free_port()
    env = {
        **os.environ,
        **access.env(),
        "TEMPORAL_ADDRESS": address,
        "MUSTER_OPERATOR_NAMESPACES": json.dumps([NAMESPACE]),
        "MUSTER_OPERATOR_POLICY_CONFIGMAP_NAMESPACE": NAMESPACE,
        "MUSTER_OPERATOR_HTTP__HOST": "127.0.0.1",
        "MUSTER_OPERATOR_HTTP__PORT": str(metrics_port),
        "MUSTER_OPERATOR_LIVENESS_PORT": str(liveness_port),
        "MUSTER_OPERATOR_LOG__LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
    }
    process = ManagedProcess(
        "operator",
        [sys.executable, "-m", "muster_operator"],
        env=env,
        log_path=scratch / "operator.log",
    )
    process.start()

    def alive() -> bool:
        assert process.running(), process.tail()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    wait_until(alive, what="the operator's liveness endpoint", timeout=60)
    return process, metrics_port


@dataclass
class OperatorRun:
    """What the watch saw of the operator's run (times are ``perf_counter``)."""

    began: float
    created_at: dict[str, float]
    ready_at: dict[str, float]
    calls: list[float]
    creating: float
    filled: threading.Event  # set once every status shows Temporal's next run
    filled_at: dict[str, float] = field(default_factory=dict)


def through_operator(api_client: k8s.ApiClient, count: int) -> OperatorRun:
    """Create ``count`` Schedules at once; return when all are Ready (the watch goes on until
    every status shows its next run, which the first resync fills in)."""
    custom = k8s.CustomObjectsApi(api_client)
    created_at: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    filled_at: dict[str, float] = {}
    done, filled = threading.Event(), threading.Event()

    def seen(body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        status = body.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready and name not in ready_at:
            ready_at[name] = time.perf_counter()
            if len(ready_at) == count:
                done.set()
        if status.get("nextActionTimes") and name not in filled_at:
            filled_at[name] = time.perf_counter()
            if len(filled_at) == count:
                filled.set()

    def watcher() -> None:
        # List, then watch from the list's version; a watch that ends or expires is
        # re-listed (what an informer does), so no change is missed.
        while not filled.is_set():
            listed = cast(
                "dict[str, Any]",
                custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL),
            )
            for body in listed["items"]:
                seen(body)
            version = listed["metadata"]["resourceVersion"]
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    PLURAL,
                    resource_version=version,
                    timeout_seconds=30,
                ):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        seen(event["object"])
                    if filled.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
            except (ApiException, ValueError, OSError):
                continue

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    calls: list[float] = []

    def create(i: int) -> None:
        name = f"sched-{i}"
        started = time.perf_counter()
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, resource(name, i))
        created_at[name] = time.perf_counter()
        calls.append((created_at[name] - started) * 1000)

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, range(count)))
    creating = time.perf_counter() - began
    if not done.wait(timeout=600):
        raise SystemExit(f"only {len(ready_at)} of {count} Schedules became Ready in 10 min")
    return OperatorRun(began, created_at, ready_at, calls, creating, filled, filled_at)


def kube_floor(api_client: k8s.ApiClient, count: int) -> float:
    """Seconds to create ``count`` Schedules nobody reconciles: the API server's share."""
    custom = k8s.CustomObjectsApi(api_client)

    def create(i: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, FLOOR_NAMESPACE, PLURAL, resource(f"floor-{i}", i, FLOOR_NAMESPACE)
        )

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, range(count)))
    return time.perf_counter() - began


async def count_schedules(client: Client, timeout: float = 30.0) -> int | None:
    """How many schedules Temporal lists, or None when it will not list them. A real server
    run with ``system.forceSearchAttributesCacheRefreshOnRead`` (the local launcher set it
    until December 2026) reads the namespace from PostgreSQL for each listed schedule: from
    about 4,000 schedules on, a list exceeds the persistence rate limit (RESOURCE_EXHAUSTED
    "System Persistence Max QPS Reached") every time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return len([s async for s in await client.list_schedules()])
        except RPCError as exc:
            if exc.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                raise
            if time.monotonic() > deadline:
                print(f"Temporal will not list the schedules ({exc.message}); not counted")
                return None
            await asyncio.sleep(2)


async def settle(meter: machine.CpuMeter, quiet: float = 0.05) -> float:
    """Wait until Temporal (the dev server, or the real server and PostgreSQL) uses under 5%
    of a core (its queued work is done); returns when it went quiet (``perf_counter``,
    start of the first quiet second)."""

    def temporal() -> float:
        used = meter.read()
        return sum(v for k, v in used.items() if k in TEMPORAL_PARTS)

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        started = time.perf_counter()
        before = temporal()
        await asyncio.sleep(1)
        if temporal() - before < quiet:
            return started
    raise RuntimeError("Temporal did not go quiet within 300 s: the figures would be wrong")


TEMPORAL_PARTS = ("Temporal", "Temporal server", "PostgreSQL")


def api_writes(text: str) -> dict[str, float]:
    """The API server's write requests to Muster's resources so far, by verb and resource
    (from its ``apiserver_request_total``)."""
    writes: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "apiserver_request_total"
                and labels.get("group") == GROUP
                and labels.get("verb") in WRITE_VERBS
            ):
                resource = labels.get("resource", "?")
                if labels.get("subresource"):
                    resource += "/" + labels["subresource"]
                key = f"{labels['verb']} {resource}"
                writes[key] = writes.get(key, 0.0) + sample.value
    return writes


def apiserver_metrics(api_client: k8s.ApiClient) -> str:
    """kube-apiserver's /metrics, read with the bench's admin credentials."""
    response = api_client.call_api("GET", f"{api_client.configuration.host}/metrics")
    if response.status != 200:
        raise RuntimeError(f"kube-apiserver /metrics answered {response.status}")
    return cast("bytes", response.read()).decode()  # type: ignore[no-untyped-call]


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
    return text


async def main_async(args: argparse.Namespace, kind: str, report: results.Report) -> None:
    for size in args.sizes:
        scratch = Path(tempfile.mkdtemp(prefix="muster-bench-operator-"))
        with bench_temporal(kind, scratch) as temporal:
            run = report.server(kind, temporal.label, await temporal.version())
            await measure(args, size, temporal, scratch, run)
        report.save(results.results_folder(args))


async def measure(
    args: argparse.Namespace,
    count: int,
    temporal: BenchTemporal,
    scratch: Path,
    run: results.ServerRun,
) -> None:
    """The direct and the operator runs against one Temporal; one point of the series."""
    client = await connect(TemporalSettings(address=temporal.address), tracing=False)
    await ensure_search_attributes(client, "default")
    with LocalControlPlane(workdir=scratch / "plane") as plane:
        access = plane.access
        assert access is not None
        assert plane.apiserver is not None
        assert plane.etcd is not None
        api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=access.kubeconfig, context=access.context
        )
        for name in (NAMESPACE, FLOOR_NAMESPACE):
            k8s.CoreV1Api(api_client).create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name))
            )
        install_crds(api_client)
        operator, metrics_port = start_operator(access, temporal.address, scratch)
        assert operator.pid is not None
        meter = machine.CpuMeter(
            {
                **temporal.pids,
                "kube-apiserver": plane.apiserver.pid,
                "etcd": plane.etcd.pid,
                "operator": operator.pid,
                "bench (kube client, watch)": os.getpid(),
            },
            own="bench (kube client, watch)",
        )
        try:
            await settle(meter)
            rss_idle, _ = machine.rss_mb(operator.pid)
            with machine.measured() as conditions:
                cpu_before = meter.read()
                began = time.perf_counter()
                direct_seconds, direct_ms = await direct(client, count, concurrency=50)
                # Temporal starts each schedule's workflow after the call returns; let it
                # finish so the operator's run does not pay for the direct one.
                direct_idle = await settle(meter) - began
                floor = await asyncio.to_thread(kube_floor, api_client, count)
                cpu_between = meter.read()
                op = await asyncio.to_thread(through_operator, api_client, count)
                text = await asyncio.to_thread(_scrape, f"http://127.0.0.1:{metrics_port}/metrics")
                # Like the direct row: until Temporal has done all the work the run caused
                # (including the first resyncs, which read each schedule back).
                op_idle = await settle(meter) - op.began
                cpu_after = meter.read()
                if not await asyncio.to_thread(op.filled.wait, 300):
                    raise SystemExit(
                        f"only {len(op.filled_at)} of {count} statuses show a next run after 5 min"
                    )
                rss_busy, rss_peak = machine.rss_mb(operator.pid)
            # Nothing changes from here on: every write the API server takes is a waste.
            await settle(meter)
            writes_before = api_writes(await asyncio.to_thread(apiserver_metrics, api_client))
            idle_began = time.perf_counter()
            with meter.split(count, "Schedule") as idle_split:
                await asyncio.sleep(args.idle_seconds)
            writes_after = api_writes(await asyncio.to_thread(apiserver_metrics, api_client))
            idle_minutes = (time.perf_counter() - idle_began) / 60
            rss_end, rss_peak = machine.rss_mb(operator.pid)
        finally:
            operator.stop(grace=20)
    idle_writes = {
        key: writes_after[key] - writes_before.get(key, 0.0)
        for key in writes_after
        if writes_after[key] - writes_before.get(key, 0.0) > 0
    }
    p50, observed = histogram_quantile(text, "controller_runtime_reconcile_time_seconds", 0.5)
    p99, _ = histogram_quantile(text, "controller_runtime_reconcile_time_seconds", 0.99)
    listed = await count_schedules(client)
    op_seconds = max(op.ready_at.values()) - op.began
    ready_ms = [(op.ready_at[n] - op.created_at[n]) * 1000 for n in op.created_at]
    filled_ms = [(op.filled_at[n] - op.created_at[n]) * 1000 for n in op.created_at]
    split = {
        "direct": machine.CpuSplit(
            {k: cpu_between[k] - cpu_before[k] for k in meter.parts}, count, "Schedule",
            direct_idle + floor,
        ),
        "operator": machine.CpuSplit(
            {k: cpu_after[k] - cpu_between[k] for k in meter.parts}, count, "Schedule", op_idle
        ),
        "idle": idle_split,
    }  # fmt: skip
    metrics = {
        "schedules": count,
        **({} if listed is None else {"temporal_schedules": listed}),
        "direct_seconds": direct_seconds,
        "direct_idle_seconds": direct_idle,
        "operator_ready_seconds": op_seconds,
        "operator_idle_seconds": op_idle,
        "status_filled_seconds": max(op.filled_at.values()) - op.began,
        "kube_create_seconds": op.creating,
        "kube_floor_seconds": floor,
        "ratio_ready_to_direct_idle": op_seconds / direct_idle,
        "ratio_ready_to_direct_returned": op_seconds / direct_seconds,
        "ratio_idle_to_idle": op_idle / direct_idle,
        "reconcile_p50_ms": p50 * 1000,
        "reconcile_p99_ms": p99 * 1000,
        "reconciles": observed,
        "apply_ready_p50_ms": percentile(ready_ms, 0.5),
        "apply_ready_p99_ms": percentile(ready_ms, 0.99),
        "apply_ready_mean_ms": statistics.fmean(ready_ms),
        "status_filled_p50_ms": percentile(filled_ms, 0.5),
        "direct_call_p50_ms": percentile(direct_ms, 0.5),
        "direct_call_p99_ms": percentile(direct_ms, 0.99),
        "operator_rss_idle_mb": rss_idle,
        "operator_rss_mb": rss_busy,
        "operator_rss_end_mb": rss_end,
        "operator_rss_peak_mb": rss_peak,
        "operator_rss_growth_mb": max(rss_busy, rss_end) - rss_idle,
        "idle_minutes": idle_minutes,
        "idle_writes_per_minute": sum(idle_writes.values()) / idle_minutes,
    }
    point = results.Point(
        count,
        {k: round(float(v), 3) for k, v in metrics.items()},
        conditions.as_json(),
        {name: value.as_json() for name, value in split.items()},
        {"idle_writes": idle_writes},
    )
    run.points.append(point)
    limits = {"max_load": args.max_load, "max_foreign": args.max_foreign_cores}
    targets = [
        results.judge(
            "all Ready / direct until Temporal idle", metrics["ratio_ready_to_direct_idle"],
            RATIO_TARGET, "x", size=count, conditions=conditions, **limits,
        ),
        results.judge(
            "reconcile p99", metrics["reconcile_p99_ms"], RECONCILE_P99_TARGET_MS, "ms",
            size=count, conditions=conditions, **limits,
        ),
        results.judge(
            "operator RSS growth", metrics["operator_rss_growth_mb"], RSS_TARGET_MB, "MB",
            size=count, conditions=conditions, **limits,
        ),
    ]  # fmt: skip
    # A write is a write however busy the host was: this one is judged whatever the load.
    writes = metrics["idle_writes_per_minute"]
    targets.append(
        results.Target(
            "API writes per minute when nothing changes", writes, 0.0, "/min", "lower",
            count, results.MET if writes == 0 else results.MISSED,
        )
    )  # fmt: skip
    run.targets += targets
    print_point(temporal.label, point, split, targets, idle_writes)


def print_point(
    label: str,
    point: results.Point,
    split: dict[str, machine.CpuSplit],
    targets: list[results.Target],
    idle_writes: dict[str, float],
) -> None:
    m = point.metrics
    count = point.size
    listed = m.get("temporal_schedules")
    exist = "not listed" if listed is None else f"{listed:.0f}"
    print(f"\n{label}: {count} schedules; Temporal schedules: {exist}")
    print(f"{'variant':<34} {'total s':>8} {'/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    rows = [
        ("direct create_schedule (50 at once)", m["direct_seconds"],
         (m["direct_call_p50_ms"], m["direct_call_p99_ms"])),
        ("  ... until Temporal is idle", m["direct_idle_seconds"], None),
        ("operator: apply → all Ready", m["operator_ready_seconds"],
         (m["apply_ready_p50_ms"], m["apply_ready_p99_ms"])),
        ("  ... until Temporal is idle", m["operator_idle_seconds"], None),
        ("  ... next run shown in status", m["status_filled_seconds"], None),
        ("  kube-apiserver create calls (16)", m["kube_create_seconds"], None),
        ("kube only: same creates, unwatched", m["kube_floor_seconds"], None),
    ]  # fmt: skip
    for name, seconds, spread in rows:
        shown = f"{spread[0]:>8.1f} {spread[1]:>8.1f}" if spread else f"{'-':>8} {'-':>8}"
        print(f"{name:<34} {seconds:>8.2f} {count / seconds:>8.1f} {shown}")
    print(
        f"operator reconcile ({m['reconciles']:.0f} reconciles): p50 "
        f"{m['reconcile_p50_ms']:.0f} ms, p99 {m['reconcile_p99_ms']:.0f} ms"
    )
    print(
        f"operator RSS idle {m['operator_rss_idle_mb']:.0f} MB → {m['operator_rss_mb']:.0f} MB "
        f"with {count} Schedules ({m['operator_rss_end_mb']:.0f} MB after the idle minutes, "
        f"peak {m['operator_rss_peak_mb']:.0f} MB)"
    )
    print(f"operator all Ready / direct calls returned: {m['ratio_ready_to_direct_returned']:.2f}x")
    print(f"both until Temporal idle: {m['ratio_idle_to_idle']:.2f}x")
    print(
        f"floor of any operator here (kube creates + direct until idle): "
        f"{(m['kube_floor_seconds'] + m['direct_idle_seconds']) / m['direct_idle_seconds']:.2f}x"
    )
    print(
        f"API writes to muster.io in {m['idle_minutes']:.1f} idle minutes: "
        + (", ".join(f"{k} {v:.0f}" for k, v in idle_writes.items()) or "none")
    )
    c = point.conditions
    print(
        f"conditions: load {c['load_before'][0]} → {c['load_after'][0]}, other processes "
        f"{c['foreign_cores']} cores, bench {c['bench_cores']} cores"
    )
    for target in targets:
        print(target.line)
    missed = any(t.verdict == results.MISSED for t in targets)
    for name in ("direct", "operator") + (("idle",) if missed else ()):
        print(f"{name}: " + "\n  ".join(split[name].lines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results.add_series_options(parser, SIZES)
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=150.0,
        help="how long to count API writes while nothing changes (default 150: two and a "
        "half resync intervals)",
    )
    add_temporal_option(parser)
    args = parser.parse_args()
    report = results.Report(
        "operator", "Schedules through the operator",
        {k: v for k, v in vars(args).items() if k != "results"},
    )  # fmt: skip
    for kind in temporal_kinds(args.temporal):
        asyncio.run(main_async(args, kind, report))
    report.save(results.results_folder(args))
    print("\n" + "\n".join(report.summary()))


if __name__ == "__main__":
    main()
