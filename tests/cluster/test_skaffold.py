"""The skaffold loop on the local node, as a developer runs it: skaffold (built from its Go
module) with the ``local`` profile builds every image with buildah
(``infra/images/skaffold-build.sh``), imports it into the node, reads its ID through the
node's image API (podman over buildah's storage) and deploys the chart with helm.
``skaffold run`` makes every Deployment Available; under ``skaffold dev`` a change to one
of the gateway's source files is rebuilt and redeployed, and the test measures the time
from the edit until the new pod serves the changed string through skaffold's
port-forward.

Both run in a copy of the repository's build inputs (so no file of the checkout is
edited) and deploy one release into a namespace of their own, deleted afterwards with
everything in it. The release stays out of others' way on the session's node, as the
profile's MUSTER_RELEASE and MUSTER_VALUES allow: its own name (so its cluster-wide
objects are its own), an operator that watches only its namespace, and the CRDs left to
whoever installed them (applied here if nobody did, and then removed again). Images whose
inputs did not change are reused from buildah's storage (the profile tags by input digest,
and every build also carries the build context's content tag): ``skaffold run`` must reuse
every image the tier built from the same files, and only the edited gateway is built.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from muster_dev import imageapi
from muster_dev.images import context_tag
from muster_dev.process import ManagedProcess
from muster_runtime.polling import PollTimeout, wait_until
from tests.chart import images as chart_images
from tests.chart.images import DEV_SERVER
from tests.cluster.conftest import TIMINGS
from tests.cluster.support import BIN, STORAGE, ClusterHandle
from tests.helpers import REPO, copy_from_checkout
from tests.kube.support import Run

pytestmark = [pytest.mark.slow]

log = logging.getLogger(__name__)

PROFILE = "local"
COMPONENTS = ("operator", "approval", "scheduling", "fulfillment", "gateway", "backends")
CRDS = REPO / "charts" / "muster" / "files" / "crds"
# What the image builds and the chart read: .dockerignore admits these to the build context.
INPUTS = ("skaffold.yaml", "pyproject.toml", "uv.lock", ".dockerignore",
          "devstack/pyproject.toml", "services", "operator", "infra/images", "charts")  # fmt: skip
GATEWAY_SOURCE = Path("services/gateway/src/muster_gateway/app.py")
TITLE = 'title="Muster gateway"'
# A cold machine builds every image (about a minute each on 2 cores).
BUILD_TIMEOUT = 1500


@dataclass
class Skaffold:
    """skaffold pointed at the session's node, run in a copy of the build inputs."""

    binary: Path
    workspace: Path
    env: dict[str, str]
    namespace: str
    release: str

    def name(self, component: str) -> str:
        """The name of a component's objects in the release."""
        return f"{self.release}-{component}"

    @property
    def deployments(self) -> set[str]:
        return {self.name(c) for c in (*COMPONENTS, "temporal")}

    @property
    def forwarded(self) -> re.Pattern[str]:
        """skaffold's line for the gateway's forward once it is up (the local port is its
        choice when 8080 is taken)."""
        return re.compile(
            rf"Port forwarding service/{self.name('gateway')} in namespace \S+, "
            r"remote port \d+ -> http://127\.0\.0\.1:(\d+)"
        )

    def argv(self, verb: str, *args: str) -> list[str]:
        return [str(self.binary), verb, "-p", PROFILE, "-n", self.namespace, *args]

    def __call__(self, verb: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run one verb to completion; a failure shows skaffold's output."""
        result = subprocess.run(
            self.argv(verb, *args), cwd=self.workspace, env=self.env, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(
                f"skaffold {verb} exited {result.returncode}:\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
            )
        return result


@pytest.fixture(scope="module")
def skaffold(
    cluster: ClusterHandle, node_kubectl: Run, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Skaffold]:
    """skaffold for this module as ``muster cluster up`` says to run it (the node's
    kubeconfig, image API and artifact cache), with a HOME of its own, and a namespace
    that is deleted at the end with everything in it."""
    binary = BIN / "skaffold"
    assert binary.exists(), f"{binary} is missing: run `make skaffold-tools`"
    sock = imageapi.socket_path(cluster.workdir)
    assert imageapi.answers(sock), (
        f"the node's image API does not answer at {sock}: is Debian's podman installed "
        "(`make skaffold-tools`)?"
    )
    home = tmp_path_factory.mktemp("skaffold-home")
    # No update check, no survey prompt, no usage metrics: a quiet, offline skaffold.
    (home / ".skaffold").mkdir()
    quiet = {"update-check": False, "collect-metrics": False, "survey": {"disable-prompt": True}}
    (home / ".skaffold" / "config").write_text(yaml.safe_dump({"global": quiet}))
    venv_bin = Path(sys.executable).parent
    env = {
        **cluster.env(),
        "HOME": str(home),
        # skaffold runs helm (./bin) and kubectl (the virtualenv's) from PATH.
        "PATH": os.pathsep.join([str(BIN), str(venv_bin), os.environ.get("PATH", "")]),
        **imageapi.skaffold_env(sock),
        "MUSTER": str(venv_bin / "muster"),
        "MUSTER_CONTAINERS_ROOT": str(STORAGE),
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_INTERACTIVE": "false",
    }
    workspace = copy_from_checkout(tmp_path_factory.mktemp("skaffold-workspace"), INPUTS)
    suffix = uuid.uuid4().hex[:8]
    namespace, release = f"skaffold-{suffix}", f"muster-sk{suffix}"
    beside = workspace / "beside-values.yaml"
    beside.write_text(yaml.safe_dump(
        {"crds": {"install": False}, "operator": {"watchNamespaces": [namespace]}}))  # fmt: skip
    env |= {"MUSTER_RELEASE": release, "MUSTER_NAMESPACE": namespace, "MUSTER_VALUES": str(beside)}
    tool = Skaffold(binary, workspace, env, namespace, release)
    crds = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted(CRDS.glob("*.yaml"))]
    ours = [c for c in crds if node_kubectl("get", "crd", c, check=False).returncode != 0]
    if ours:
        node_kubectl("apply", "--server-side", "-f", str(CRDS))
    try:
        yield tool
    finally:
        subprocess.run(tool.argv("delete"), cwd=workspace, env=env, capture_output=True,
                       timeout=300, check=False)  # fmt: skip
        node_kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true",
                     "--timeout=180s", timeout=200)  # fmt: skip
        for crd in ours:
            node_kubectl("delete", "crd", crd, "--ignore-not-found", "--wait=true", timeout=120)


