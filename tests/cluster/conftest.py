"""Fixtures of the cluster tier: one real one-node cluster per session (``muster cluster up``
in a child process, as a user runs it), kubectl, helm and the Python client pointed at it,
and fresh namespaces per test. ``tests.cluster.support.import_images`` brings more images
from buildah's storage into the node.

The node needs root (namespaces, mounts, cgroups, containerd); without it every test here is
skipped with that reason. Its parts come from ``make node-tools`` and the pods' image from
``make image-base``. The teardown test, which stops the cluster and checks that the host is
as before, runs after every other test of the tier.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from muster_dev.kube import kube_binary
from tests.cluster.support import (
    BIN,
    ClusterHandle,
    Manifest,
    kubectl_argv,
    start_cluster,
    stop_cluster,
)
from tests.kube.support import Run
from tests.kube_fixtures import _runner

log = logging.getLogger(__name__)

TEARDOWN_MODULE = "test_teardown.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the teardown test behind every other test of this tier (and no further, so the
    node stops before the next tier runs)."""
    teardown = [i for i in items if f"tests/cluster/{TEARDOWN_MODULE}" in i.nodeid]
    rest = [i for i in items if i not in teardown]
    ours = [k for k, item in enumerate(rest) if "tests/cluster/" in item.nodeid]
    end = ours[-1] + 1 if ours else len(rest)
    items[:] = [*rest[:end], *teardown, *rest[end:]]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """The session's cluster; stopped at the end unless the teardown test stopped it."""
    if os.geteuid() != 0:
        pytest.skip(
            "the cluster tier needs root: the local node creates network and mount namespaces, "
            "cgroups and a veth pair, and runs containerd and the kubelet"
        )
    handle = start_cluster(tmp_path_factory.mktemp("cluster") / "node")
    log.info("cluster ready after %.1fs: %s", handle.ready_after, handle.memory_line)
    try:
        yield handle
    finally:
        if not handle.stopped:
            result = stop_cluster(handle)
            if result.returncode != 0:
                log.error("muster cluster down: %s%s", result.stdout, result.stderr)


@pytest.fixture(scope="session")
def node_kubectl(cluster: ClusterHandle) -> Run:
    """kubectl against the session's cluster."""
    binary, *global_args = kubectl_argv(cluster)
    return _runner(Path(binary), global_args, cluster.env())


@pytest.fixture(scope="session")
def node_helm(cluster: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``./bin/helm`` against the session's cluster, its cache and config in a temporary
    folder (for the chart on the node)."""
    home = tmp_path_factory.mktemp("node-helm-home")
    env = {
        **cluster.env(),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return _runner(kube_binary("helm", BIN), ["--kubeconfig", str(cluster.kubeconfig)], env)


@pytest.fixture(scope="session")
def node_core(cluster: ClusterHandle) -> Iterator[client.CoreV1Api]:
    """The core/v1 API of the session's cluster, as its admin."""
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    yield client.CoreV1Api(api)
    api.close()


NamespaceFactory = Callable[..., str]


@pytest.fixture
def node_namespace(node_core: client.CoreV1Api) -> Iterator[NamespaceFactory]:
    """Make namespaces for one test (``node_namespace(restricted=True)``); deleted after it."""
    made: list[str] = []

    def make(*, restricted: bool = True) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        labels = {"muster.io/cluster-test": "true"}
        if restricted:
            labels["pod-security.kubernetes.io/enforce"] = "restricted"
            labels["pod-security.kubernetes.io/enforce-version"] = "latest"
        body: Manifest = {"metadata": {"name": name, "labels": labels}}
        node_core.create_namespace(body)  # type: ignore[arg-type]
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            node_core.delete_namespace(name, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise
