"""Worker processes as Kubernetes runs them: probes while connecting, readiness once the
server lists the worker as a poller, one /metrics with Temporal SDK and service metrics,
retry with backoff while Temporal is unreachable, and draining on SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

from muster_dev.process import wait_for_exit
from muster_dev.temporal import DevServer, DevServerConfig
from muster_runtime.canary import TASK_QUEUE
from muster_runtime.canary.models import PingInput, PingResult
from tests.helpers import free_port, http_get, start_service, unique, wait_until


def ready(url: str) -> bool:
    try:
        return http_get(url + "/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def metric_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


async def test_canary_worker_serves_probes_and_one_metrics_endpoint(
    client: Client, temporal_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = start_service(
        "muster_runtime.canary",
        {**temporal_env, "MUSTER_CANARY_HTTP__PORT": str(port)},
        tmp_path / "canary.log",
    )
    try:
        wait_until(lambda: ready(url), what="canary /readyz", timeout=60)
        assert http_get(url + "/healthz")[0] == 200
        body = json.loads(http_get(url + "/readyz")[1])
        assert body["checks"]["worker"]["detail"] == f"polling task queue {TASK_QUEUE}"

        result = await client.execute_workflow(
            "CanaryPing",
            PingInput(message="hello"),
            id=unique("canary"),
            task_queue=TASK_QUEUE,
            result_type=PingResult,
        )
        assert result.echo == "hello"
        assert result.handled_by.startswith(f"canary-{worker.pid}@")

        def scraped() -> str | None:
            text = http_get(url + "/metrics")[1]
            return text if "temporal_workflow_completed" in text else None

        text = wait_until(scraped, what="workflow metrics in /metrics", timeout=20)
        names = metric_names(text)
        # Temporal Core SDK metrics, named as Temporal's Core-SDK dashboard expects ...
        assert {"temporal_request", "temporal_workflow_completed"} <= names
        assert "temporal_activity_execution_latency" in names
        # ... next to the service's own metrics, in one body.
        assert {"muster_canary_echoes", "muster_ready", "muster_service_info"} <= names
        assert "muster_canary_echoes_total 1.0" in text
        assert 'muster_ready{check="worker"} 1.0' in text

        worker.signal(signal.SIGTERM)
        assert wait_for_exit(worker, timeout=30) == 0
        log = (tmp_path / "canary.log").read_text()
        assert "draining worker" in log
        assert "Traceback" not in log
    finally:
        worker.stop()


def test_unreachable_temporal_is_retried_and_reported(tmp_path: Path) -> None:
    temporal_port = free_port()
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    worker = start_service(
        "muster_runtime.canary",
        {
            "TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "MUSTER_CANARY_HTTP__PORT": str(http_port),
        },
        tmp_path / "canary.log",
    )
    server: DevServer | None = None
    try:

        def reported() -> dict[str, object] | None:
            try:
                status, body = http_get(url + "/readyz", timeout=2)
            except OSError:
                return None
            data = json.loads(body)
            detail = str(data.get("checks", {}).get("temporal", {}).get("detail", ""))
            return data if status == 503 and "cannot reach" in detail else None

        wait_until(reported, what="readyz reporting the unreachable server", timeout=30)
        assert http_get(url + "/healthz")[0] == 200  # alive: it is waiting, not broken
        assert worker.running()

        server = DevServer(
            DevServerConfig(port=temporal_port, ui_port=None), log_path=tmp_path / "t.log"
        )
        server.start()
        wait_until(lambda: ready(url), what="readiness after Temporal came up", timeout=60)

        worker.signal(signal.SIGTERM)
        assert wait_for_exit(worker, timeout=30) == 0
        assert "retrying in" in (tmp_path / "canary.log").read_text()
    finally:
        worker.stop()
        if server is not None:
            server.stop()


def test_a_busy_http_port_is_one_clear_line(temporal_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        worker = start_service(
            "muster_runtime.canary",
            {**temporal_env, "MUSTER_CANARY_HTTP__HOST": "127.0.0.1",
             "MUSTER_CANARY_HTTP__PORT": str(port)},
            tmp_path / "canary.log",
        )  # fmt: skip
        try:
            assert wait_for_exit(worker, timeout=30) == 2
        finally:
            worker.stop()
    log = (tmp_path / "canary.log").read_text()
    assert f"muster-canary: configuration error: MUSTER_CANARY_HTTP__PORT={port}: binding" in log
    assert "already in use" in log
    assert "Traceback" not in log
