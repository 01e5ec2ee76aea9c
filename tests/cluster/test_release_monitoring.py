"""Monitoring as users run it, on the node: the Prometheus Operator (with its config
reloader) and a Prometheus, both in a namespace of their own; the release upgraded to ship
its PodMonitor and PrometheusRule with the label that Prometheus selects, and with its
metrics port opened to that namespace only (``networkPolicy.metricsFrom``). Every Muster pod
becomes a healthy target, the alert rules are loaded and evaluated, the metrics refuse a
pod of another namespace, and after an end-to-end run (orders fulfilled and compensated,
an approval decided, a schedule triggered, failures on the way) every dashboard panel on a
path the run took returns data from the pods. Last, the chart's other way in: a
ServiceMonitor (over a headless metrics Service) instead of the PodMonitor finds every pod
too."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.monitoring import SELECT, build_images, install, uninstall
from tests.cluster.release import Release
from tests.cluster.support import (
    ClusterHandle,
    apply,
    import_images,
    sleeper,
    wait_for_http,
    wait_ready,
)
from tests.dashboards import panel_queries
from tests.helpers import REPO, async_wait_until, wait_until
from tests.platform_support import TOKENS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ALERTS = yaml.safe_load((REPO / "charts" / "muster" / "files" / "alerts.yaml").read_text())
# Panels on paths this run does not take, and why.
NOT_EXERCISED = {
    "approvals: Escalations": "no request outlives its first deadline here",
    "approvals: Decided by timeout (24h)": "no request outlives its deadline here",
    "fulfillment: Orders parked for a person": "every compensation succeeds",
    "operator: Drift corrections (1h)": "nobody edits a schedule behind the operator",
    "operator: Drift corrections": "nobody edits a schedule behind the operator",
    "schedules: Drift corrections": "nobody edits a schedule behind the operator",
    "schedules: Scheduled workflows failed": "no scheduled run fails",
    "temporal-workers: Workflow task failures": "no workflow task fails",
}


def scraped_by(namespace: str, monitor: str) -> dict[str, Any]:
    """Chart values that have the Prometheus of ``namespace`` scrape the release through a
    ``podMonitor`` or a ``serviceMonitor`` (the other one off) and load its rules."""
    other = "serviceMonitor" if monitor == "podMonitor" else "podMonitor"
    return {
        "monitoring": {
            monitor: {"enabled": True, "interval": "5s", "labels": {SELECT: namespace}},
            other: {"enabled": False},
            "prometheusRule": {"enabled": True, "labels": {SELECT: namespace}},
        },
        "networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": namespace}}}]},
        # One cached workflow per approval pod: a decision on a request another one pushed
        # out of the cache replays its history (the sticky cache miss a dashboard shows).
        "approval": {"maxCachedWorkflows": 1},
    }  # fmt: skip


@pytest.fixture(scope="module")
def monitoring(
    release: Release, cluster: ClusterHandle, node_core: client.CoreV1Api, tmp_path_factory: Any
) -> Iterator[str]:
    """The monitoring namespace, its Prometheus ready, the release scraped by it."""
    images = build_images()
    import_images(cluster, *images.references)
    namespace = f"monitoring-{uuid.uuid4().hex[:6]}"
    labels = {"muster.io/cluster-test": "true", "pod-security.kubernetes.io/enforce": "restricted"}
    node_core.create_namespace({"metadata": {"name": namespace, "labels": labels}})  # type: ignore[arg-type]
    kubectl = release.kubectl
    values = tmp_path_factory.mktemp("monitoring") / "values.yaml"
    values.write_text(yaml.safe_dump(scraped_by(namespace, "podMonitor")))
    try:
        install(kubectl, namespace, images)
        kubectl("rollout", "status", "-n", namespace, "deployment/prometheus-operator",
                "--timeout=180s", timeout=200)  # fmt: skip
        wait_until(
            lambda: kubectl("get", "statefulset", "-n", namespace, "prometheus-muster",
                            check=False).returncode == 0,
            what="the operator to make Prometheus's StatefulSet", timeout=120, interval=1,
        )  # fmt: skip
        kubectl("rollout", "status", "-n", namespace, "statefulset/prometheus-muster",
                "--timeout=240s", timeout=260)  # fmt: skip
        release.helm("upgrade", *release.install_args(release.current_tag),
                     "--values", str(values), timeout=120)  # fmt: skip
        release.wait_available()
        yield namespace
    finally:
        release.helm("upgrade", *release.install_args(release.current_tag), timeout=120,
                     check=False)  # fmt: skip
        release.wait_available()
        uninstall(kubectl, namespace)


def api(release: Release, namespace: str, path: str, **params: str) -> Any:
    """GET Prometheus's HTTP API through a port-forward to its Service."""
    with release.forward_to(namespace, "svc/prometheus-operated", 9090) as address:
        answer = httpx.get(f"http://{address}{path}", params=params, timeout=30)
    answer.raise_for_status()
    return answer.json()["data"]


