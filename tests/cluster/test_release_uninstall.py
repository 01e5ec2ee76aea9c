"""``helm uninstall`` leaves nothing of Muster behind but the CRDs it keeps: after the
Schedules and ApprovalPolicies people made are deleted (while the operator runs to release
their finalizers), everything in the release's namespace is as before ``helm install``,
and of the cluster-scoped objects of the release only its CRDs remain (``crds.keep``).
Runs after every other test of the release (tests/cluster/conftest.py orders it)."""

from __future__ import annotations

import pytest
import yaml

from muster_runtime.polling import PollTimeout, wait_until
from tests.cluster.release import CHART, RELEASE, Release, objects

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# Every CRD the chart ships (``crds.keep`` keeps them all).
CRDS = {
    ("CustomResourceDefinition", "", yaml.safe_load(path.read_text())["metadata"]["name"])
    for path in sorted((CHART / "files" / "crds").glob("*.yaml"))
}


def test_uninstall_leaves_only_the_kept_crds(release: Release) -> None:
    ns, kubectl = release.namespace, release.kubectl
    during = objects(kubectl, ns)
    assert during >= CRDS
    assert ("ConfigMap", ns, f"{RELEASE}-approval-policies") in during
    assert len(during - release.before) > 20, "the release should have made its objects"

    kubectl("delete", "-n", ns, "schedules,approvalpolicies", "--all", "--wait",
            "--timeout=120s", timeout=150)  # fmt: skip
    result = release.helm("uninstall", RELEASE, "--namespace", ns, "--wait", "--timeout",
                          "300s", timeout=330)  # fmt: skip
    release.installed = False
    assert "These resources were kept due to the resource policy" in result.stdout
    for _, _, name in CRDS:
        assert f"[CustomResourceDefinition] {name}" in result.stdout, result.stdout

    expected = release.before | CRDS
    try:
        # Pods and the endpoint slices of deleted Services go shortly after, by themselves.
        wait_until(lambda: objects(kubectl, ns) == expected, what="only the kept CRDs to stay",
                   timeout=180, interval=2)  # fmt: skip
    except PollTimeout:
        after = objects(kubectl, ns)
        left = sorted(after - expected)
        gone = sorted(expected - after)
        raise AssertionError(f"left behind: {left}; missing: {gone}") from None