def deployments(kubectl: Run, namespace: str) -> dict[str, dict[str, Any]]:
    items = json.loads(kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)
    return {d["metadata"]["name"]: d for d in items["items"]}


def available(deployment: dict[str, Any]) -> bool:
    conditions = deployment.get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def images(deployment: dict[str, Any]) -> list[str]:
    return [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]


@pytest.mark.timeout(BUILD_TIMEOUT + 600)
def test_skaffold_run_deploys_the_chart(skaffold: Skaffold, node_kubectl: Run) -> None:
    # Images the tier (or the chart tier) already built from these files are reused by
    # their content tag, whatever tag skaffold gives them: the copy is the same context.
    tag = context_tag(skaffold.workspace)
    assert tag == chart_images.context_tag(), "the copy differs from the checkout's context"
    built_before = [c for c in (*COMPONENTS, DEV_SERVER)
                    if chart_images.built_on_base(f"localhost/muster-{c}:{tag}")]  # fmt: skip
    started = time.monotonic()
    output = skaffold("run", "--cache-artifacts=false", "--status-check=true",
                      timeout=BUILD_TIMEOUT + 300)  # fmt: skip
    seconds = time.monotonic() - started
    log.info("skaffold run -p local: %.0fs, reused %s\n%s", seconds, built_before,
             output.stdout[-3000:])  # fmt: skip
    TIMINGS[f"skaffold run -p local ({len(built_before)} of 7 images reused)"] = round(seconds, 1)
    # Found by the content tag, or by skaffold's own tag when skaffold ran here before:
    # either way not built again.
    for component in built_before:
        building = re.search(rf"localhost/muster-{component}:\S+: building ", output.stdout)
        assert building is None, f"{component} was built again:\n{output.stdout[-6000:]}"

    found = deployments(node_kubectl, skaffold.namespace)
    assert set(found) == skaffold.deployments
    assert [name for name, d in found.items() if not available(d)] == []
    for component in COMPONENTS:
        # skaffold deploys what it built, by image ID: localhost/muster-<c>:<64 hex digits>.
        (image,) = images(found[skaffold.name(component)])
        assert re.fullmatch(rf"localhost/muster-{component}:[0-9a-f]{{64}}", image), image


