"""NetworkPolicies are enforced on the local node (kube-network-policies, the SIG's reference
agent): a connection from another namespace that works without a policy is blocked once a
policy denies ingress, goes through again for the namespace an allowing policy names, and
stays blocked for a namespace it does not name."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.support import apply, service, sleeper, wait_for_http, wait_ready, web_server
from tests.kube.support import Run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _policy(name: str, ingress: list[dict[str, Any]] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Ingress"],
    }
    if ingress is not None:
        spec["ingress"] = ingress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_ingress_policies_block_and_allow_connections_from_other_namespaces(
    node_kubectl: Run, node_namespace: NamespaceFactory
) -> None:
    server_ns = node_namespace(restricted=True)
    allowed_ns = node_namespace(restricted=True)
    other_ns = node_namespace(restricted=True)
    apply(node_kubectl, server_ns, web_server("web"), service("web"))
    apply(node_kubectl, allowed_ns, sleeper("client"))
    apply(node_kubectl, other_ns, sleeper("client"))
    wait_ready(node_kubectl, server_ns, "web")
    wait_ready(node_kubectl, allowed_ns, "client")
    wait_ready(node_kubectl, other_ns, "client")
    url = f"http://web.{server_ns}/hostname"

    # Without a policy both namespaces get through.
    for ns in (allowed_ns, other_ns):
        assert wait_for_http(node_kubectl, ns, "client", url, ok=True)["body"] == "web"

    # A policy with no ingress rule denies every connection to the selected pod.
    apply(node_kubectl, server_ns, _policy("deny-all", []))
    for ns in (allowed_ns, other_ns):
        blocked = wait_for_http(node_kubectl, ns, "client", url, ok=False)
        assert "timed out" in blocked["error"], blocked

    # Policies add up: this one lets the named namespace in, on the server's port only.
    allow = _policy(
        "allow-one-namespace",
        [
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": allowed_ns}
                        }
                    }
                ],
                "ports": [{"port": "http", "protocol": "TCP"}],
            }
        ],
    )
    apply(node_kubectl, server_ns, allow)
    assert wait_for_http(node_kubectl, allowed_ns, "client", url, ok=True)["body"] == "web"
    still = wait_for_http(node_kubectl, other_ns, "client", url, ok=False)
    assert "timed out" in still["error"], still

    # Deleting both restores the open default.
    node_kubectl("delete", "-n", server_ns, "networkpolicy", "deny-all", "allow-one-namespace")
    assert wait_for_http(node_kubectl, other_ns, "client", url, ok=True)["body"] == "web"
