"""The chart's NetworkPolicies, enforced on the node by kube-network-policies, let through
every path Muster needs and refuse the ones it does not: the workers, the gateway and the
operator reach the dev server's gRPC port; the fulfillment and scheduling workers reach the
backends; the API server (outside the pod network) reaches the operator's webhook; the
gateway's API and every pod's metrics answer from anywhere (``gatewayFrom`` and
``metricsFrom`` are empty in the scenario). Refused: the approval worker calling the
backends, and a pod of another namespace calling the backends or the dev server."""

from __future__ import annotations

import json

import pytest

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.release import RELEASE, Release
from tests.cluster.support import apply, sleeper, wait_for_http, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def refused(result: dict[str, str]) -> bool:
    """A connection the policy dropped: no answer, not even a refusal."""
    return "timed out" in result["error"]


def test_policies_allow_musters_paths_and_refuse_the_rest(
    release: Release, node_namespace: NamespaceFactory
) -> None:
    ns, kubectl = release.namespace, release.kubectl
    pod = {c: release.pods(c)[0]["metadata"]["name"]
           for c in ("operator", "approval", "scheduling", "fulfillment", "gateway")}  # fmt: skip
    temporal = f"tcp://{RELEASE}-temporal:7233"
    stock = f"http://{RELEASE}-backends:8100/inventory/stock"

    # Everything that talks to Temporal reaches it.
    for component in ("operator", "approval", "scheduling", "fulfillment", "gateway"):
        assert wait_for_http(kubectl, ns, pod[component], temporal, ok=True)["body"] == "connected"
    # The workers that call the backends reach them ...
    for component in ("fulfillment", "scheduling"):
        answer = wait_for_http(kubectl, ns, pod[component], stock, ok=True)
        assert isinstance(json.loads(answer["body"]), list)
    # ... the approval worker, in the same namespace, does not.
    assert refused(wait_for_http(kubectl, ns, pod["approval"], stock, ok=False))

    # The API server calls the webhook (failurePolicy Fail: no answer would be an error).
    schedule = {
        "apiVersion": "muster.io/v1alpha1",
        "kind": "Schedule",
        "metadata": {"name": "dry-run"},
        "spec": {"cron": ["0 6 * * *"],
                 "workflow": {"type": "HealthCheck", "taskQueue": "muster-scheduling"}},
    }  # fmt: skip
    dry = kubectl("apply", "-n", ns, "--dry-run=server", "-f", "-", input=json.dumps(schedule))
    assert "schedule.muster.io/dry-run created (server dry run)" in dry.stdout

    # From another namespace: the gateway's API and the metrics answer ...
    other = node_namespace(restricted=True)
    apply(kubectl, other, sleeper("client"))
    wait_ready(kubectl, other, "client")
    gateway = f"http://{RELEASE}-gateway.{ns}"
    assert (
        "openapi"
        in wait_for_http(kubectl, other, "client", f"{gateway}/openapi.json", ok=True)["body"]
    )
    backends_ip = release.pods("backends")[0]["status"]["podIP"]
    metrics = wait_for_http(kubectl, other, "client", f"http://{backends_ip}:9090/metrics", ok=True)
    assert "muster_service_info" in metrics["body"]
    # ... the backends and the dev server do not.
    assert refused(
        wait_for_http(
            kubectl,
            other,
            "client",
            f"http://{RELEASE}-backends.{ns}:8100/inventory/stock",
            ok=False,
        )
    )
    assert refused(
        wait_for_http(kubectl, other, "client", f"tcp://{RELEASE}-temporal.{ns}:7233", ok=False)
    )
