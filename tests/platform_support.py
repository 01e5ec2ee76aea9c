"""The whole platform as processes for the gateway and browser tests: backends, the
fulfillment and approval workers, the local mailbox (a real SMTP server), a webhook
receiver, and the gateway, all against the session's dev server."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from muster_dev.process import ManagedProcess
from tests.fulfillment_support import BackendsProcess, start_backends
from tests.helpers import REPO, free_port, http_get, start_service, wait_until

TOKENS = {user: f"{user}-demo-token" for user in ("alice", "bob", "carol", "dave", "shop")}

PURCHASES = """\
apiVersion: muster.io/v1alpha1
kind: ApprovalPolicy
metadata: {name: purchases}
spec:
  appliesTo: {kinds: [purchase]}
  approvers: {users: [alice, bob]}
  requiredApprovals: 2
  timeout: 7d
  notifications:
    email: {enabled: true, notifyRequester: true}
    webhook:
      urlSecretRef: {name: approvals-webhook, key: url}
"""

# Escalates after two seconds without an answer, so escalation runs in real time (on the dev
# server and on the real server alike).
QUICK_ESCALATION = """\
apiVersion: muster.io/v1alpha1
kind: ApprovalPolicy
metadata: {name: quick-escalation}
spec:
  appliesTo: {kinds: [equipment]}
  approvers: {users: [bob]}
  requiredApprovals: 1
  timeout: 2s
  escalations:
    - to: {groups: [managers]}
      timeout: 1h
  onTimeout: Reject
"""


class _Receiver(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(
            {"headers": dict(self.headers), "body": json.loads(body), "path": self.path}
        )
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class WebhookReceiver(ThreadingHTTPServer):
    """A local HTTP endpoint that keeps every webhook call."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Receiver)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/approvals"


@dataclass
class Platform:
    """URLs and processes of a running platform."""

    gateway: str
    mailbox: str
    backends: BackendsProcess
    webhook: WebhookReceiver
    approval_env: dict[str, str]
    tmp: Path
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    gateway_env: dict[str, str] = field(default_factory=dict)
    """/metrics URL of each process by its module."""
    session_key: bytes = b""
    """The key the gateway signs web sessions with (tests mint expired and forged ones)."""

    def client(self, user: str) -> httpx.AsyncClient:
        """An API client authenticated as ``user``."""
        return httpx.AsyncClient(
            base_url=self.gateway,
            headers={"Authorization": f"Bearer {TOKENS[user]}"},
            timeout=30,
        )

    def mail_to(self, address: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.mailbox}/messages", params={"to": address}, timeout=10)
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    def start_approval_worker(self) -> ManagedProcess:
        """(Re)start the approval worker."""
        process = _start_ready(
            "muster_approval",
            self.approval_env,
            self.tmp / "approval.log",
            "MUSTER_APPROVAL_",
            self.metrics,
        )
        self.processes["approval"] = process
        return process

    def start_worker(self, name: str, module: str, env: dict[str, str], prefix: str) -> None:
        """Start one more worker process (stopped with the platform)."""
        self.processes[name] = _start_ready(
            module, env, self.tmp / f"{name}.log", prefix, self.metrics
        )

    def restart_gateway(self) -> ManagedProcess:
        """Stop the gateway (SIGTERM, it drains) and start it again on the same port."""
        self.processes["gateway"].stop()
        process = _start_ready(
            "muster_gateway", self.gateway_env, self.tmp / "gateway.log", "MUSTER_GATEWAY_",
            self.metrics,
        )  # fmt: skip
        self.processes["gateway"] = process
        return process


def _start_ready(
    module: str,
    env: dict[str, str],
    log: Path,
    prefix: str,
    metrics: dict[str, str] | None = None,
) -> ManagedProcess:
    port = free_port()
    if metrics is not None:
        metrics[module] = f"http://127.0.0.1:{port}/metrics"
    process = start_service(
        module,
        {**env, f"{prefix}HTTP__HOST": "127.0.0.1", f"{prefix}HTTP__PORT": str(port)},
        log,
    )

    def ready() -> bool:
        assert process.running(), process.tail()
        try:
            return http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    wait_until(ready, what=f"{module} ready", timeout=90)
    return process


