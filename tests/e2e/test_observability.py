"""Observability proven on the running local stack: ``muster up --prometheus-port`` scrapes
every service with a real Prometheus (Debian's package) that evaluates the chart's alert
rules. Orders (one declined and compensated, one parked for a person because its
compensation kept failing), an approval, a request that escalates and expires, scheduled
runs (one failing), a workflow type no worker knows and a read of an unknown order go
through the stack. Then every dashboard query and every alert expression must parse, every
panel on a path the local stack exercises must return data, every metric and label the
dashboards read must be one the services' ``/metrics`` really expose (so a renamed metric
fails here; the operator's are checked in tests/kube), and the expired request fires
MusterApprovalsExpired.

``make docs-dashboards`` runs this module with ``MUSTER_DASHBOARD_PICTURES=DIR``: then an
operator also runs (on a local kube-apiserver, against the stack's Temporal, with the
example schedules and policies, one drifting and one foreign), a second Prometheus scrapes
it and every service, orders keep coming for a while, and every dashboard is drawn from its
own queries into ``DIR/<uid>.png``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from muster_dev.prometheus import PrometheusConfig, PrometheusServer, instant_query
from tests.dashboard_pictures import draw_all
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
from tests.kube.operator_support import CRD_DIR, OperatorProcess, operator_env
from tests.kube.support import Run

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
    """``muster up`` in a copy of the examples with Prometheus on, plus a policy whose
    requests expire in two seconds (applied with ``muster apply``, which publishes it where
    the running stack reads); yields the state file's contents."""
    work = tmp_path_factory.mktemp("observed")
    shutil.copytree(REPO / "examples", work / "examples")
    drill = work / "expiry-drill.yaml"
    drill.write_text(yaml.safe_dump(FAST_POLICY))
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
        applied = subprocess.run(
            [str(MUSTER), "apply", "-f", str(drill)],
            capture_output=True, text=True, timeout=120, check=False, cwd=work,
            env={**os.environ, "TEMPORAL_ADDRESS": info["temporal"]["address"],
                 "MUSTER_UP_STATE_DIR": str(state)},
        )  # fmt: skip
        assert applied.returncode == 0, applied.stdout + applied.stderr
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


def park_order(info: dict[str, Any], order_id: str) -> None:
    """A declined order allowed one compensation attempt: with the stock release failing
    (an injected fault), it is parked for a person."""
    basic = json.loads((REPO / "examples/orders/basic.json").read_text())
    parked = {
        "order": {**basic, "order_id": order_id, "payment_token": "tok_declined"},
        "options": {"compensation_max_attempts": 1, "retry_initial_seconds": 0.1},
    }
    temporal(info, "workflow", "start", "--type", "OrderFulfillment",
             "--task-queue", "muster-fulfillment", "--workflow-id", f"order-{order_id}",
             "--input", json.dumps(parked))  # fmt: skip


def set_release_fault(info: dict[str, Any], on: bool) -> None:
    """Every release of reserved stock fails (503), or none does."""
    fault = {"error_rate": 1.0, "paths": ["/inventory/reservations/release"]} if on else {}
    backends = info["services"]["backends"]["api_url"]
    assert httpx.put(f"{backends}/admin/faults/inventory", json=fault).status_code == 200


def drive(info: dict[str, Any]) -> None:
    """Orders (fulfilled, declined, parked for a person), a large order approved, a request
    left to escalate and expire, scheduled runs (one failing), a workflow type no worker
    knows, and a read of an order that does not exist."""
    gateway = info["services"]["gateway"]["api_url"]
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

        set_release_fault(info, on=True)
        park_order(info, "obs-parked")
        expected = {"obs-ok-1": "fulfilled", "obs-ok-2": "fulfilled",
                    "obs-declined": "compensated", "obs-large": "fulfilled",
                    "obs-parked": "needs_attention"}  # fmt: skip

        def ended() -> bool:
            return all(http.get(f"/v1/orders/{o}", headers=CAROL).json()["status"] == s
                       for o, s in expected.items())  # fmt: skip

        wait_until(ended, what="every order to end as expected", timeout=120, interval=0.5)
        set_release_fault(info, on=False)

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


DOCS_NAMESPACE = "muster-docs"
PICTURE_TRAFFIC_SECONDS = 120
CAPTION = (
    "Drawn by `make docs-dashboards` from this dashboard's own queries against a real "
    "Prometheus scraping `muster up` and the operator; not a Grafana screenshot."
)


@dataclass
class Pictures:
    """Docs mode: where the pictures go, and the Prometheus that also scrapes the operator."""

    folder: Path
    prometheus: str
    started: float
    kubectl: Run


@pytest.fixture(scope="module")
def pictures(stack: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Pictures | None]:
    """None, unless ``MUSTER_DASHBOARD_PICTURES`` names a folder (``make docs-dashboards``):
    then an operator with the example resources, and a Prometheus scraping it and the stack."""
    folder = os.environ.get("MUSTER_DASHBOARD_PICTURES")
    if not folder:
        yield None
        return
    kube = request.getfixturevalue("kube")
    kubectl: Run = request.getfixturevalue("kubectl")
    kubectl("apply", "-f", str(CRD_DIR))
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    for namespace in (DOCS_NAMESPACE, f"{DOCS_NAMESPACE}-policies"):
        kubectl("create", "namespace", namespace, check=False)
    work: Path = stack["work"]
    env = operator_env(kube, stack["temporal"]["address"], namespaces=[DOCS_NAMESPACE],
                       policy_namespace=f"{DOCS_NAMESPACE}-policies")  # fmt: skip
    env["MUSTER_OPERATOR_RESYNC_SECONDS"] = "5"
    operator = OperatorProcess(env, work / "operator")
    operator.start()
    targets = {name: [urlsplit(service["url"]).netloc]
               for name, service in stack["services"].items()}  # fmt: skip
    targets["operator"] = [f"127.0.0.1:{operator.metrics_port}"]
    server = PrometheusServer(
        PrometheusConfig(port=free_port(), data_dir=work / "pictures-prometheus", targets=targets)
    )
    server.start()
    try:
        kubectl("apply", "-n", DOCS_NAMESPACE, "-f", str(REPO / "examples/schedules"),
                "-f", str(REPO / "examples/policies"))  # fmt: skip
        yield Pictures(Path(folder), server.config.url, time.time(), kubectl)
    finally:
        server.stop()
        operator.stop()


