"""The control plane itself: it is ready, speaks the built Kubernetes version, authenticates
the generated kubeconfig's admin as ``system:masters``, and serves core objects."""

from __future__ import annotations

import json
import subprocess

import pytest
from kubernetes import client

from muster_dev.kube import KubeAccess, kube_binary
from tests.kube.support import Run

pytestmark = pytest.mark.kube


def test_readyz_is_ok(kubectl: Run) -> None:
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_admin_is_a_system_master(kube: KubeAccess, kubectl: Run) -> None:
    if kube.existing:
        pytest.skip("an existing cluster's user is whatever its kubeconfig says")
    review = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)
    assert "system:masters" in review["status"]["userInfo"]["groups"]


def test_server_version_is_the_built_one(kube: KubeAccess, kubectl: Run) -> None:
    if kube.existing:
        pytest.skip("an existing cluster runs its own version")
    built = subprocess.run(
        [str(kube_binary("kube-apiserver")), "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    served = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]
    # The Makefile stamps the release version in; an unstamped build says v0.0.0-master.
    assert served["gitVersion"] == built
    assert built.startswith("v1.")


def test_configmap_round_trip(core_api: client.CoreV1Api, namespace: str) -> None:
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="greeting"), data={"hello": "world"}
    )
    core_api.create_namespaced_config_map(namespace, body)
    stored = core_api.read_namespaced_config_map("greeting", namespace)
    assert stored.data == {"hello": "world"}
    assert stored.metadata is not None
    assert stored.metadata.uid
