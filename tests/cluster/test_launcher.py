"""The launcher keeps to one node per machine: a second ``muster cluster up`` is refused
with a message that says why and what to do, and the running node is not disturbed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cluster.support import ClusterHandle, muster_command
from tests.kube.support import Run

# The first test of the tier also waits for the session's cluster to come up.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_second_node_is_refused(
    cluster: ClusterHandle, node_kubectl: Run, tmp_path: Path
) -> None:
    second = subprocess.run(
        muster_command("cluster", "up", "--workdir", str(tmp_path / "second")),
        capture_output=True,
        text=True,
        env=cluster.env(),
        timeout=60,
        check=False,
    )
    assert second.returncode == 1, second
    assert "a Muster node already runs on this host" in second.stderr
    assert f"KUBECONFIG={cluster.kubeconfig}" in second.stderr
    assert "muster cluster down" in second.stderr
    assert not (tmp_path / "second").exists()
    # The first one still runs, untouched.
    assert cluster.launcher.running()
    ready = node_kubectl(
        "get",
        "node",
        "muster-node",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
    )
    assert ready.stdout == "True"
