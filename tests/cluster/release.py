"""Muster's chart on the local node: its images (built once per content of the build
context, imported into the node's containerd), the release installed from
``ci/local-values.yaml`` into a namespace that enforces the restricted Pod Security
Standard, and the ways the tests reach it from the host (the gateway's NodePort,
``kubectl port-forward`` to the dev server and the backends)."""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muster_dev.cluster import ClusterSettings
from muster_dev.images import CONTEXT_TAG_PREFIX
from muster_dev.node import NodeAddresses
from muster_runtime.polling import PollTimeout, wait_until
from tests.chart.images import (
    COMPONENTS,
    DEV_SERVER,
    buildah,
    ensure_built,
)
from tests.cluster.support import ClusterHandle, kubectl_argv
from tests.helpers import REPO
from tests.kube.support import Run

CHART = REPO / "charts" / "muster"
LOCAL_VALUES = CHART / "ci" / "local-values.yaml"
RELEASE = "muster"
"""The release name; the chart's objects are then ``muster-<component>``."""
DEPLOYMENTS = ("operator", "approval", "scheduling", "fulfillment", "gateway", "backends")
"""Muster's Deployments (besides the dev server's, ``temporal``)."""
IMAGES = (*COMPONENTS, DEV_SERVER)
MAILBOX = "mailbox"
POLICY_FOLDER = "/etc/muster/policies"
"""Where the approval worker's pods mount the chart's policy ConfigMap."""
MAILBOX_PORT = 2525
"""The SMTP relay the tests run beside the release, in its namespace."""


def node_ip() -> str:
    """The node's address on its link to the host (NodePorts answer there)."""
    return NodeAddresses.from_cidr(ClusterSettings().link_cidr).node_ip


# --- images ---------------------------------------------------------------------------------


def reference(component: str, tag: str) -> str:
    return f"localhost/muster-{component}:{tag}"


@dataclass
class ImageSet:
    """The images of one build-context tag, and how long getting them took."""

    tag: str
    built: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[str]:
        return [reference(c, self.tag) for c in IMAGES]


def ensure_images(tag: str) -> ImageSet:
    """Every Muster image and the dev server's under ``tag``: built unless present. Older
    sets of this tier (other ``ctx-`` tags) are removed first: with vfs storage each image
    is a full copy of its root filesystem."""
    listed = json.loads(buildah("images", "--json").stdout or "[]")
    for image in listed:
        for name in image.get("names") or []:
            repo, _, old = name.rpartition(":")
            ours = repo.startswith("localhost/muster-") and old.startswith(CONTEXT_TAG_PREFIX)
            if ours and old != tag:
                buildah("rmi", name, check=False)
    found = ImageSet(tag)
    for component in IMAGES:
        image = ensure_built(component, tag)
        if image.reused:
            found.reused.append(component)
        else:
            found.built[component] = round(image.seconds, 1)
    return found


def rebuild_with_label(tag: str, new_tag: str, label: str) -> list[str]:
    """A changed image for each Muster component of ``tag``: the same files with one more
    label, committed under ``new_tag`` (a new image id, as a rebuild after a change has)."""
    made = []
    for component in COMPONENTS:
        container = buildah("from", "--pull-never", reference(component, tag)).stdout.strip()
        try:
            buildah("config", "--label", f"io.muster.rebuild={label}", container)
            buildah("commit", "--quiet", container, reference(component, new_tag), timeout=300)
        finally:
            buildah("rm", container, check=False)
        made.append(reference(component, new_tag))
    return made


def remove_images(tag: str) -> None:
    """Remove the Muster images of ``tag`` from buildah's storage."""
    for component in COMPONENTS:
        buildah("rmi", reference(component, tag), check=False)


# --- port-forwards ----------------------------------------------------------------------------