def wait_every_pod_a_healthy_target(release: Release, monitoring: str, monitor: str) -> None:
    """Wait until every Muster pod is a healthy target of the release's ``monitor``
    (``podMonitor`` or ``serviceMonitor``: the scrape pool Prometheus names after it)."""
    pods = release.json("pods", "-l", "muster.io/metrics=true")["items"]
    want = {p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")}
    assert len(want) >= 8, want  # operator, 3 workers (2 fulfillment), 2 gateways, backends
    pool = f"{monitor}/{release.namespace}/"
    seen: dict[str, str] = {}

    def all_up() -> bool:
        seen.clear()
        for target in api(release, monitoring, "/api/v1/targets", state="active")["activeTargets"]:
            if target["scrapePool"].startswith(pool):
                seen[target["labels"]["pod"]] = target["health"]
        return {p for p, h in seen.items() if h == "up"} == want

    try:
        wait_until(all_up, what=f"every Muster pod a healthy target of the {monitor}",
                   timeout=180, interval=2)  # fmt: skip
    except TimeoutError:
        pytest.fail(f"targets {seen}, pods {sorted(want)}")


def test_every_muster_pod_is_a_healthy_target(
    release: Release, monitoring: str, node_namespace: NamespaceFactory
) -> None:
    wait_every_pod_a_healthy_target(release, monitoring, "podMonitor")

    # The metrics port answers the monitoring namespace only: another is refused.
    other = node_namespace(restricted=True)
    apply(release.kubectl, other, sleeper("client"))
    wait_ready(release.kubectl, other, "client")
    backends = release.pods("backends")[0]["status"]["podIP"]
    refused = wait_for_http(release.kubectl, other, "client", f"http://{backends}:9090/metrics",
                            ok=False)  # fmt: skip
    assert "timed out" in refused["error"], refused


def test_the_alert_rules_are_loaded_and_evaluated(release: Release, monitoring: str) -> None:
    want = {g["name"]: sorted(r["alert"] for r in g["rules"]) for g in ALERTS["groups"]}
    found: dict[str, Any] = {}

    def loaded() -> bool:
        found.clear()
        for group in api(release, monitoring, "/api/v1/rules", type="alert")["groups"]:
            found[group["name"]] = group
        return set(want) <= set(found) and all(
            g["lastEvaluation"] != "0001-01-01T00:00:00Z" for g in found.values()
        )

    wait_until(loaded, what="the chart's alert rules loaded and evaluated", timeout=180,
               interval=2)  # fmt: skip
    for name, alerts in want.items():
        group = found[name]
        assert sorted(r["name"] for r in group["rules"]) == alerts, name
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule


async def test_dashboards_show_an_end_to_end_run(release: Release, monitoring: str) -> None:
    await drive_a_run(release, monitoring)
    queries = panel_queries()
    assert set(NOT_EXERCISED) <= {where for where, _ in queries}, "a listed panel is gone"
    missing: list[str] = []

    def all_have_data() -> bool:
        missing.clear()
        for where, expr in queries:
            result = api(release, monitoring, "/api/v1/query", query=expr)
            if where not in NOT_EXERCISED and not result["result"]:
                missing.append(f"{where}: {expr}")
        return not missing

    try:
        await asyncio.to_thread(wait_until, all_have_data, what="data in every exercised panel",
                                timeout=180, interval=5)  # fmt: skip
    except TimeoutError:
        pytest.fail("panels without data:\n" + "\n".join(missing))


async def drive_a_run(release: Release, monitoring: str) -> None:
    """Orders that are fulfilled and compensated (a declined card, an address nobody ships
    to) while releasing stock fails for a while (retried activities), a large one approved
    after another request pushed it out of the approval worker's cache, an approval
    rejected, a schedule triggered once, and a Schedule that claims a schedule somebody else
    made in Temporal (the operator refuses it: a reconcile error)."""
    policy = yaml.safe_load((REPO / "examples" / "policies" / "large-orders.yaml").read_text())
    apply(release.kubectl, release.namespace, policy)
    release.wait_policy(release.namespace, "large-orders")
    basic = json.loads((REPO / "examples" / "orders" / "basic.json").read_text())
    large = json.loads((REPO / "examples" / "orders" / "large.json").read_text())
    orders = []
    for n, (base, token, country) in enumerate([
        (basic, "tok_visa", "GB"), (basic, "tok_visa", "DE"), (basic, "tok_declined", "GB"),
        (basic, "tok_visa", "AQ"), (large, "tok_visa", "GB"),
    ]):  # fmt: skip
        order_id = f"mon-{n}-{uuid.uuid4().hex[:6]}"
        body = {**base, "order_id": order_id, "payment_token": token,
                "shipping_address": {**base["shipping_address"], "country": country}}  # fmt: skip
        orders.append(body)
    shop = {"Authorization": f"Bearer {TOKENS['shop']}"}
    alice = {"Authorization": f"Bearer {TOKENS['alice']}"}
    release_fails = {"error_rate": 1.0, "paths": ["/inventory/reservations/release"]}
    with release.forward("backends", 8100) as backends:
        admin = f"http://{backends}/admin/faults/inventory"
        fault = await asyncio.to_thread(httpx.put, admin, json=release_fails, timeout=30)
        assert fault.status_code == 200, fault.text
        async with httpx.AsyncClient(base_url=release.gateway_url, timeout=60) as gateway:
            for body in orders:
                key = {"Idempotency-Key": body["order_id"]}
                placed = await gateway.post("/v1/orders", json=body, headers={**shop, **key})
                assert placed.status_code == 201, placed.text

            failed = "temporal_activity_execution_failed"

            def release_failed() -> bool:
                found = api(release, monitoring, "/api/v1/query", query=f"sum({failed}) > 0")
                return bool(found["result"])

            what = "a failed release of stock seen by Prometheus"
            await asyncio.to_thread(wait_until, release_failed, what=what, timeout=120,
                                    interval=2)  # fmt: skip
        cleared = await asyncio.to_thread(httpx.put, admin, json={}, timeout=30)
        assert cleared.status_code == 200, cleared.text

    async with httpx.AsyncClient(base_url=release.gateway_url, timeout=60) as gateway:
        large_request = f"order-{orders[-1]['order_id']}"

        async def waiting() -> bool:
            found = await gateway.get(f"/v1/approvals/{large_request}", headers=alice)
            return found.status_code == 200

        await async_wait_until(waiting, what="the large order's approval", timeout=120)
        # The drill takes the approval worker's one cache slot from the large order's request.
        drill = {"kind": "order", "title": "Monitoring drill",
                 "amount": {"amount_minor": 250_000, "currency": "EUR"}}  # fmt: skip
        dave = {"Authorization": f"Bearer {TOKENS['dave']}"}
        asked = await gateway.post("/v1/approvals", headers=dave, json=drill)
        assert asked.status_code == 201, asked.text
        request_id = asked.json()["request"]["request_id"]
        approved = await gateway.post(f"/v1/approvals/{large_request}/approve", headers=alice)
        assert approved.status_code == 200, approved.text
        rejected = await gateway.post(f"/v1/approvals/{request_id}/reject", headers=alice,
                                      json={"reason": "drill"})  # fmt: skip
        assert rejected.status_code == 200, rejected.text

        async def ended() -> bool:
            for body in orders:
                state = await gateway.get(f"/v1/orders/{body['order_id']}", headers=shop)
                if state.json()["status"] not in ("fulfilled", "compensated"):
                    return False
            return True

        await async_wait_until(ended, what="every order to end", timeout=300, interval=2)

    # A schedule, triggered once: a scheduled run completes on the scheduling worker.
    schedule = yaml.safe_load((REPO / "examples" / "schedules" / "health-check.yaml").read_text())
    schedule["metadata"]["name"] = "monitoring-check"
    apply(release.kubectl, release.namespace, schedule)
    scripts = Path(sys.executable).parent
    env = {**release.cluster.env(), "PATH": f"{scripts}{os.pathsep}{os.environ['PATH']}"}
    done = await asyncio.to_thread(
        subprocess.run,
        [str(scripts / "kubectl"), "muster", "trigger", "monitoring-check",
         "-n", release.namespace],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr

    # A Schedule that claims a schedule somebody else made in Temporal: the operator refuses
    # to take it over (its reconcile fails, with a reason in its status), then lets it go.
    claim = "monitoring-claim"
    with release.forward("temporal", 7233) as address:
        made = await asyncio.to_thread(
            subprocess.run,
            [str(scripts / "temporal"), "schedule", "create", "--address", address,
             "--schedule-id", f"{release.namespace}.{claim}", "--workflow-id", "somebody-else",
             "--type", "SomebodyElse", "--task-queue", "elsewhere", "--interval", "1h"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    apply(release.kubectl, release.namespace, {
        "apiVersion": "muster.io/v1alpha1", "kind": "Schedule",
        "metadata": {"name": claim},
        "spec": {"cron": ["0 6 * * *"], "timeZone": "UTC",
                 "workflow": {"type": "Elsewhere", "taskQueue": "elsewhere"}},
    })  # fmt: skip

    def refused() -> bool:
        found = api(release, monitoring, "/api/v1/query",
                    query="sum(controller_runtime_reconcile_errors_total) > 0")  # fmt: skip
        return bool(found["result"])

    await asyncio.to_thread(wait_until, refused, timeout=120, interval=2,
                            what="the operator's refusal seen by Prometheus")  # fmt: skip
    await asyncio.to_thread(release.kubectl, "delete", "-n", release.namespace, "schedule",
                            claim, "--timeout=90s", timeout=100)  # fmt: skip


def test_a_service_monitor_instead_scrapes_every_pod(
    release: Release, monitoring: str, tmp_path: Path
) -> None:
    """The chart's other way in: a headless metrics Service and a ServiceMonitor instead of
    the PodMonitor. Prometheus finds every pod through the Service's endpoints."""
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(scraped_by(monitoring, "serviceMonitor")))
    release.helm("upgrade", *release.install_args(release.current_tag),
                 "--values", str(values), timeout=120)  # fmt: skip
    release.wait_available()
    assert release.json("servicemonitors")["items"], "no ServiceMonitor rendered"
    assert not release.json("podmonitors")["items"], "the PodMonitor is still there"
    wait_every_pod_a_healthy_target(release, monitoring, "serviceMonitor")
