"""What the operator costs over calling Temporal yourself, in one run on one dev server:

direct    N ``create_schedule`` calls through the SDK (the same spec, memo and search
          attributes the operator writes), 50 at a time; the calls return before Temporal
          has done its share (each schedule starts a workflow), so the row below is the time
          until the dev server is idle again;
operator  N ``Schedule`` resources created at once through the real kube-apiserver; the
          clock stops when the last one reports ``Ready=True`` for its generation; then
          until the dev server is idle, and until every status shows its next run (filled in
          by the first resync).

Per resource, "apply → Ready" is the time from the API server accepting the create to a
watch seeing Ready; "reconcile" is the operator's own handler time (its
``controller_runtime_reconcile_time_seconds`` histogram). Targets: all Ready within 1.5x of
the direct calls' work (until Temporal is idle), p99 reconcile under 2 s. When the dev
server shares the cores with the operator and the API server, its own work for N creates
overlaps the operator's run but not the direct calls, so "all Ready / direct calls returned"
is printed too.

Run: ``make bench`` or ``python -m bench.bench_operator [--schedules N]``.
"""

from __future__ import annotations

import argparse
import asyncio
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

from bench.harness import (
    REPO,
    TEMPORAL_MARKERS,
    add_temporal_option,
    bench_temporal,
    print_side_by_side,
    temporal_kinds,
)
from muster_api import search_attributes as sa
from muster_api import v1alpha1
from muster_dev.kube import KubeAccess, control_plane
from muster_dev.process import ManagedProcess, free_port
from muster_operator.reconcile import desired_schedule, schedule_memo
from muster_runtime.client import connect
from muster_runtime.polling import wait_until
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings

GROUP, VERSION, PLURAL = "muster.io", "v1alpha1", "schedules"
NAMESPACE = "bench"
FLOOR_NAMESPACE = "bench-unwatched"  # the operator does not watch it: the API server alone