@contextmanager
def port_forward(
    cluster: ClusterHandle, namespace: str, target: str, port: int, timeout: float = 60
) -> Iterator[int]:
    """``kubectl port-forward TARGET :PORT``; yields the local port on 127.0.0.1."""
    process = subprocess.Popen(
        [*kubectl_argv(cluster), "port-forward", "-n", namespace, target, f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cluster.env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: list[str] = []

    def forwarding() -> int | None:
        if process.poll() is not None:
            raise RuntimeError(f"kubectl port-forward {target} exited: {''.join(seen)}")
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            return None
        seen.append(line)
        found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        return int(found.group(1)) if found else None

    try:
        local = wait_until(forwarding, what=f"port-forward to {target}", timeout=timeout)
        yield local
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # The reader ends at the pipe's end (the process is gone); then the pipe is closed.
        reader.join(timeout=10)
        if process.stdout is not None and not reader.is_alive():
            process.stdout.close()


# --- the release --------------------------------------------------------------------------------


@dataclass
class Release:
    """Muster installed on the local node."""

    cluster: ClusterHandle
    kubectl: Run
    helm: Run
    namespace: str
    tag: str
    installed: bool = False
    current_tag: str = ""
    """The tag of the images the release runs now (``tag`` until an upgrade)."""
    before: set[tuple[str, str, str]] = field(default_factory=set)
    """What the namespace and the cluster held of the release before ``helm install``."""

    def __post_init__(self) -> None:
        self.current_tag = self.current_tag or self.tag

    def name(self, component: str) -> str:
        """The chart's name of a component's objects."""
        return f"{RELEASE}-{component}"

    @property
    def deployments(self) -> list[str]:
        return [self.name(c) for c in (*DEPLOYMENTS, "temporal")]

    def install_args(self, tag: str, *extra: str) -> list[str]:
        """``helm install|upgrade`` arguments with Muster's images at ``tag``. The dev
        server keeps the first tag's image: replacing its pod would lose Temporal's state
        (SQLite on an emptyDir), which an upgrade of Muster must not."""
        return [
            RELEASE, str(CHART), "--namespace", self.namespace,
            "--values", str(LOCAL_VALUES),
            "--set", f"image.tag={tag}",
            "--set", f"temporal.devServer.image={reference(DEV_SERVER, self.tag)}",
            # The namespace's mail relay (tests/cluster/conftest.py), plain SMTP.
            "--set", f"approval.smtp.host={MAILBOX}",
            "--set", f"approval.smtp.port={MAILBOX_PORT}",
            "--set", "approval.smtp.starttls=false",
            *extra,
        ]  # fmt: skip

    def json(self, *args: str) -> Any:
        """``kubectl get ... -o json`` in the release's namespace."""
        return json.loads(self.kubectl("get", "-n", self.namespace, *args, "-o", "json").stdout)

    def unavailable(self) -> dict[str, str]:
        """Deployments not (yet) Available with every replica updated, and why."""
        items = {d["metadata"]["name"]: d for d in self.json("deployments")["items"]}
        waiting = {}
        for name in self.deployments:
            deployment = items.get(name)
            if deployment is None:
                waiting[name] = "missing"
                continue
            status = deployment.get("status", {})
            want = deployment["spec"].get("replicas", 1)
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            available = conditions.get("Available", {}).get("status") == "True"
            settled = (
                status.get("observedGeneration") == deployment["metadata"]["generation"]
                and status.get("updatedReplicas", 0) == want
                and status.get("availableReplicas", 0) == want
                and status.get("replicas", 0) == want
            )
            if not (available and settled):
                waiting[name] = (
                    f"{status.get('availableReplicas', 0)}/{want} available, "
                    f"{status.get('updatedReplicas', 0)} updated, "
                    f"{status.get('replicas', 0)} in all"
                )
        return waiting

    def wait_available(self, timeout: float = 300) -> float:
        """Wait until every Deployment is Available and rolled out; the seconds it took."""
        started = time.monotonic()
        try:
            wait_until(
                lambda: not self.unavailable(),
                what="every Muster Deployment to be Available",
                timeout=timeout,
                interval=1.0,
            )
        except PollTimeout as exc:
            raise AssertionError(f"{exc}: {self.unavailable()}\n{self.diagnose()}") from exc
        return round(time.monotonic() - started, 1)

    def diagnose(self) -> str:
        """Pods that are not ready, with their last events and log lines (for failures)."""
        lines = []
        for pod in self.json("pods")["items"]:
            statuses = pod.get("status", {}).get("containerStatuses") or []
            if statuses and all(s.get("ready") for s in statuses):
                continue
            name = pod["metadata"]["name"]
            lines.append(f"--- pod {name}: {json.dumps(statuses)[:1500]}")
            events = self.kubectl(
                "get", "events", "-n", self.namespace,
                "--field-selector", f"involvedObject.name={name}", check=False,
            )  # fmt: skip
            lines.append(events.stdout[-1500:])
            logs = self.kubectl("logs", "-n", self.namespace, name, "--tail=20", check=False)
            lines.append(logs.stdout[-3000:] + logs.stderr[-500:])
        return "\n".join(lines)

    def pods(self, component: str) -> list[dict[str, Any]]:
        """The running pods of a component (not those being deleted)."""
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
        items = self.json("pods", "-l", selector)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def wait_policy(self, namespace: str, name: str, timeout: float = 180) -> None:
        """Wait until the ApprovalPolicy ``name`` is Ready (published in the chart's
        ConfigMap by the operator) and the mounted copy of every approval and gateway pod
        holds it: the kubelet updates a mounted ConfigMap on its next sync of the pod, up to
        a minute or so after the operator wrote it, and until then the gateway answers
        requests of its kinds with ``422 no-policy``."""

        self.kubectl("wait", "-n", namespace, f"approvalpolicy/{name}", "--for=condition=Ready",
                     f"--timeout={timeout:.0f}s", timeout=timeout + 10)  # fmt: skip
        read = (
            "import pathlib, sys\n"
            "print(*(p.read_text() for p in pathlib.Path(sys.argv[1]).glob('*.yaml')))"
        )

        def mounted() -> bool:
            return all(
                name in self.kubectl(
                    "exec", "-n", self.namespace, pod["metadata"]["name"], "--",
                    "python3", "-c", read, POLICY_FOLDER, check=False,
                ).stdout
                for pod in [*self.pods("approval"), *self.pods("gateway")]
            )  # fmt: skip

        wait_until(mounted, what=f"policy {name} in the approval and gateway pods' {POLICY_FOLDER}",
                   timeout=timeout, interval=2)  # fmt: skip

    @property
    def gateway_url(self) -> str:
        """The gateway's API through its NodePort Service, from the host."""
        service = self.json("service", self.name("gateway"))
        (port,) = [p["nodePort"] for p in service["spec"]["ports"] if p["name"] == "http"]
        return f"http://{node_ip()}:{port}"

    @contextmanager
    def forward(self, component: str, port: int) -> Iterator[str]:
        """A port-forward to a component's Service; yields its ``host:port`` on the host."""
        with self.forward_to(self.namespace, f"svc/{self.name(component)}", port) as address:
            yield address

    @contextmanager
    def forward_to(self, namespace: str, target: str, port: int) -> Iterator[str]:
        """A port-forward to ``target`` (``svc/x``, ``pod/y``) in ``namespace``."""
        with port_forward(self.cluster, namespace, target, port) as local:
            yield f"127.0.0.1:{local}"


def objects(kubectl: Run, namespace: str) -> set[tuple[str, str, str]]:
    """Every object in ``namespace`` and every cluster-scoped object labelled as part of the
    release: (resource, namespace, name). Events are left out (they record, they are not
    state, and expire by themselves)."""
    found: set[tuple[str, str, str]] = set()
    for namespaced in (True, False):
        listed = kubectl(
            "api-resources", "--verbs=list", f"--namespaced={str(namespaced).lower()}",
            "-o", "name",
        ).stdout.split()  # fmt: skip
        kinds = [k for k in listed if k not in ("events", "events.events.k8s.io")]
        scope = ["-n", namespace] if namespaced else ["-l", f"app.kubernetes.io/instance={RELEASE}"]
        result = kubectl(
            "get", ",".join(kinds), *scope, "--ignore-not-found", "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}{'\\n'}{end}",
            timeout=120,
        )  # fmt: skip
        for line in result.stdout.splitlines():
            kind, _, name = line.partition("/")
            found.add((kind, namespace if namespaced else "", name))
    return found


def write_log(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