@contextmanager
def platform(tmp: Path, temporal_env: dict[str, str]) -> Iterator[Platform]:
    """Start everything; stop everything afterwards."""
    policies = tmp / "policies"
    shutil.copytree(REPO / "examples" / "policies", policies)
    (policies / "purchases.yaml").write_text(PURCHASES)
    (policies / "quick-escalation.yaml").write_text(QUICK_ESCALATION)
    secrets = tmp / "secrets"
    webhook = WebhookReceiver()
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    (secrets / "approvals-webhook").mkdir(parents=True)
    (secrets / "approvals-webhook" / "url").write_text(webhook.url)
    processes: dict[str, ManagedProcess] = {}
    backends = start_backends(
        tmp, {"MUSTER_BACKENDS_INITIAL_STOCK": '{"WIDGET-1": 1000, "GADGET-2": 1000}'}
    )
    try:
        mailbox_api, smtp = free_port(), free_port()
        processes["mailbox"] = _start_ready(
            "muster_dev.mailbox",
            {"MUSTER_MAILBOX_API__PORT": str(mailbox_api), "MUSTER_MAILBOX_SMTP__PORT": str(smtp)},
            tmp / "mailbox.log",
            "MUSTER_MAILBOX_",
        )
        gateway_port = free_port()
        session_key = tmp / "session.key"
        session_key.write_bytes(os.urandom(32).hex().encode())
        approval_env = {
            **temporal_env,
            "MUSTER_APPROVAL_POLICIES_DIR": str(policies),
            "MUSTER_APPROVAL_DIRECTORY_FILE": str(REPO / "examples" / "directory.yaml"),
            "MUSTER_APPROVAL_SECRETS_DIR": str(secrets),
            "MUSTER_APPROVAL_SMTP__PORT": str(smtp),
            "MUSTER_APPROVAL_PUBLIC_URL": f"http://127.0.0.1:{gateway_port}/ui",
            "MUSTER_APPROVAL_WORKER__GRACEFUL_SHUTDOWN_SECONDS": "2",
        }
        found = Platform(
            gateway=f"http://127.0.0.1:{gateway_port}",
            mailbox=f"http://127.0.0.1:{mailbox_api}",
            backends=backends,
            webhook=webhook,
            approval_env=approval_env,
            tmp=tmp,
            processes=processes,
            session_key=session_key.read_bytes(),
        )
        found.start_approval_worker()
        processes["fulfillment"] = _start_ready(
            "muster_fulfillment",
            {**temporal_env, **backends.urls_env()},
            tmp / "fulfillment.log",
            "MUSTER_FULFILLMENT_",
            found.metrics,
        )
        found.gateway_env = {
            **temporal_env,
            "MUSTER_GATEWAY_API__HOST": "127.0.0.1",
            "MUSTER_GATEWAY_API__PORT": str(gateway_port),
            "MUSTER_GATEWAY_POLICIES_DIR": str(policies),
            "MUSTER_GATEWAY_DIRECTORY_FILE": str(REPO / "examples" / "directory.yaml"),
            "MUSTER_GATEWAY_AUTH__TOKENS_FILE": str(REPO / "examples/gateway/tokens.yaml"),
            "MUSTER_GATEWAY_AUTH__MODE": "tokens+proxy",
            "MUSTER_GATEWAY_AUTH__SESSION_SECRET_FILE": str(session_key),
        }
        processes["gateway"] = _start_ready(
            "muster_gateway", found.gateway_env, tmp / "gateway.log", "MUSTER_GATEWAY_",
            found.metrics,
        )  # fmt: skip
        yield found
    finally:
        for process in reversed(list(processes.values())):
            process.stop()
        backends.process.stop()
        webhook.shutdown()
        webhook.server_close()
