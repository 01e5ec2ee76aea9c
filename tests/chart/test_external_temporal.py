"""The chart against an external Temporal cluster: the real Temporal server started as a
host process with TLS, once requiring client certificates (mTLS) and once behind Temporal's
default authorizer (API keys). A fulfillment worker runs with exactly the Temporal
environment the chart renders for it (``temporal.tls.*``, ``temporal.apiKey.*``), its
certificates as files where the chart mounts the Secrets, becomes ready and fulfils an
order; without the client certificate, or with a key the cluster did not issue, the
connection is refused."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from muster_api.fulfillment import WORKFLOW, FulfillmentInput, OrderResult, OrderStatus
from muster_dev.process import ManagedProcess
from muster_dev.temporal_server import (
    JwtAuth,
    ServerTLS,
    TemporalServer,
)
from muster_runtime.client import connect
from muster_runtime.settings import TemporalSettings
from tests.chart.support import CHART
from tests.fulfillment_support import BackendsProcess, order, sku, start_backends
from tests.helpers import (
    free_port,
    http_get,
    start_service,
    throwaway_server_config,
    wait_until,
)
from tests.kube.support import Run
from tests.tlsutil import ApiKeyIssuer, Issued, TestCA

pytestmark = pytest.mark.timeout(300)

SERVER_NAME = "temporal.muster.test"
CLIENT_SECRET, CA_SECRET, KEY_SECRET = "temporal-client-tls", "temporal-ca", "temporal-api-key"


@dataclass
class Pki:
    ca: TestCA
    server: Issued
    client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = TestCA(tmp_path_factory.mktemp("pki"))
    return Pki(
        ca,
        ca.issue("temporal-frontend", server=True, dns=(SERVER_NAME,)),
        ca.issue("muster-fulfillment", server=False),
    )


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendsProcess]:
    running = start_backends(tmp_path_factory.mktemp("backends"))
    yield running
    running.process.stop()


def rendered_worker(helm: Run, *values: str) -> dict[str, Any]:
    """The fulfillment worker's pod spec as the chart renders it with ``values``."""
    result = helm(
        "template", "m", str(CHART), "--set", "backends.enabled=true",
        "--show-only", "templates/fulfillment-deployment.yaml", *values,
    )  # fmt: skip
    (deployment,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def temporal_env(
    pod: dict[str, Any], secrets: dict[str, dict[str, bytes]], root: Path
) -> dict[str, str]:
    """The container's ``TEMPORAL_*`` variables with Secret references resolved, and every
    Secret volume written under ``root`` where the container mounts it (paths in the
    variables moved along)."""
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        for key, data in secrets[source["secretName"]].items():
            (folder / key).write_bytes(data)
        mounts[mount["mountPath"]] = folder
    env: dict[str, str] = {}
    for item in container["env"]:
        name = item["name"]
        if not name.startswith("TEMPORAL_"):
            continue
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[name] = secrets[ref["name"]][ref["key"]].decode()
            continue
        value = str(item["value"])
        for mount_path, folder in mounts.items():
            if value.startswith(mount_path + "/"):
                value = str(folder / value.removeprefix(mount_path + "/"))
        env[name] = value
    return env


def settings_from(env: dict[str, str]) -> TemporalSettings:
    """What a Muster process reads from these variables."""
    fields = {name.removeprefix("TEMPORAL_").lower(): value for name, value in env.items()}
    return TemporalSettings.model_validate(fields)


def run_worker(env: dict[str, str], backends: BackendsProcess, log: Path) -> ManagedProcess:
    port = free_port()
    process = start_service(
        "muster_fulfillment",
        {
            **env,
            **backends.urls_env(),
            "MUSTER_FULFILLMENT_HTTP__HOST": "127.0.0.1",
            "MUSTER_FULFILLMENT_HTTP__PORT": str(port),
            "MUSTER_FULFILLMENT_WORKER__GRACEFUL_SHUTDOWN_SECONDS": "1",
        },
        log,
    )

    def ready() -> bool:
        assert process.running(), process.tail()
        try:
            return http_get(f"http://127.0.0.1:{port}/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    # Ready means: Temporal reachable, and the server lists this worker as a poller.
    wait_until(ready, what="fulfillment worker ready against the TLS server", timeout=90)
    return process


async def fulfil_one(settings: TemporalSettings, backends: BackendsProcess) -> None:
    """An order through the worker, from a client configured like the worker."""
    item = sku()
    backends.set_stock(item, 5)
    client = await connect(settings, tracing=False)
    placed = order([(item, 1, 1_000)])
    result = await client.execute_workflow(
        WORKFLOW,
        FulfillmentInput(order=placed),
        id=f"order-{placed.order_id}",
        task_queue="muster-fulfillment",
        result_type=OrderResult,
    )
    assert result.status == OrderStatus.FULFILLED


async def test_mtls_client_certificate_from_a_secret(
    helm: Run, pki: Pki, backends: BackendsProcess, tmp_path: Path
) -> None:
    server = TemporalServer(
        throwaway_server_config(
            tmp_path / "server",
            tls=ServerTLS(pki.server.cert, pki.server.key, client_ca=pki.ca.ca.cert),
        )
    )
    secrets = {
        CLIENT_SECRET: {
            "tls.crt": pki.client.cert.read_bytes(),
            "tls.key": pki.client.key.read_bytes(),
        },
        CA_SECRET: {"ca.crt": pki.ca.ca.cert.read_bytes()},
    }
    pod = rendered_worker(
        helm,
        "--set", f"temporal.address=127.0.0.1:{server.config.ports.frontend}",
        "--set", "temporal.tls.enabled=true",
        "--set", f"temporal.tls.clientSecret={CLIENT_SECRET}",
        "--set", f"temporal.tls.caSecret={CA_SECRET}",
        "--set", f"temporal.tls.serverName={SERVER_NAME}",
    )  # fmt: skip
    env = temporal_env(pod, secrets, tmp_path / "pod")
    assert env["TEMPORAL_TLS"] == "true"
    assert env["TEMPORAL_TLS_CLIENT_CERT_PATH"].endswith("/etc/muster/temporal-tls/client/tls.crt")
    settings = settings_from(env)
    server.start(admin=settings)
    worker: ManagedProcess | None = None
    try:
        worker = run_worker(env, backends, tmp_path / "worker.log")
        await fulfil_one(settings, backends)
        # The frontend requires the client certificate: without it the handshake fails.
        anonymous = settings.model_copy(
            update={"tls_client_cert_path": None, "tls_client_key_path": None}
        )
        with pytest.raises(RuntimeError, match="connect"):
            await connect(anonymous, tracing=False)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()


class _Jwks(BaseHTTPRequestHandler):
    server: JwksServer

    def do_GET(self) -> None:
        body = json.dumps(self.server.issuer.jwks()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class JwksServer(ThreadingHTTPServer):
    """Publishes the issuer's public key, where Temporal's JWT key provider fetches it."""

    daemon_threads = True

    def __init__(self, issuer: ApiKeyIssuer) -> None:
        self.issuer = issuer
        super().__init__(("127.0.0.1", 0), _Jwks)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/.well-known/jwks.json"


async def test_api_key_from_a_secret(
    helm: Run, pki: Pki, backends: BackendsProcess, tmp_path: Path
) -> None:
    issuer = ApiKeyIssuer()
    jwks = JwksServer(issuer)
    threading.Thread(target=jwks.serve_forever, daemon=True).start()
    server = TemporalServer(
        throwaway_server_config(
            tmp_path / "server",
            tls=ServerTLS(pki.server.cert, pki.server.key),
            auth=JwtAuth(jwks.url),
        )
    )
    worker_key = issuer.token("muster-fulfillment", ["default:write"])
    secrets = {
        KEY_SECRET: {"api-key": worker_key.encode()},
        CA_SECRET: {"ca.crt": pki.ca.ca.cert.read_bytes()},
    }
    pod = rendered_worker(
        helm,
        "--set", f"temporal.address=127.0.0.1:{server.config.ports.frontend}",
        "--set", f"temporal.apiKey.existingSecret={KEY_SECRET}",
        "--set", "temporal.tls.enabled=true",
        "--set", f"temporal.tls.caSecret={CA_SECRET}",
        "--set", f"temporal.tls.serverName={SERVER_NAME}",
    )  # fmt: skip
    env = temporal_env(pod, secrets, tmp_path / "pod")
    assert env["TEMPORAL_API_KEY"] == worker_key
    settings = settings_from(env)
    admin = settings.model_copy(
        update={"api_key": SecretStr(issuer.token("muster-admin", ["temporal-system:admin"]))}
    )
    server.start(admin=admin)
    worker: ManagedProcess | None = None
    try:
        worker = run_worker(env, backends, tmp_path / "worker.log")
        await fulfil_one(settings, backends)
        # A key this cluster did not issue is refused.
        stranger = settings.model_copy(
            update={"api_key": SecretStr(ApiKeyIssuer().token("mallory", ["default:admin"]))}
        )
        with pytest.raises(RuntimeError, match=r"PermissionDenied|Unauthenticated"):
            await connect(stranger, tracing=False)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        jwks.shutdown()
        jwks.server_close()
