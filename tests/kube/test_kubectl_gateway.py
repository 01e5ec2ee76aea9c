"""``kubectl muster approvals`` finds the gateway on its own: ``--gateway`` or
``MUSTER_GATEWAY`` first, else the chart's gateway Service in the current kube context (its
load balancer address, or ``kubectl port-forward`` to it), and says what to do when there is
none, or no token. Against the real API server of the kube tier; nothing listens where the
found address points, so each answer shows which address the command chose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from muster_dev.kube import KubeAccess
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)

LABELS = {
    "app.kubernetes.io/name": "muster",
    "app.kubernetes.io/instance": "muster",
    "app.kubernetes.io/component": "gateway",
    "app.kubernetes.io/part-of": "muster",
}


def approvals(
    kube: KubeAccess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``kubectl muster [global flags] approvals ...`` in its own process, no gateway set."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    base["PATH"] = f"{Path(sys.executable).parent}:{base.get('PATH', '')}"  # kubectl, as kubectl
    return subprocess.run(
        [sys.executable, "-m", "muster_operator.kubectl", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**base, **kube.env(), **(env or {})},
    )  # fmt: skip


def flags(kube: KubeAccess, namespace: str) -> list[str]:
    return [*kube.kubectl_args(), "-n", namespace, "approvals", "--token", "alice-demo-token"]


def gateway_service(core: client.CoreV1Api, namespace: str, kind: str, port: int) -> None:
    ports = [
        client.V1ServicePort(name="http", port=port, target_port=8080),
        client.V1ServicePort(name="metrics", port=9090, target_port=9090),
    ]
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="muster-gateway", labels=LABELS),
            spec=client.V1ServiceSpec(
                type=kind, selector={"app.kubernetes.io/component": "gateway"}, ports=ports
            ),
        ),
    )


def test_no_token_says_how_to_give_one(kube: KubeAccess) -> None:
    result = approvals(kube, "approvals", "list")
    assert result.returncode == 2
    assert "pass --token TOKEN or set MUSTER_TOKEN=TOKEN" in result.stderr


def test_no_gateway_and_no_kube_context_says_how_to_name_one(
    kube: KubeAccess, tmp_path: Path
) -> None:
    result = approvals(
        kube, "approvals", "--token", "t", "list", env={"KUBECONFIG": str(tmp_path / "none")}
    )
    assert result.returncode == 2, result.stderr
    assert "no gateway given and no kube context" in result.stderr
    assert "set MUSTER_GATEWAY=" in result.stderr
    assert "127.0.0.1:8080" not in result.stderr  # no silent default any more


def test_a_namespace_without_the_gateway_says_so(kube: KubeAccess, namespace: str) -> None:
    result = approvals(kube, *flags(kube, namespace), "list")
    assert result.returncode == 1
    assert f"namespace {namespace} of kube context" in result.stderr
    assert "has no Muster gateway Service" in result.stderr
    assert "-n NAMESPACE" in result.stderr


def test_the_load_balancer_address_of_the_gateway_service_is_used(
    kube: KubeAccess, namespace: str, core_api: client.CoreV1Api
) -> None:
    port = free_port()  # nothing listens there: the error names the address chosen
    gateway_service(core_api, namespace, "LoadBalancer", port)
    core_api.patch_namespaced_service_status(
        "muster-gateway",
        namespace,
        {"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}},
    )
    result = approvals(kube, *flags(kube, namespace), "list")
    assert result.returncode == 1
    assert f"cannot reach the gateway at http://127.0.0.1:{port}/v1" in result.stderr


def test_a_cluster_ip_gateway_service_is_reached_through_port_forward(
    kube: KubeAccess, namespace: str, core_api: client.CoreV1Api
) -> None:
    gateway_service(core_api, namespace, "ClusterIP", 80)
    result = approvals(kube, *flags(kube, namespace), "list")
    # No pod backs the Service on this control plane, so kubectl refuses to forward.
    assert result.returncode == 1
    assert f"cannot port-forward to the gateway Service {namespace}/muster-gateway" in (
        result.stderr
    )
    assert "set MUSTER_GATEWAY=" in result.stderr


def test_muster_gateway_wins_over_the_kube_context(kube: KubeAccess, namespace: str) -> None:
    port = free_port()
    result = approvals(
        kube, *flags(kube, namespace), "list", env={"MUSTER_GATEWAY": f"http://127.0.0.1:{port}"}
    )
    assert result.returncode == 1
    assert f"cannot reach the gateway at http://127.0.0.1:{port}/v1" in result.stderr