def gateway_title(port: int) -> str | None:
    """The title the gateway's OpenAPI document carries, through the port-forward."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as r:
        return str(json.loads(r.read())["info"]["title"])


@pytest.mark.timeout(BUILD_TIMEOUT + 1200)
def test_skaffold_dev_serves_a_changed_source_file(
    skaffold: Skaffold, node_kubectl: Run, tmp_path: Path
) -> None:
    dev_log = tmp_path / "skaffold-dev.log"
    dev = ManagedProcess(
        "skaffold dev",
        skaffold.argv("dev", "--port-forward=user", "--tail=false", "--cleanup=false"),
        env=skaffold.env,
        cwd=skaffold.workspace,
        log_path=dev_log,
    )

    def output() -> str:
        return dev_log.read_text(errors="replace") if dev_log.exists() else ""

    def seen(marker: str) -> bool:
        if not dev.running():
            pytest.fail(f"skaffold dev exited {dev.returncode}:\n{output()[-6000:]}")
        return marker in output()

    source = skaffold.workspace / GATEWAY_SOURCE
    new_image = None
    dev.start()
    try:
        wait_until(lambda: seen("Watching for changes"), what="skaffold dev to deploy and watch",
                   timeout=BUILD_TIMEOUT, interval=1)  # fmt: skip
        forwarded = skaffold.forwarded
        forward = wait_until(lambda: forwarded.search(output()), what="the gateway's forward",
                             timeout=120, interval=0.5)  # fmt: skip
        port = int(forward.group(1))
        title = wait_until(lambda: gateway_title(port), what="the gateway to answer",
                           timeout=120, interval=0.5, ignore=(OSError,))  # fmt: skip
        assert title == "Muster gateway"
        first = deployments(node_kubectl, skaffold.namespace)

        token = uuid.uuid4().hex[:8]
        text = source.read_text()
        assert text.count(TITLE) == 1, f"{GATEWAY_SOURCE} no longer sets {TITLE}"
        mark = len(output())
        edited = time.monotonic()
        source.write_text(text.replace(TITLE, f'title="Muster gateway {token}"'))

        stages: dict[str, float] = {}

        def served() -> bool:
            later = output()[mark:]
            for stage, marker in STAGES:
                if stage not in stages and marker in later:
                    stages[stage] = round(time.monotonic() - edited, 1)
            if not dev.running():
                pytest.fail(f"skaffold dev exited {dev.returncode}:\n{output()[-6000:]}")
            # skaffold forwards again to the new pod, on another local port if it must.
            forwards = skaffold.forwarded.findall(later)
            try:
                return gateway_title(int(forwards[-1]) if forwards else port) == (
                    f"Muster gateway {token}"
                )
            except OSError:
                return False

        try:
            wait_until(served, what="the changed title to be served", timeout=BUILD_TIMEOUT,
                       interval=0.5)  # fmt: skip
        except PollTimeout as exc:
            raise AssertionError(f"{exc}\nskaffold dev:\n{output()[-6000:]}") from exc
        seconds = round(time.monotonic() - edited, 1)
        log.info("skaffold dev: edit to served in %.1fs (seconds after the edit: %s)",
                 seconds, stages)  # fmt: skip
        TIMINGS["skaffold dev: a source edit to the new pod serving it"] = seconds

        after = deployments(node_kubectl, skaffold.namespace)
        gateway = skaffold.name("gateway")
        (new_image,) = images(after[gateway])
        assert new_image != images(first[gateway])[0], "the gateway kept its image"
        # Only the changed image was built and rolled out: the rest kept theirs.
        for name in skaffold.deployments - {gateway}:
            assert images(after[name]) == images(first[name]), name
            assert after[name]["metadata"]["generation"] == first[name]["metadata"]["generation"]
    finally:
        dev.stop(grace=30)
        if new_image is not None:
            # The edited gateway's image is of no further use; the storage is shared.
            remove_image(new_image)


STAGES = (
    ("built", "Build [localhost/muster-gateway] succeeded"),
    ("deployed", "Deployments stabilized"),
    ("watching", "Watching for changes"),
)


def remove_image(reference: str) -> None:
    """Remove an image, with all its names, from buildah's storage."""
    subprocess.run(["buildah", "--root", str(STORAGE), "--storage-driver", "vfs", "rmi", "-f",
                    reference], capture_output=True, timeout=120, check=False)  # fmt: skip
