"""``muster cluster down`` leaves the host as it was: no node process, mount, interface,
route, cgroup or firewall rule, unchanged machine-wide sysctls, none of the kubelet's or
containerd's fixed paths, no state file; also after a launcher that was killed. While the
node runs, the host's own sysctls, mounts and firewall are untouched too, and its routes
only gain the one to the Service network through the node. Runs last in the
tier (conftest orders it), since it stops the session's cluster."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from muster_dev.cluster import ClusterSettings
from muster_dev.kube import SERVICE_CLUSTER_IP_RANGE
from muster_dev.node import HOST_LINK, NodeAddresses, leftovers
from muster_runtime.polling import wait_until
from tests.cluster.support import (
    ClusterHandle,
    HostSnapshot,
    muster_command,
    node_processes,
    start_cluster,
    stop_cluster,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_down_leaves_nothing_behind(cluster: ClusterHandle) -> None:
    running = HostSnapshot.take()
    # While it runs, the node shows on the host only as its end of the veth pair.
    assert running.interfaces == cluster.before.interfaces | {HOST_LINK}
    # ... and a route to the Service network through it, for the API server's webhook calls.
    node_ip = NodeAddresses.from_cidr(ClusterSettings().link_cidr).node_ip
    added = running.routes - cluster.before.routes
    assert f"{SERVICE_CLUSTER_IP_RANGE} via {node_ip} dev {HOST_LINK}" in added, added
    assert not cluster.before.routes - running.routes
    assert running.sysctls == cluster.before.sysctls
    assert running.firewall == cluster.before.firewall
    assert running.nftables == cluster.before.nftables
    assert running.mounts == cluster.before.mounts
    assert node_processes(), "the node's programs should be running now"
    status = subprocess.run(
        muster_command("cluster", "status"),
        capture_output=True,
        text=True,
        env=cluster.env(),
        check=False,
    )
    assert status.returncode == 0, status
    assert f"KUBECONFIG={cluster.kubeconfig}" in status.stdout

    result = stop_cluster(cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the local cluster is stopped" in result.stdout

    after = HostSnapshot.take()
    assert after == cluster.before
    assert after.sysctls == cluster.before.sysctls
    assert after.paths == cluster.before.paths
    assert node_processes() == []
    assert leftovers() == []
    assert cluster.launcher.returncode == 0
    # Logs stay for a post-mortem; nothing else of the node's folder does.
    kept = [p for p in cluster.workdir.rglob("*") if p.is_file()]
    assert all(p.suffix == ".log" or p.name == ".muster-cluster" for p in kept), kept

    status = subprocess.run(
        muster_command("cluster", "status"),
        capture_output=True,
        text=True,
        env=cluster.env(),
        check=False,
    )
    assert status.returncode == 3, status
    assert "no local cluster is running" in status.stdout


def test_down_cleans_up_after_a_killed_launcher(tmp_path: Path) -> None:
    """A launcher killed with SIGKILL leaves pods, shims, namespaces, the veth pair and
    cgroups behind; ``muster cluster down`` removes them all."""
    if os.geteuid() != 0:
        pytest.skip("the cluster tier needs root")
    handle = start_cluster(tmp_path / "node", images=())
    handle.launcher.signal(signal.SIGKILL)
    assert wait_until(lambda: not handle.launcher.running(), what="the launcher to die", timeout=10)
    # What no parent stops: the pods (CoreDNS, the NetworkPolicy agent) and their shims.
    left = leftovers()
    assert f"interface {HOST_LINK}" in left, left
    assert any("processes in /muster-node" in item for item in left), left

    result = stop_cluster(handle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped" in result.stdout
    assert HostSnapshot.take() == handle.before
    assert node_processes() == []
    assert leftovers() == []
