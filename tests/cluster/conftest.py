"""Fixtures of the cluster tier: one real one-node cluster per session (``muster cluster up``
in a child process, as a user runs it), kubectl, helm and the Python client pointed at it,
and fresh namespaces per test. ``tests.cluster.support.import_images`` brings more images
from buildah's storage into the node.

The node needs root (namespaces, mounts, cgroups, containerd); without it every test here is
skipped with that reason. Its parts come from ``make node-tools`` and the pods' image from
``make image-base``. The teardown test, which stops the cluster and checks that the host is
as before, runs after every other test of the tier.

``release`` is Muster itself on the node, shared by the ``test_release*`` modules: every
image built (once per content of the build context) and imported, and the chart installed
with ``ci/local-values.yaml`` into a namespace that enforces the restricted Pod Security
Standard, beside a mail relay for the approval worker. The uninstall test runs after the
other release tests; the fixture uninstalls at the end if it did not.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from muster_dev.kube import kube_binary
from tests.chart.images import context_tag
from tests.cluster.release import (
    MAILBOX,
    MAILBOX_PORT,
    RELEASE,
    Release,
    ensure_images,
    objects,
)
from tests.cluster.support import (
    BIN,
    ClusterHandle,
    Manifest,
    apply,
    import_images,
    kubectl_argv,
    restricted_pod,
    service,
    start_cluster,
    stop_cluster,
    wait_ready,
)
from tests.kube.support import Run
from tests.kube_fixtures import _runner

log = logging.getLogger(__name__)

TEARDOWN_MODULE = "test_teardown.py"
UNINSTALL_MODULE = "test_release_uninstall.py"
# What the tier measured, printed at the end of the run.
TIMINGS: dict[str, float] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the uninstall test behind every other test of this tier, and the teardown test
    behind that (and no further, so the node stops before the next tier runs)."""
    last = [
        [i for i in items if f"tests/cluster/{module}" in i.nodeid]
        for module in (UNINSTALL_MODULE, TEARDOWN_MODULE)
    ]
    moved = {id(i) for group in last for i in group}
    rest = [i for i in items if id(i) not in moved]
    ours = [k for k, item in enumerate(rest) if "tests/cluster/" in item.nodeid]
    end = ours[-1] + 1 if ours else len(rest)
    items[:] = [*rest[:end], *last[0], *last[1], *rest[end:]]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("Muster on the local cluster (seconds)")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{what:60} {seconds:7.1f}")


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
    TIMINGS["muster cluster up, to ready (base image imported)"] = handle.ready_after
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


def mailbox() -> list[Manifest]:
    """An SMTP relay for the approval worker, as a cluster would have one: Python's own
    ``smtpd`` debugging server in the base image, printing every message it receives.
    Unbuffered (``-u``): its output goes to a pipe, where Python would otherwise hold small
    messages in its buffer and ``kubectl logs`` would never show them."""
    pod = restricted_pod(
        MAILBOX,
        ["python3", "-u", "-W", "ignore::DeprecationWarning", "-m", "smtpd", "-n",
         "-c", "DebuggingServer", f"0.0.0.0:{MAILBOX_PORT}"],
        port=MAILBOX_PORT,
    )  # fmt: skip
    return [pod, service(MAILBOX, MAILBOX_PORT, MAILBOX_PORT)]


@pytest.fixture(scope="session")
def release(
    cluster: ClusterHandle, node_kubectl: Run, node_helm: Run, node_core: client.CoreV1Api
) -> Iterator[Release]:
    """Muster from ``ci/local-values.yaml`` on the node, Available (see the module's text)."""
    started = time.monotonic()
    images = ensure_images(context_tag())
    TIMINGS["images: build (what was missing)"] = round(time.monotonic() - started, 1)
    log.info("images %s: built %s, reused %s", images.tag, images.built, images.reused)
    imported = time.monotonic()
    import_images(cluster, *images.references)
    TIMINGS["images: import into the node"] = round(time.monotonic() - imported, 1)

    namespace = f"muster-{uuid.uuid4().hex[:8]}"
    labels = {
        "muster.io/cluster-test": "true",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    node_core.create_namespace({"metadata": {"name": namespace, "labels": labels}})  # type: ignore[arg-type]
    apply(node_kubectl, namespace, *mailbox())
    wait_ready(node_kubectl, namespace, MAILBOX)
    handle = Release(cluster, node_kubectl, node_helm, namespace, images.tag)
    handle.before = objects(node_kubectl, namespace)
    installing = time.monotonic()
    node_helm("install", *handle.install_args(images.tag), timeout=120)
    handle.installed = True
    try:
        handle.wait_available(timeout=300)
    except BaseException:
        _remove(handle, node_core)
        raise
    TIMINGS["helm install to every Deployment Available"] = round(time.monotonic() - installing, 1)
    TIMINGS["cluster up + images + install to all Muster pods Available"] = round(
        cluster.ready_after + time.monotonic() - imported, 1
    )
    try:
        yield handle
    finally:
        _remove(handle, node_core)


def _remove(handle: Release, core: client.CoreV1Api) -> None:
    if not handle.cluster.launcher.running():
        # The tier's last test stops the node (test_teardown.py), and the release went
        # with it: there is no API server left to ask.
        return
    if handle.installed:
        handle.helm("uninstall", RELEASE, "--namespace", handle.namespace, "--wait",
                    check=False, timeout=180)  # fmt: skip
        handle.installed = False
    try:
        core.delete_namespace(handle.namespace, grace_period_seconds=0)
    except ApiException as exc:
        if exc.status != 404:
            raise