def claim_foreign_schedule(info: dict[str, Any], kubectl: Run, name: str) -> None:
    """A schedule somebody else made in Temporal, and a Schedule resource that claims it:
    the operator refuses to take it over, and its reconcile fails."""
    temporal(info, "schedule", "create", "--schedule-id", f"{DOCS_NAMESPACE}.{name}",
             "--workflow-id", f"somebody-else-{name}", "--type", "SomebodyElse",
             "--task-queue", "elsewhere", "--interval", "1h")  # fmt: skip
    claim = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": name, "namespace": DOCS_NAMESPACE},
        "spec": {"cron": ["0 6 * * *"], "timeZone": "UTC",
                 "workflow": {"type": "Elsewhere", "taskQueue": "elsewhere"}},
    }  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps(claim))


def keep_traffic(info: dict[str, Any], pictures: Pictures, seconds: float) -> None:
    """Docs mode: a couple of minutes of a working day, so the pictures have rates to show
    (Prometheus sees no increase in a counter's first sample: everything happens twice or
    more). Every few seconds an order (every third declined, every fifth large, approved by
    alice a little later) and a read of an order nobody placed; every other round dave asks
    for vacation (alice approves later), every fourth an expiry drill (escalates, expires);
    now and then a scheduled health check runs (or fails: a service that does not exist),
    a schedule of the operator's is paused in Temporal (drift it puts back), a resource
    claims a foreign schedule (a failing reconcile), and stock releases fail for a while
    (retries, and an order parked for a person)."""
    gateway = info["services"]["gateway"]["api_url"]
    basic = json.loads((REPO / "examples/orders/basic.json").read_text())
    large = json.loads((REPO / "examples/orders/large.json").read_text())
    deadline = time.monotonic() + seconds
    waiting: list[tuple[int, str]] = []  # (round to approve in, approval request id)
    health_check = f"{DOCS_NAMESPACE}.health-check"
    with httpx.Client(base_url=gateway, timeout=30) as http:
        for round_ in range(10_000):
            if time.monotonic() >= deadline:
                break
            order_id = f"obs-traffic-{round_}"
            order = large if round_ % 5 == 4 else basic
            token = "tok_declined" if round_ % 3 == 2 else order["payment_token"]
            placed = http.post("/v1/orders", json={**order, "order_id": order_id,
                                                   "payment_token": token},
                               headers={**SHOP, "Idempotency-Key": order_id})  # fmt: skip
            assert placed.status_code == 201, placed.text
            if order is large and token != "tok_declined":
                waiting.append((round_ + 2, f"order-{order_id}"))
            assert http.get(f"/v1/orders/obs-nowhere-{round_}", headers=SHOP).status_code == 404
            if round_ % 2 == 0:
                vacation = {"kind": "vacation", "title": f"Time off {round_}"}
                asked = http.post("/v1/approvals", headers=DAVE, json=vacation)
                assert asked.status_code == 201, asked.text
                waiting.append((round_ + 3, asked.json()["request"]["request_id"]))
            if round_ % 4 == 1:
                drill = {"kind": "expiry-drill", "title": f"Nobody will answer {round_}"}
                assert http.post("/v1/approvals", headers=DAVE, json=drill).status_code == 201
            for due, request_id in [w for w in waiting if w[0] <= round_]:
                # A large order asks for approval once its stock is reserved: 404 until then.
                answer = http.post(f"/v1/approvals/{request_id}/approve", headers=ALICE)
                if answer.status_code == 200:
                    waiting.remove((due, request_id))
            if round_ % 6 == 3:
                temporal(info, "schedule", "trigger", "--schedule-id", health_check)
            if round_ % 8 == 5:
                temporal(info, "workflow", "start", "--type", "HealthCheck", "--task-queue",
                         SCHEDULING_QUEUE, "--workflow-id", f"obs-health-unknown-{round_}",
                         "--input", json.dumps({"services": ["warehouse"]}))  # fmt: skip
            if round_ in (8, 20):
                temporal(info, "schedule", "toggle", "--pause", "--reason", "drift for the docs",
                         "--schedule-id", health_check)  # fmt: skip
            if round_ in (2, 14):
                claim_foreign_schedule(info, pictures.kubectl, f"foreign-{round_}")
            if round_ in (10, 18):
                set_release_fault(info, on=round_ == 10)
            if round_ in (11, 13):
                park_order(info, f"obs-traffic-parked-{round_}")
            time.sleep(4)  # the pace of the traffic, not a wait for something to happen


def test_dashboards_and_alerts_against_the_running_stack(
    stack: dict[str, Any], pictures: Pictures | None
) -> None:
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

    if pictures is not None:
        keep_traffic(stack, pictures, PICTURE_TRAFFIC_SECONDS)
        drawn = draw_all(dashboards, pictures.prometheus, pictures.started, time.time(),
                         pictures.folder, CAPTION)  # fmt: skip
        assert len(drawn) == len(dashboards)
