"""Observability proven on the running local stack: ``muster up --prometheus-port`` scrapes
every service with a real Prometheus (Debian's package) that evaluates the chart's alert
rules. Orders (one declined and compensated, one parked for a person because its
compensation kept failing), an approval, a request that escalates and expires, scheduled
runs (one failing), a workflow type no worker knows and a read of an unknown order go
through the stack. Then every dashboard query and every alert expression must parse, every
panel on a path the local stack exercises must return data, every metric and label the
dashboards read must be one the services' ``/metrics`` really expose (so a renamed metric
fails here; the operator's are checked in tests/kube), and the expired request fires
MusterApprovalsExpired."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from muster_dev.prometheus import instant_query
from tests.dashboards import (
    FIXTURES,
    OPERATOR_METRICS,
    OPERATOR_PREFIXES,
    Catalogue,
    catalogue,
    load,
    metrics_used,
    operator_only,
    panel_queries,
    unknown_metrics,
)
from tests.helpers import REPO, free_port, free_port_block, wait_until

pytestmark = pytest.mark.timeout(420)

MUSTER = Path(sys.executable).parent / "muster"
TEMPORAL = Path(sys.executable).parent / "temporal"
SHOP = {"Authorization": "Bearer shop-demo-token"}
ALICE = {"Authorization": "Bearer alice-demo-token"}
DAVE = {"Authorization": "Bearer dave-demo-token"}
CAROL = {"Authorization": "Bearer carol-demo-token"}  # muster-admins: sees every order

# Panels that read what only the operator (which needs Kubernetes) exposes.
OPERATOR_ONLY = (*OPERATOR_PREFIXES, *OPERATOR_METRICS)

# Requests of this policy escalate to carol after two seconds and expire two seconds later.
FAST_POLICY = {
    "apiVersion": "muster.io/v1alpha1",
    "kind": "ApprovalPolicy",
    "metadata": {"name": "expiry-drill"},
    "spec": {
        "appliesTo": {"kinds": ["expiry-drill"]},
        "approvers": {"users": ["alice"]},
        "requiredApprovals": 1,
        "timeout": "2s",
        "escalations": [{"to": {"users": ["carol"]}, "timeout": "2s"}],
        "onTimeout": "Reject",
    },
}
SCHEDULING_QUEUE = "muster-scheduling"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``muster up`` in a copy of the examples (plus a policy whose requests expire in two
    seconds) with Prometheus on; yields the state file's contents."""
    work = tmp_path_factory.mktemp("observed")
    shutil.copytree(REPO / "examples", work / "examples")
    (work / "examples" / "policies" / "expiry-drill.yaml").write_text(yaml.safe_dump(FAST_POLICY))
    (work / "charts" / "muster" / "files").mkdir(parents=True)
    shutil.copy(REPO / "charts/muster/files/alerts.yaml", work / "charts/muster/files/")
    state = work / "state"
    prometheus_port = free_port()
    args = [
        str(MUSTER), "up", "--state-dir", str(state), "--temporal-port", str(free_port()),
        "--ui-port", str(free_port()), "--base-port", str(free_port_block(20)),
        "--prometheus-port", str(prometheus_port),
    ]  # fmt: skip
    output = work / "up.out"
    # One cached workflow on the approval worker: a decision on a request that another one
    # pushed out of the cache replays its history (the sticky cache miss the dashboards show).
    env = {**os.environ, "MUSTER_APPROVAL_WORKER__MAX_CACHED_WORKFLOWS": "1"}
    with output.open("wb") as sink:
        up = subprocess.Popen(args, cwd=work, stdout=sink, stderr=subprocess.STDOUT,
                              start_new_session=True, env=env)  # fmt: skip
    try:

        def ready() -> bool:
            assert up.poll() is None, output.read_text()
            return "Press Ctrl-C to stop everything." in output.read_text()

        wait_until(ready, what="muster up with Prometheus", timeout=240, interval=0.25)
        text = output.read_text()
        assert f"prometheus: http://127.0.0.1:{prometheus_port} scrapes" in text, text
        info = json.loads((state / "muster-up.json").read_text())
        info["work"] = work
        info["started"] = time.time()
        yield info
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def temporal(info: dict[str, Any], *args: str, check: bool = True) -> str:
    """One ``temporal`` CLI command against the stack's Temporal; its output."""
    done = subprocess.run([str(TEMPORAL), *args, "--address", info["temporal"]["address"]],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0 or not check, done.stdout + done.stderr
    return done.stdout + done.stderr


def drive(info: dict[str, Any]) -> None:
    """Orders (fulfilled, declined, parked for a person), a large order approved, a request
    left to escalate and expire, scheduled runs (one failing), a workflow type no worker
    knows, and a read of an order that does not exist."""
    gateway = info["services"]["gateway"]["api_url"]
    backends = info["services"]["backends"]["api_url"]
    basic = json.loads((REPO / "examples/orders/basic.json").read_text())
    large = json.loads((REPO / "examples/orders/large.json").read_text())
    with httpx.Client(base_url=gateway, timeout=30) as http:
        orders = {
            "obs-ok-1": basic,
            "obs-ok-2": basic,
            "obs-declined": {**basic, "payment_token": "tok_declined"},
            "obs-large": large,
        }
        for order_id, body in orders.items():
            placed = http.post("/v1/orders", json={**body, "order_id": order_id},
                               headers={**SHOP, "Idempotency-Key": order_id})  # fmt: skip
            assert placed.status_code == 201, placed.text

        def waiting_for_approval() -> bool:
            state = http.get("/v1/orders/obs-large", headers=SHOP).json()
            return bool(state["status"] == "awaiting_approval")

        wait_until(waiting_for_approval, what="the large order to wait for finance", timeout=60)
        # The drill request takes the approval worker's one cache slot from the large order's
        # request, so alice's decision below finds that request out of the cache.
        drill = {"kind": "expiry-drill", "title": "Nobody will answer"}
        expiring = http.post("/v1/approvals", headers=DAVE, json=drill)
        assert expiring.status_code == 201, expiring.text
        approved = http.post("/v1/approvals/order-obs-large/approve", headers=ALICE)
        assert approved.status_code == 200, approved.text
        # Reading an order nobody placed: the gateway's call to Temporal fails (not found).
        assert http.get("/v1/orders/obs-nowhere", headers=SHOP).status_code == 404

        # A declined order whose stock cannot be released: its one compensation attempt
        # fails, and the order is parked for a person.
        fault = {"error_rate": 1.0, "paths": ["/inventory/reservations/release"]}
        assert httpx.put(f"{backends}/admin/faults/inventory", json=fault).status_code == 200
        parked = {
            "order": {**basic, "order_id": "obs-parked", "payment_token": "tok_declined"},
            "options": {"compensation_max_attempts": 1, "retry_initial_seconds": 0.1},
        }
        temporal(info, "workflow", "start", "--type", "OrderFulfillment",
                 "--task-queue", "muster-fulfillment", "--workflow-id", "order-obs-parked",
                 "--input", json.dumps(parked))  # fmt: skip
        expected = {"obs-ok-1": "fulfilled", "obs-ok-2": "fulfilled",
                    "obs-declined": "compensated", "obs-large": "fulfilled",
                    "obs-parked": "needs_attention"}  # fmt: skip

        def ended() -> bool:
            return all(http.get(f"/v1/orders/{o}", headers=CAROL).json()["status"] == s
                       for o, s in expected.items())  # fmt: skip

        wait_until(ended, what="every order to end as expected", timeout=120, interval=0.5)
        assert httpx.put(f"{backends}/admin/faults/inventory", json={}).status_code == 200

    temporal(info, "schedule", "trigger", "--schedule-id", "default.health-check")
    # A health check of a service that does not exist: the scheduled workflow fails.
    failed = temporal(info, "workflow", "execute", "--type", "HealthCheck",
                      "--task-queue", SCHEDULING_QUEUE, "--workflow-id", "obs-health-unknown",
                      "--input", json.dumps({"services": ["warehouse"]}), check=False)  # fmt: skip
    assert "unhealthy: warehouse" in failed, failed
    # A workflow type no worker registered: its workflow tasks fail until it is terminated.
    temporal(info, "workflow", "start", "--type", "NoSuchWorkflow", "--task-queue",
             SCHEDULING_QUEUE, "--workflow-id", "obs-unknown-type")  # fmt: skip


def scrape(info: dict[str, Any]) -> Catalogue:
    """Metric names and label names of every running service's ``/metrics``."""
    found: Catalogue = {}
    for service in info["services"].values():
        catalogue(httpx.get(f"{service['url']}/metrics", timeout=10).text, found)
    return found


def test_dashboards_and_alerts_against_the_running_stack(stack: dict[str, Any]) -> None:
    prometheus = stack["prometheus"]
    assert prometheus

    # Every service is a healthy scrape target.
    def all_up() -> set[str] | None:
        active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
        targets = active["activeTargets"]
        healthy = {t["labels"]["service"] for t in targets if t["health"] == "up"}
        wanted = {"gateway", "approval", "fulfillment", "scheduling", "backends"}
        return healthy if targets and len(healthy) == len(targets) and healthy >= wanted else None

    wait_until(all_up, what="every service a healthy scrape target", timeout=60, interval=1)
    drive(stack)

    # Every metric the dashboards read (but the operator's) is on some service's /metrics,
    # with the labels the queries and legends rely on.
    dashboards = load()
    wanted = {m for m in metrics_used(dashboards) if not operator_only(m)}
    emitted: Catalogue = {}

    def all_emitted() -> bool:
        emitted.clear()
        emitted.update(scrape(stack))
        return wanted <= emitted.keys()

    try:
        wait_until(all_emitted, what="every dashboard metric on /metrics", timeout=90, interval=2)
    except TimeoutError:
        pytest.fail(f"no service exposes {', '.join(sorted(wanted - emitted.keys()))}")
    not_operator = lambda metric: not operator_only(metric)  # noqa: E731
    assert unknown_metrics(dashboards, emitted, only=not_operator) == []
    # A renamed metric, a label no series has, a legend label the query drops: all caught.
    renamed = load(FIXTURES)
    findings = unknown_metrics({"renamed-metric.json": renamed["renamed-metric.json"]}, emitted)
    assert len(findings) == 3, findings
    assert "metric muster_orders_complete is not exposed by any service" in findings[0]
    assert "label 'result' (by) is on no series of muster_orders_completed" in findings[1]
    assert "the legend shows {{outcome}}, which the query's series do not carry" in findings[2]

    # Every panel parses; every panel on a path the run took returns data.
    queries = panel_queries()
    assert len(queries) >= 30
    for where, expr in queries:
        assert instant_query(prometheus, expr)["status"] == "success", f"{where}: {expr}"
    exercised = [(w, e) for w, e in queries if not any(m in e for m in OPERATOR_ONLY)]
    assert len(exercised) >= 15

    missing: list[str] = []

    def all_have_data() -> bool:
        missing[:] = [f"{w}: {e}" for w, e in exercised
                      if not instant_query(prometheus, e)["data"]["result"]]  # fmt: skip
        return not missing

    try:
        wait_until(all_have_data, what="data in every exercised panel", timeout=90, interval=2)
    except TimeoutError:
        pytest.fail("panels without data:\n" + "\n".join(missing))

    # The request under the two-second policy expired: its alert fires.
    def expired_alert() -> dict[str, Any] | None:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        firing = [a for a in alerts if a["labels"]["alertname"] == "MusterApprovalsExpired"
                  and a["state"] == "firing"]  # fmt: skip
        return firing[0] if firing else None

    alert = wait_until(expired_alert, what="MusterApprovalsExpired to fire", timeout=90, interval=1)
    assert alert["labels"]["policy"] == "expiry-drill"
    # Every alert expression parses against the live data too.
    rules = yaml.safe_load((REPO / "charts/muster/files/alerts.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert instant_query(prometheus, rule["expr"])["status"] == "success", rule["alert"]
