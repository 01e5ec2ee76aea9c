"""Observability proven on the running local stack: ``muster up --prometheus-port`` scrapes
every service with a real Prometheus (Debian's package) that evaluates the chart's alert
rules. Orders (one of them declined and compensated), an approval and a scheduled run go
through the stack; then every dashboard query and every alert expression must parse, every
panel on a path the local stack exercises must return data, and an approval that runs out of
time fires MusterApprovalsExpired."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from muster_dev.prometheus import instant_query
from tests.dashboards import panel_queries
from tests.helpers import REPO, free_port, free_port_block, wait_until

pytestmark = pytest.mark.timeout(420)

MUSTER = Path(sys.executable).parent / "muster"
TEMPORAL = Path(sys.executable).parent / "temporal"
SHOP = {"Authorization": "Bearer shop-demo-token"}
ALICE = {"Authorization": "Bearer alice-demo-token"}
DAVE = {"Authorization": "Bearer dave-demo-token"}

# Metrics only the operator (which needs Kubernetes) produces: not on the local stack.
OPERATOR_ONLY = ("controller_runtime_", "muster_operator_", "muster_approvals_pending",
                 "muster_task_queue_pollers", "workqueue_")  # fmt: skip
# Paths the run below does not take: failures that need broken workers or backends,
# escalations and timeouts of other policies, Temporal request failures.
NOT_EXERCISED = ("_failed", "_failure", "attention_events", "escalations", "sticky_cache_miss",
                 "on_timeout", "1 - muster_ready")  # fmt: skip

FAST_POLICY = {
    "apiVersion": "muster.io/v1alpha1",
    "kind": "ApprovalPolicy",
    "metadata": {"name": "expiry-drill"},
    "spec": {
        "appliesTo": {"kinds": ["expiry-drill"]},
        "approvers": {"users": ["alice"]},
        "requiredApprovals": 1,
        "timeout": "2s",
        "onTimeout": "Reject",
    },
}


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
    with output.open("wb") as sink:
        up = subprocess.Popen(args, cwd=work, stdout=sink, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:

        def ready() -> bool:
            assert up.poll() is None, output.read_text()
            return "Press Ctrl-C to stop everything." in output.read_text()

        wait_until(ready, what="muster up with Prometheus", timeout=240, interval=0.25)
        text = output.read_text()
        assert f"prometheus: http://127.0.0.1:{prometheus_port} scrapes" in text, text
        info = json.loads((state / "muster-up.json").read_text())
        info["work"] = work
        yield info
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def drive(info: dict[str, Any]) -> None:
    """Orders (fulfilled and declined), a large order approved, a request left to expire,
    and a triggered scheduled run."""
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
        approved = http.post("/v1/approvals/order-obs-large/approve", headers=ALICE)
        assert approved.status_code == 200, approved.text
        drill = {"kind": "expiry-drill", "title": "Nobody will answer"}
        expiring = http.post("/v1/approvals", headers=DAVE, json=drill)
        assert expiring.status_code == 201, expiring.text
        expected = {"obs-ok-1": "fulfilled", "obs-ok-2": "fulfilled",
                    "obs-declined": "compensated", "obs-large": "fulfilled"}  # fmt: skip

        def ended() -> bool:
            return all(http.get(f"/v1/orders/{o}", headers=SHOP).json()["status"] == s
                       for o, s in expected.items())  # fmt: skip

        wait_until(ended, what="every order to end as expected", timeout=120, interval=0.5)
    subprocess.run(
        [str(TEMPORAL), "schedule", "trigger", "--schedule-id", "default.health-check",
         "--address", info["temporal"]["address"]],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


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

    # Every panel parses; every panel on a path the run took returns data.
    queries = panel_queries()
    assert len(queries) >= 30
    for where, expr in queries:
        assert instant_query(prometheus, expr)["status"] == "success", f"{where}: {expr}"
    exercised = [(w, e) for w, e in queries
                 if not any(m in e for m in OPERATOR_ONLY + NOT_EXERCISED)]  # fmt: skip
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