def spec(i: int) -> dict[str, Any]:
    """A daily schedule (minute varies) of a workflow nobody runs: nothing fires in the run."""
    return {
        "cron": [f"{i % 60} 3 * * *"],
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


# Which processes are which part (a marker in the command line; the first match counts).
PROCESSES: dict[str, tuple[str, ...]] = {
    "kube-apiserver": ("kube-apiserver",),
    "etcd": ("etcd",),
    "Temporal": TEMPORAL_MARKERS["dev"],
    "operator": ("-m muster_operator",),
    "bench (kube client, watch)": ("bench.bench_operator",),
}


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by each part, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(PROCESSES, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        for name, markers in PROCESSES.items():
            if any(marker in cmdline for marker in markers):
                used[name] += (int(fields[11]) + int(fields[12])) / tick
                break
    return used


async def settle(quiet: float = 0.05) -> float:
    """Wait until Temporal (the dev server, or the real server and PostgreSQL) uses under 5%
    of a core (its queued work is done); returns when it went quiet (``perf_counter``,
    start of the first quiet second)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        started = time.perf_counter()
        before = cpu_seconds()["Temporal"]
        await asyncio.sleep(1)
        if cpu_seconds()["Temporal"] - before < quiet:
            return started
    raise RuntimeError("Temporal did not go quiet within 120 s: the figures would be wrong")


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


async def main_async(count: int, kind: str = "dev") -> dict[str, str]:
    PROCESSES["Temporal"] = TEMPORAL_MARKERS[kind]
    scratch = Path(tempfile.mkdtemp(prefix="muster-bench-operator-"))
    with bench_temporal(kind, scratch) as temporal:
        return await measure(count, temporal.address, temporal.label, scratch)


async def measure(count: int, address: str, label: str, scratch: Path) -> dict[str, str]:
    """The direct and the operator runs against one Temporal; the headline figures."""
    client = await connect(TemporalSettings(address=address), tracing=False)
    await ensure_search_attributes(client, "default")
    with control_plane(workdir=scratch / "plane") as access:
        api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=access.kubeconfig, context=access.context
        )
        for name in (NAMESPACE, FLOOR_NAMESPACE):
            k8s.CoreV1Api(api_client).create_namespace(
                k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name))
            )
        install_crds(api_client)
        operator, metrics_port = start_operator(access, address, scratch)
        try:
            await settle()
            cpu_before = cpu_seconds()
            began = time.perf_counter()
            direct_seconds, direct_ms = await direct(client, count, concurrency=50)
            # Temporal starts each schedule's workflow after the call returns; let it
            # finish so the operator's run does not pay for the direct one.
            direct_idle = await settle() - began
            floor = await asyncio.to_thread(kube_floor, api_client, count)
            cpu_between = cpu_seconds()
            run = await asyncio.to_thread(through_operator, api_client, count)
            text = await asyncio.to_thread(_scrape, f"http://127.0.0.1:{metrics_port}/metrics")
            # Like the direct row: until Temporal has done all the work the run caused
            # (including the first resyncs, which read each schedule back).
            op_idle = await settle() - run.began
            cpu_after = cpu_seconds()
            if not await asyncio.to_thread(run.filled.wait, 120):
                raise SystemExit(
                    f"only {len(run.filled_at)} of {count} statuses show a next run after 2 min"
                )
        finally:
            operator.stop(grace=20)
    p50, observed = histogram_quantile(text, "controller_runtime_reconcile_time_seconds", 0.5)
    p99, _ = histogram_quantile(text, "controller_runtime_reconcile_time_seconds", 0.99)
    listed = [s async for s in await client.list_schedules()]
    print(f"\n{label}: {count} schedules; {len(listed)} Temporal schedules exist after the run\n")
    print(f"{'variant':<34} {'total s':>8} {'/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    op_seconds = max(run.ready_at.values()) - run.began
    ready_ms = [(run.ready_at[n] - run.created_at[n]) * 1000 for n in run.created_at]
    filled_ms = [(run.filled_at[n] - run.created_at[n]) * 1000 for n in run.created_at]
    rows = [
        ("direct create_schedule (50 at once)", direct_seconds, direct_ms),
        ("  ... until Temporal is idle", direct_idle, []),
        ("operator: apply → all Ready", op_seconds, ready_ms),
        ("  ... until Temporal is idle", op_idle, []),
        ("  ... next run shown in status", max(run.filled_at.values()) - run.began, filled_ms),
        ("  kube-apiserver create calls (16)", run.creating, run.calls),
        ("kube only: same creates, unwatched", floor, []),
    ]
    for name, seconds, values in rows:
        spread = (
            f"{percentile(values, 0.5):>8.1f} {percentile(values, 0.99):>8.1f}"
            if values
            else f"{'-':>8} {'-':>8}"
        )
        print(f"{name:<34} {seconds:>8.2f} {count / seconds:>8.1f} {spread}")
    print(
        f"\noperator reconcile (handler histogram, {observed} reconciles): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (target p99 < 2000 ms)"
    )
    print(
        f"\nCPU seconds used ({os.cpu_count()} cores shared by everything; each column until idle):"
    )
    print(f"{'process':<26} {'direct+kube':>11} {'operator':>9}")
    for name in PROCESSES:
        print(
            f"{name:<26} {cpu_between[name] - cpu_before[name]:>11.1f} "
            f"{cpu_after[name] - cpu_between[name]:>9.1f}"
        )
    print(f"operator all Ready / direct calls returned: {op_seconds / direct_seconds:.2f}x")
    print(
        f"operator all Ready / direct until Temporal idle: {op_seconds / direct_idle:.2f}x "
        f"(target ≤ 1.5x)"
    )
    print(f"both until Temporal idle: {op_idle / direct_idle:.2f}x")
    print(
        f"floor of any operator here (kube creates + direct until idle): "
        f"{(floor + direct_idle) / direct_idle:.2f}x"
    )
    print(f"mean apply → Ready: {statistics.fmean(ready_ms):.0f} ms")
    return {
        "direct creates returned (s)": f"{direct_seconds:.1f}",
        "direct until Temporal idle (s)": f"{direct_idle:.1f}",
        "operator: all Ready (s)": f"{op_seconds:.1f}",
        "all Ready / direct idle": f"{op_seconds / direct_idle:.2f}x",
        "reconcile p50 / p99 (ms)": f"{p50 * 1000:.0f} / {p99 * 1000:.0f}",
        "apply → Ready p50 (ms)": f"{percentile(ready_ms, 0.5):.0f}",
        "Temporal CPU, operator run (s)": (
            f"{cpu_after['Temporal'] - cpu_between['Temporal']:.1f}"
        ),
    }


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        text: str = response.read().decode()
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=500)
    add_temporal_option(parser)
    args = parser.parse_args()
    kinds = temporal_kinds(args.temporal)
    figures: dict[str, dict[str, str]] = {}
    for kind in kinds:
        for name, value in asyncio.run(main_async(args.schedules, kind)).items():
            figures.setdefault(name, {})[kind] = value
    print_side_by_side(figures, kinds)


if __name__ == "__main__":
    main()
