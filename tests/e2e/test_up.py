"""``make up`` as a person runs it: the stack comes up on the ports asked for, probes and
metrics answer, Muster's search attributes are registered, a policy applied with ``muster
apply`` works at once, ``muster-orders place --wait`` says how the order ended, a crashed
service is restarted, a second ``muster up`` says one is running, and Ctrl-C leaves no
process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO, free_port, free_port_block, http_get, wait_until

pytestmark = pytest.mark.timeout(300)

MUSTER = Path(sys.executable).parent / "muster"
MUSTER_ORDERS = Path(sys.executable).parent / "muster-orders"
TEMPORAL = Path(sys.executable).parent / "temporal"


LAPTOPS = """\
apiVersion: muster.io/v1alpha1
kind: ApprovalPolicy
metadata: {name: laptops}
spec:
  appliesTo: {kinds: [laptop]}
  approvers: {users: [alice]}
  timeout: 2d
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent; it no longer runs anything.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose environment or command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in blob and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_make_up_then_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # Every service takes a port from the base on (13 with their extra ports, and room).
    temporal_port, ui_port, base_port = free_port(), free_port(), free_port_block(20)
    up_args = (
        f"--state-dir {state} --temporal-port {temporal_port} --ui-port {ui_port} "
        f"--base-port {base_port}"
    )
    output = tmp_path / "make-up.out"
    with output.open("wb") as sink:
        make = subprocess.Popen(
            ["make", "-s", "up", f"UP_ARGS={up_args}"],
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a terminal's foreground job
        )
    try:

        def up() -> bool:
            assert make.poll() is None, output.read_text()
            return "Press Ctrl-C to stop everything." in output.read_text()

        wait_until(up, what="`make up` to report the stack", timeout=180, interval=0.25)
        text = output.read_text()
        assert f"export TEMPORAL_ADDRESS=127.0.0.1:{temporal_port}" in text
        assert f"http://127.0.0.1:{ui_port}" in text
        assert "canary ping answered by canary-" in text

        info = json.loads((state / "muster-up.json").read_text())
        assert set(info["services"]) >= {"canary", "fulfillment", "backends"}
        canary = info["services"]["canary"]["url"]
        assert http_get(canary + "/healthz")[0] == 200
        assert http_get(canary + "/readyz")[0] == 200
        metrics = http_get(canary + "/metrics")[1]
        assert "\ntemporal_request{" in metrics
        assert "muster_canary_echoes_total 1.0" in metrics
        # Every worker runs as a Worker Deployment version named by the git revision, made
        # current by the worker itself once it polled.
        build = re.search(r"workers run as build (git-[0-9a-f]{12}\S*) \(from the git", text)
        assert build is not None, text
        assert f'build_id="{build.group(1)}"' in metrics
        assert f"as muster-canary.{build.group(1)}" in http_get(canary + "/readyz")[1]
        assert http_get(f"http://127.0.0.1:{ui_port}/")[0] == 200

        listing = subprocess.run(
            [str(TEMPORAL), "operator", "search-attribute", "list",
             "--address", f"127.0.0.1:{temporal_port}"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        for name in ("MusterPattern", "MusterStatus", "MusterNeedsAttention", "MusterApprovers"):
            assert name in listing

        # The example schedules were applied with `muster apply`, and the scheduling worker
        # runs them: a triggered health check of the backends completes.
        for name in ("daily-report", "health-check", "weekday-sync"):
            assert f"schedules: schedule default/{name} created" in text, text
        address = ("--address", f"127.0.0.1:{temporal_port}")
        subprocess.run(
            [str(TEMPORAL), "schedule", "trigger", "--schedule-id", "default.health-check",
             *address],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip

        def health_checked() -> bool:
            listed = subprocess.run(
                [str(TEMPORAL), "workflow", "count", *address, "--query",
                 "WorkflowType = 'HealthCheck' AND ExecutionStatus = 'Completed'"],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout  # fmt: skip
            return "Total: 0" not in listed and "Total:" in listed

        wait_until(health_checked, what="the triggered health check to complete", timeout=60)

        # The gateway serves the approver page, and the README's demo logins work.
        gateway_api = info["services"]["gateway"]["api_url"]
        assert f"{gateway_api}/ui/" in text
        assert "<user>-demo-token" in text
        status, body = http_get(gateway_api + "/ui/login")
        assert status == 200
        assert "Sign in" in body
        listed = httpx.get(
            gateway_api + "/v1/approvals",
            headers={"Authorization": "Bearer alice-demo-token"},
            timeout=10,
        )
        assert listed.status_code == 200, listed.text

        # A new policy applied with `muster apply` works at once: it is published where the
        # running gateway and approval worker read (the stack's state file says where).
        assert info["policies"] == {
            "dir": str(state.resolve() / "policies"), "read_by": ["approval", "gateway"]
        }  # fmt: skip
        assert "policies: approvalpolicy default/large-orders published to" in text
        laptops = tmp_path / "laptops.yaml"
        laptops.write_text(LAPTOPS)
        applied = subprocess.run(
            [str(MUSTER), "apply", "-f", str(laptops)],
            capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
            env={**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
                 "MUSTER_UP_STATE_DIR": str(state)},
        )  # fmt: skip
        assert applied.returncode == 0, applied.stderr
        published = state.resolve() / "policies" / "default.laptops.yaml"
        assert f"approvalpolicy default/laptops published to {published}" in applied.stdout
        assert "reads" in applied.stdout
        assert "its approval and gateway use these policies" in applied.stdout
        dave = {"Authorization": "Bearer dave-demo-token"}
        created = httpx.post(
            gateway_api + "/v1/approvals", json={"kind": "laptop", "title": "A laptop"},
            headers=dave, timeout=30,
        )  # fmt: skip
        assert created.status_code == 201, created.text
        request_id = created.json()["request"]["request_id"]

        def asked() -> bool:
            state_now = httpx.get(
                f"{gateway_api}/v1/approvals/{request_id}", headers=dave, timeout=30
            ).json()
            return bool(state_now["deadline"]) and state_now["policy"] == "laptops"

        wait_until(asked, what="the request under the new policy asked", timeout=60)

        # The README's large order: placed by the shop, it waits for finance; alice approves
        # it through the API and it is fulfilled; the approvers were mailed.
        shop = {"Authorization": "Bearer shop-demo-token", "Idempotency-Key": "demo-big-1"}
        large = (REPO / "examples" / "orders" / "large.json").read_bytes()
        placed_large = httpx.post(
            gateway_api + "/v1/orders",
            content=large,
            headers={**shop, "content-type": "application/json"},
            timeout=30,
        )
        assert placed_large.status_code == 201, placed_large.text
        alice = {"Authorization": "Bearer alice-demo-token"}

        def approved() -> bool:
            response = httpx.post(
                gateway_api + "/v1/approvals/order-demo-big-1/approve", headers=alice, timeout=30
            )
            # 404 until the order has asked for its approval
            assert response.status_code in (200, 404), response.text
            return response.status_code == 200

        wait_until(approved, what="the large order's approval", timeout=90)

        def fulfilled() -> bool:
            order = httpx.get(gateway_api + "/v1/orders/demo-big-1", headers=shop, timeout=30)
            return bool(order.json()["status"] == "fulfilled")

        wait_until(fulfilled, what="the large order fulfilled", timeout=90)
        mailbox_api = info["services"]["mailbox"]["api_url"]
        mails = httpx.get(
            mailbox_api + "/messages", params={"to": "alice@example.com"}, timeout=10
        ).json()
        assert any("demo-big-1" in m["subject"] for m in mails), mails

        # An order placed the way the README says goes through the saga and the backends.
        placed = subprocess.run(
            [str(MUSTER_ORDERS), "place", str(REPO / "examples" / "orders" / "basic.json"),
             "--wait"],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}"},
        )  # fmt: skip
        assert placed.returncode == 0, placed.stderr
        assert placed.stdout.startswith("order demo-1001: fulfilled (89.48 EUR, tracking number")
        backends_api = info["services"]["backends"]["api_url"]
        charges = json.loads(http_get(backends_api + "/payment/charges?order_id=demo-1001")[1])
        assert [c["status"] for c in charges] == ["captured"]

        second = subprocess.run(
            [str(MUSTER), "up", "--state-dir", str(state)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 3
        assert "already running" in second.stderr
        assert f"kill -INT {make.pid}" not in second.stderr  # names muster's pid, not make's

        pids = [info["temporal"]["pid"], *(s["pid"] for s in info["services"].values())]
        assert all(alive(pid) for pid in pids)

        # A service that dies is restarted and becomes ready again.
        old_canary = info["services"]["canary"]["pid"]
        os.kill(old_canary, signal.SIGKILL)

        def restarted() -> int | None:
            current = json.loads((state / "muster-up.json").read_text())
            pid = int(current["services"]["canary"]["pid"])
            if pid != old_canary and http_get(canary + "/readyz")[0] == 200:
                return pid
            return None

        new_canary = wait_until(restarted, what="canary restart", timeout=90, ignore=(OSError,))
        pids.append(new_canary)

        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=120)
        assert "stopped." in output.read_text()
        wait_until(
            lambda: not any(alive(pid) for pid in pids), what="stack processes to exit", timeout=30
        )
        assert processes_mentioning(str(state)) == []
        assert not (state / "muster-up.json").exists()
        for port in (temporal_port, ui_port, base_port):
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
        # The SQLite file persists for the next `make up`.
        assert (state / "temporal.db").exists()
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        for pid in processes_mentioning(str(state)):
            os.kill(pid, signal.SIGKILL)


def test_busy_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(MUSTER), "up", "--state-dir", str(tmp_path / "s"), "--temporal-port", str(port),
             "--ui-port", str(free_port()), "--base-port", str(free_port())],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"port {port} for Temporal frontend" in result.stdout
    assert "already in use" in result.stdout
    assert processes_mentioning(str(tmp_path / "s")) == []


def test_bad_up_settings_are_one_line_each(tmp_path: Path) -> None:
    env = {**os.environ, "MUSTER_UP_TEMPORAL_PORT": "70000", "MUSTER_UP_READY_TIMEOUT": "-1"}
    result = subprocess.run(
        [str(MUSTER), "up", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("muster up: configuration error: MUSTER_UP_TEMPORAL_PORT='70000'")
    assert lines[1].startswith("muster up: configuration error: MUSTER_UP_READY_TIMEOUT='-1'")


def test_muster_up_on_the_real_server_keeps_its_data(tmp_path: Path) -> None:
    """``muster up --temporal server``: PostgreSQL and the real server, the namespace and
    search attributes, the canary, an order through the saga; after Ctrl-C nothing runs,
    and a second start on the same state folder still has the order."""
    state = tmp_path / "state"
    # The real server's membership ports sit 300 below the frontend's and must stay below
    # 32768: a free block in the low range holds the whole layout.
    base = free_port_block(330)
    temporal_port, postgres_port, service_port = base + 300, base + 320, free_port_block(12)
    argv = [
        str(MUSTER), "up", "--temporal", "server", "--state-dir", str(state),
        "--temporal-port", str(temporal_port), "--postgres-port", str(postgres_port),
        "--base-port", str(service_port), "--services", "canary,backends,fulfillment",
        "--schedules", "",
    ]  # fmt: skip
    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}"}
    order = REPO / "examples" / "orders" / "basic.json"

    def start(log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as sink:
            up = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO,
                                  start_new_session=True)  # fmt: skip

        def ready() -> bool:
            assert up.poll() is None, log.read_text()
            return "Press Ctrl-C to stop everything." in log.read_text()

        wait_until(ready, what="`muster up --temporal server`", timeout=180, interval=0.25)
        return up

    def stop(up: subprocess.Popen[bytes], log: Path) -> None:
        os.killpg(up.pid, signal.SIGINT)
        up.wait(timeout=120)
        assert "stopped." in log.read_text()

    first_log = tmp_path / "first.out"
    up = start(first_log)
    try:
        text = first_log.read_text()
        assert f"starting Temporal server on 127.0.0.1:{temporal_port}" in text
        assert "canary ping answered by canary-" in text
        assert f"PostgreSQL 127.0.0.1:{postgres_port}" in text
        assert "registered namespace 'default'" in text
        info = json.loads((state / "muster-up.json").read_text())
        assert info["temporal"]["kind"] == "server"
        placed = subprocess.run(
            [str(MUSTER_ORDERS), "place", str(order), "--wait", "--json"],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip
        assert placed.returncode == 0, placed.stderr
        assert json.loads(placed.stdout)["status"] == "fulfilled"
        stop(up, first_log)
        assert processes_mentioning(str(state)) == []
        assert (state / "postgres" / "PG_VERSION").is_file()

        second_log = tmp_path / "second.out"
        up = start(second_log)
        status = subprocess.run(
            [str(MUSTER_ORDERS), "status", "demo-1001"],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["status"] == "fulfilled"
        # Kept, not registered again: the namespace and attributes came with the data.
        assert "registered" not in second_log.read_text()
        stop(up, second_log)
        assert processes_mentioning(str(state)) == []
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        for pid in processes_mentioning(str(state)):
            os.kill(pid, signal.SIGKILL)
