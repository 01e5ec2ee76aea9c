"""Health and metrics endpoint of every Muster process: ``/healthz``, ``/readyz``, ``/metrics``.

The server runs on its own thread so probes answer even while the event loop is busy;
liveness is then judged by a heartbeat the event loop must keep beating, which catches a
loop that is blocked or dead. Readiness is the conjunction of named checks that the
process's components set (Temporal reachable, worker polling, ...).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class CheckState:
    """One readiness check: whether it passes, why, and since when."""

    ok: bool
    detail: str
    since: float


class Health:
    """Liveness heartbeat plus named readiness checks, safe to use from any thread."""

    def __init__(self, *, stall_after: float = 30.0) -> None:
        self._checks: dict[str, CheckState] = {}
        self._lock = threading.Lock()
        self._stall_after = stall_after
        self._last_beat: float | None = None
        self._draining = False

    def register(self, name: str, detail: str = "starting") -> None:
        """Declare a check that starts out failing until a component reports success."""
        self.set(name, ok=False, detail=detail)

    def set(self, name: str, *, ok: bool, detail: str) -> None:
        """Record a check's current state; transitions are logged."""
        with self._lock:
            previous = self._checks.get(name)
            if previous is not None and previous.ok == ok and previous.detail == detail:
                return
            self._checks[name] = CheckState(ok=ok, detail=detail, since=time.time())
        if previous is None or previous.ok != ok:
            log.log(
                logging.INFO if ok else logging.WARNING,
                "readiness check %s: %s",
                name,
                "ok" if ok else "failing",
                extra={"check": name, "detail": detail},
            )

    def set_draining(self) -> None:
        """Mark the process as shutting down; readiness fails from now on."""
        with self._lock:
            self._draining = True

    def beat(self) -> None:
        """Called periodically by the event loop to prove it still runs."""
        self._last_beat = time.monotonic()

    async def heartbeat(self, interval: float = 1.0) -> None:
        """Beat from the event loop until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(interval)

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Alive unless the event loop has stopped beating for ``stall_after`` seconds."""
        if self._last_beat is None:
            return True, {"status": "alive", "detail": "starting"}
        age = time.monotonic() - self._last_beat
        if age > self._stall_after:
            return False, {"status": "stalled", "detail": f"event loop silent for {age:.1f}s"}
        return True, {"status": "alive"}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every registered check passes and the process is not draining."""
        with self._lock:
            checks = {
                name: {"ok": state.ok, "detail": state.detail, "since": state.since}
                for name, state in sorted(self._checks.items())
            }
            draining = self._draining
        ok = bool(checks) and all(c["ok"] for c in checks.values()) and not draining
        status = "draining" if draining else ("ready" if ok else "not ready")
        return ok, {"status": status, "checks": checks}


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/healthz":
                ok, body = self.server.health.liveness()
                self._json(200 if ok else 503, body)
            elif path == "/readyz":
                ok, body = self.server.health.readiness()
                self._json(200 if ok else 503, body)
            elif path == "/metrics" and self.server.metrics is not None:
                payload = self.server.metrics()
                self._send(200, payload, "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._json(404, {"error": f"no such endpoint: {path}"})
        except Exception as exc:
            log.exception("health endpoint %s failed", path)
            self._json(500, {"error": str(exc)})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode() + b"\n", "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes every few seconds would flood the logs; errors are logged in do_GET.
        return


class HealthServer(ThreadingHTTPServer):
    """Serves health and metrics on a background thread."""

    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        health: Health,
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        self.health = health
        self.metrics = metrics
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return int(self.server_address[1])

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="muster-health", kwargs={"poll_interval": 0.2}
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
