"""Health: liveness follows the event-loop heartbeat, readiness is the conjunction of named
checks and fails while draining, and the HTTP server answers probes and scrapes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from muster_runtime.health import Health, HealthServer
from tests.helpers import http_get


@pytest.fixture
def served() -> Iterator[tuple[Health, str]]:
    health = Health(stall_after=0.3)
    server = HealthServer("127.0.0.1", 0, health, metrics=lambda: b"muster_up 1\n")
    server.start()
    yield health, f"http://127.0.0.1:{server.port}"
    server.stop()


def test_not_ready_until_every_check_passes(served: tuple[Health, str]) -> None:
    health, url = served
    status, body = http_get(url + "/readyz")
    assert status == 503  # no checks registered yet: nothing proves readiness
    health.register("temporal", "connecting")
    health.register("worker")
    health.set("temporal", ok=True, detail="connected")
    status, body = http_get(url + "/readyz")
    assert status == 503
    checks = json.loads(body)["checks"]
    assert checks["temporal"]["ok"] is True
    assert checks["worker"] == {
        "ok": False,
        "detail": "starting",
        "since": checks["worker"]["since"],
    }
    health.set("worker", ok=True, detail="polling")
    status, body = http_get(url + "/readyz")
    assert status == 200
    assert json.loads(body)["status"] == "ready"


def test_draining_fails_readiness(served: tuple[Health, str]) -> None:
    health, url = served
    health.set("temporal", ok=True, detail="connected")
    assert http_get(url + "/readyz")[0] == 200
    health.set_draining()
    status, body = http_get(url + "/readyz")
    assert status == 503
    assert json.loads(body)["status"] == "draining"


def test_liveness_fails_when_the_loop_stops_beating(served: tuple[Health, str]) -> None:
    health, url = served
    assert http_get(url + "/healthz")[0] == 200  # before the first beat: starting
    health.beat()
    assert http_get(url + "/healthz")[0] == 200
    deadline = time.monotonic() + 5
    while http_get(url + "/healthz")[0] == 200:
        assert time.monotonic() < deadline, "stalled loop never reported"
        time.sleep(0.05)
    status, body = http_get(url + "/healthz")
    assert status == 503
    assert "event loop silent" in json.loads(body)["detail"]
    health.beat()
    assert http_get(url + "/healthz")[0] == 200


def test_metrics_and_unknown_paths(served: tuple[Health, str]) -> None:
    _, url = served
    assert http_get(url + "/metrics") == (200, "muster_up 1\n")
    status, body = http_get(url + "/nope")
    assert status == 404
    assert "no such endpoint: /nope" in body


def test_a_broken_metrics_callback_is_a_500_not_a_dead_server() -> None:
    def broken() -> bytes:
        raise RuntimeError("boom")

    server = HealthServer("127.0.0.1", 0, Health(), metrics=broken)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        status, body = http_get(url + "/metrics")
        assert status == 500
        assert "boom" in body
        assert http_get(url + "/healthz")[0] == 200
    finally:
        server.stop()
