"""Fixtures of the operator tests: the generated CRDs, one operator process per test module
(watching the per-test ``t-*`` namespaces), resources of the test's namespace, and
``kubectl muster`` as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from muster_dev.kube import KubeAccess
from muster_dev.temporal import find_tool
from muster_runtime.polling import wait_until
from muster_runtime.settings import TemporalSettings
from tests.kube.operator_support import (
    CRD_DIR,
    OperatorProcess,
    Resources,
    delete_all,
    operator_env,
)
from tests.kube.support import Run


@pytest.fixture(scope="module")
def crds(kubectl: Run, api_client: k8s.ApiClient) -> None:
    """The generated CRDs, installed as the chart installs them, and Established."""
    kubectl("apply", "-f", str(CRD_DIR))
    ext = k8s.ApiextensionsV1Api(api_client)
    for plural in ("schedules", "approvalpolicies", "workerdeployments"):

        def established(name: str = f"{plural}.muster.io") -> bool:
            crd = ext.read_custom_resource_definition(name)
            conditions = crd.status.conditions if crd.status else None
            state = {c.type: c.status for c in (conditions or [])}
            return state.get("Established") == "True"

        wait_until(established, what=f"{plural} CRD Established", timeout=30)
    custom = k8s.CustomObjectsApi(api_client)
    wait_until(
        lambda: custom.list_cluster_custom_object("muster.io", "v1alpha1", "schedules"),
        what="schedules to be served",
        timeout=30,
        ignore=(ApiException,),
    )


@pytest.fixture(scope="module")
def policy_namespace(core_api: k8s.CoreV1Api) -> str:
    """Where this module's operator publishes policy snapshots."""
    name = f"muster-{uuid.uuid4().hex[:8]}"
    core_api.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def operator(
    kube: KubeAccess,
    api_client: k8s.ApiClient,
    temporal_settings: TemporalSettings,
    crds: None,
    policy_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator, watching the per-test namespaces (``t-*``); one per test module. At the
    end of the module it deletes what the tests left, then stops, so the next module's
    operator starts with none of it."""
    env = operator_env(
        kube,
        temporal_settings.address,
        namespaces=["t-*"],
        policy_namespace=policy_namespace,
    )
    process = OperatorProcess(env, tmp_path_factory.mktemp("operator") / "operator")
    process.start()
    yield process
    if process.process is not None:
        delete_all(k8s.CustomObjectsApi(api_client), "t-")
    process.stop()


@pytest.fixture
def schedules(api_client: k8s.ApiClient, namespace: str, operator: OperatorProcess) -> Resources:
    """Schedules in this test's namespace (the operator is running)."""
    return Resources(k8s.CustomObjectsApi(api_client), namespace, "schedules", "Schedule")


@pytest.fixture
def policies(api_client: k8s.ApiClient, namespace: str, operator: OperatorProcess) -> Resources:
    """ApprovalPolicies in this test's namespace (the operator is running)."""
    return Resources(
        k8s.CustomObjectsApi(api_client), namespace, "approvalpolicies", "ApprovalPolicy"
    )


@pytest.fixture
def kubectl_muster(kube: KubeAccess, temporal_settings: TemporalSettings) -> Run:
    """``kubectl muster ...``: kubectl finds the plugin on the PATH, as a user's would."""
    kubectl = find_tool("kubectl", "MUSTER_KUBECTL_BIN", "run `make venv`")
    scripts = Path(sys.executable).parent  # where kubectl-muster is installed
    env = {
        **os.environ,
        **kube.env(),
        "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEMPORAL_ADDRESS": temporal_settings.address,
        "TEMPORAL_NAMESPACE": temporal_settings.namespace,
    }

    def run(*args: str, input: str | None = None, check: bool = True) -> Any:
        del input
        result = subprocess.run(
            [str(kubectl), "muster", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"kubectl muster {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    return run
