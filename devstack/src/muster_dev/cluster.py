"""``muster cluster up|down|status|import``: a real one-node Kubernetes cluster on the local host.

The control plane is :class:`~muster_dev.kube.LocalControlPlane` (etcd and
kube-apiserver) set up to serve a node, plus kube-scheduler and kube-controller-manager.
The node (:mod:`muster_dev.node`) runs containerd, the kubelet and kube-proxy
in namespaces of their own; CoreDNS and kube-network-policies (the SIG's NetworkPolicy
agent) run on it as pods. Everything is built or installed by ``make node-tools``; images
come from the local host (:mod:`muster_dev.images`), never from a registry.

One node per machine: the kubelet owns fixed names (its cgroups, the veth pair), so a
second ``up`` is refused. ``/run/muster-cluster.json`` records what runs, so that
``muster cluster down`` cleans up from anywhere, also after a launcher that was killed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal, Self

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from muster_dev import imageapi, nodeconfig
from muster_dev.images import (
    CRI_NAMESPACE,
    BinaryImage,
    ImageError,
    binary_image_archive,
    buildah_archive,
    buildah_image_id,
    context_tag,
    import_archive,
    name_in_node,
    node_images_by_config,
)
from muster_dev.kube import (
    SERVICE_CLUSTER_IP_RANGE,
    KubeAccess,
    KubeError,
    LocalControlPlane,
    Pki,
    bin_dir,
    kube_binary,
    kubeconfig_for,
)
from muster_dev.node import (
    CLUSTER_DOMAIN,
    LINK_CIDR,
    NODE_NAME,
    POD_CIDR,
    SYSTEM_PATH,
    NodeAddresses,
    NodeError,
    NodeNamespaces,
    check_host_network,
    dns_query,
    leftovers,
    make_cgroup_parent,
    node_pids,
    require_programs,
    require_root,
    rss_bytes,
    sweep,
)
from muster_dev.process import ManagedProcess, free_port
from muster_dev.temporal import ToolMissing
from muster_runtime.polling import PollTimeout, wait_until

log = logging.getLogger(__name__)

STATE_FILE = Path("/run/muster-cluster.json")
# An abstract socket: held while a launcher lives, gone with it, nothing on disk.
_LOCK_ADDRESS = "\0muster-cluster-node"
_MARKER = ".muster-cluster"
_CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")
_NODE_BINARIES = ("kubelet", "kube-proxy", "coredns", "kube-network-policies")
_PROGRAMS = (
    "containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "nft", "conntrack",
    "catatonit", "unshare", "nsenter", "ip", "mount",
)  # fmt: skip
PAUSE_IMAGE = "localhost/muster-node/pause:catatonit"


class ClusterError(RuntimeError):
    """The cluster cannot start, stop or be reached; the message says why and what to do."""


class AlreadyRunning(ClusterError):
    """Another launcher runs a node on this host."""


class ClusterSettings(BaseSettings):
    """``MUSTER_CLUSTER_*`` variables (command-line flags override them)."""

    model_config = SettingsConfigDict(
        env_prefix="MUSTER_CLUSTER_", extra="ignore", use_attribute_docstrings=True
    )

    workdir: Path = Path(".state/cluster")
    """The node's folder: certificates, etcd, containerd's images, logs (logs are kept)."""
    link_cidr: str = LINK_CIDR
    """The veth link between host and node (a /30 nobody routes); the API server listens on
    its first address."""
    pod_cidr: str = POD_CIDR
    """The pods' addresses (only inside the node)."""
    proxy_mode: Literal["nftables", "iptables"] = "nftables"
    """kube-proxy's mode."""
    start_timeout: float = Field(default=240.0, gt=0)
    """Seconds from start until the node is Ready and CoreDNS answers."""


# --- the machine-wide lock and state -------------------------------------------------------


def _try_lock() -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(_LOCK_ADDRESS)
    except OSError:
        sock.close()
        return None
    return sock


def launcher_running() -> bool:
    """Whether some process holds the node lock right now."""
    sock = _try_lock()
    if sock is None:
        return True
    sock.close()
    return False


def read_state() -> dict[str, Any] | None:
    """What the last ``up`` recorded (None if nothing runs or was left behind)."""
    try:
        return dict(json.loads(STATE_FILE.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", STATE_FILE, exc)
        return None


def _write_state(state: dict[str, Any]) -> None:
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(STATE_FILE)


# --- a small API client (the launcher carries no Kubernetes library) -------------------------


_RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
}


class KubeApi:
    """JSON over HTTPS with a client certificate: get, and server-side apply."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        self.server = server.rstrip("/")
        self.tls = ssl.create_default_context(cafile=str(ca))
        self.tls.load_cert_chain(str(cert), str(key))

    def request(
        self, method: str, path: str, body: object = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        """One API call; raises :class:`urllib.error.HTTPError` with the server's message."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - our own API server's https URL
            self.server + path, data=data, method=method, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(req, timeout=10, context=self.tls) as response:  # noqa: S310
            return dict(json.loads(response.read() or b"{}"))

    def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""
        try:
            return self.request("GET", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply of one object (the kinds the cluster's add-ons use)."""
        key = (manifest["apiVersion"], manifest["kind"])
        if key not in _RESOURCES:
            raise ClusterError(f"cannot apply a {key[1]} ({key[0]}) with the launcher's client")
        plural, namespaced = _RESOURCES[key]
        group = "/api/v1" if key[0] == "v1" else f"/apis/{key[0]}"
        meta = manifest["metadata"]
        scope = f"/namespaces/{meta['namespace']}" if namespaced else ""
        path = f"{group}{scope}/{plural}/{meta['name']}?fieldManager=muster-cluster&force=true"
        try:
            self.request("PATCH", path, manifest, "application/apply-patch+yaml")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ClusterError(f"applying {key[1]} {meta['name']}: {exc.code} {detail}") from exc


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Timings:
    """Seconds from the start of ``up`` at which each stage finished."""

    marks: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def mark(self, stage: str) -> None:
        """Record that ``stage`` just finished."""
        self.marks[stage] = round(time.monotonic() - self.started, 1)


class LocalCluster:
    """The control plane, the node and its add-ons; a context manager.

    :meth:`stop` removes everything :meth:`start` made (also when starting failed halfway)
    and keeps only the logs in ``<workdir>/logs``.
    """

    def __init__(
        self,
        settings: ClusterSettings | None = None,
        *,
        workdir: Path | None = None,
        kubeconfig_path: Path | None = None,
        binaries: Path | None = None,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings or ClusterSettings()
        self.workdir = (workdir or self.settings.workdir).absolute()
        self.logs = self.workdir / "logs"
        self.kubeconfig_path = (kubeconfig_path or self.workdir / "kubeconfig").absolute()
        self.binaries = binaries or bin_dir()
        self.addresses = NodeAddresses.from_cidr(self.settings.link_cidr)
        self.out = out or (lambda line: log.info("%s", line))
        self.paths = nodeconfig.NodePaths(self.workdir)
        self.images = nodeconfig.NodeImages(
            pause=PAUSE_IMAGE,
            coredns=f"localhost/muster-node/coredns:{_version_tag(self.binaries / 'coredns')}",
            netpol="localhost/muster-node/kube-network-policies:"
            + _version_tag(self.binaries / "kube-network-policies"),
        )
        self.timings = Timings()
        self.plane: LocalControlPlane | None = None
        self.namespaces: NodeNamespaces | None = None
        self.processes: dict[str, ManagedProcess] = {}
        self.access: KubeAccess | None = None
        self.api: KubeApi | None = None
        self._lock: socket.socket | None = None
        self._state: dict[str, Any] = {}

    # context manager ----------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # checks -----------------------------------------------------------------------------

    def _preflight(self) -> dict[str, Path]:
        require_root()
        for name in (*_CONTROL_PLANE_BINARIES, *_NODE_BINARIES):
            try:
                kube_binary(name, self.binaries)
            except ToolMissing as exc:
                raise ClusterError(
                    f"`{name}` not found in {self.binaries}: run `make node-tools`"
                ) from exc
        programs = require_programs(_PROGRAMS)
        for hidden in (Path("/run"), Path("/var")):
            if self.workdir == hidden or hidden in self.workdir.parents:
                raise ClusterError(
                    f"the node's work folder {self.workdir} is under {hidden}, which the node "
                    "replaces with its own; choose another (--workdir)"
                )
        return programs

    def _take_lock(self) -> None:
        self._lock = _try_lock()
        if self._lock is None:
            state = read_state() or {}
            raise AlreadyRunning(
                "a Muster node already runs on this host"
                + (
                    f" (launcher pid {state['launcher_pid']}, KUBECONFIG={state['kubeconfig']})"
                    if state
                    else ""
                )
                + ". The kubelet owns machine-wide names (its cgroups, the veth pair), so there "
                "is one node per machine: use that one, or stop it with `muster cluster down`."
            )

    def _clean_leftovers(self) -> None:
        state = read_state()
        if state is not None or leftovers():
            self.out("cleaning up after a node that did not stop cleanly ...")
            clean_up(state, self.out)

    def _prepare_workdir(self) -> None:
        marker = self.workdir / _MARKER
        if self.workdir.exists() and any(self.workdir.iterdir()) and not marker.exists():
            raise ClusterError(
                f"{self.workdir} is not empty and not a node's folder: choose an empty or new "
                "folder (--workdir)"
            )
        if self.workdir.exists():
            _remove_tree(self.workdir, keep_logs=False)
        self.workdir.mkdir(parents=True, exist_ok=True)
        marker.write_text("the local Kubernetes node's work folder (muster cluster up)\n")
        self.logs.mkdir(parents=True, exist_ok=True)

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> KubeAccess:
        """Bring the cluster up and wait until the node is Ready and CoreDNS answers."""
        self.timings = Timings()
        self._preflight()
        self._take_lock()  # before the try: a refused start must not touch the other node
        try:
            self._clean_leftovers()
            check_host_network(self.addresses, SERVICE_CLUSTER_IP_RANGE)
            self._prepare_workdir()
            self._state = {
                "launcher_pid": os.getpid(),
                "workdir": str(self.workdir),
                "kubeconfig": str(self.kubeconfig_path),
                "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "pids": {},
            }
            _write_state(self._state)
            deadline = time.monotonic() + self.settings.start_timeout
            self._start(deadline)
            assert self.access is not None
            return self.access
        except BaseException:
            self.stop()
            raise

    def _remaining(self, deadline: float) -> float:
        return max(1.0, deadline - time.monotonic())

    def _start(self, deadline: float) -> None:
        self.out("creating the node's namespaces and network link ...")
        self.namespaces = NodeNamespaces(self.workdir, self.addresses, self.logs)
        self.namespaces.start(timeout=self._remaining(deadline))
        self._state.update(
            holder_pid=self.namespaces.pid,
            net_ns=self.namespaces.net_ns,
            mnt_ns=self.namespaces.mnt_ns,
        )
        _write_state(self._state)
        self.timings.mark("namespaces")

        # containerd starts while the control plane does; the node's images are written
        # meanwhile and imported once both are up.
        self._write_containerd_config()
        self._start_containerd()
        archives = self._write_node_images()

        self.out("starting etcd and kube-apiserver ...")
        self.plane = LocalControlPlane(
            binaries=self.binaries,
            workdir=self.workdir / "plane",
            kubeconfig_path=self.kubeconfig_path,
            host=self.addresses.host_ip,
            start_timeout=self._remaining(deadline),
            serve_nodes=True,
        )
        self.access = self.plane.start()
        assert self.plane.pki is not None
        assert self.access.server is not None
        pki, server = self.plane.pki, self.access.server
        self._record_pids()
        self.api = KubeApi(server, pki.ca, pki.admin_cert, pki.admin_key)
        self.timings.mark("api-server")

        self._start_controllers(pki, server)
        self._wait_containerd(deadline)
        for archive in archives:
            import_archive(self.ctr(), archive)
            archive.unlink()
        self.timings.mark("containerd")

        self._start_node(pki, server)
        self._guard_host(server)
        self.out("installing CoreDNS and the NetworkPolicy agent ...")
        for manifest in [
            *nodeconfig.rbac_manifests(),
            *nodeconfig.coredns_manifests(self.images.coredns),
            *nodeconfig.netpol_manifests(self.images.netpol),
        ]:
            self.api.apply(manifest)
        self._wait_ready(deadline)

    def _start_process(
        self, name: str, argv: Sequence[str], *, in_node: bool = True
    ) -> ManagedProcess:
        prefix = self.namespaces.enter() if in_node and self.namespaces else []
        process = ManagedProcess(
            name,
            [*prefix, *argv],
            env={"PATH": SYSTEM_PATH, "HOME": "/root", "LANG": "C.UTF-8"},
            log_path=self.logs / f"{name}.log",
        )
        process.start()
        self.processes[name] = process
        self._record_pids()
        return process

    def _start_containerd(self) -> ManagedProcess:
        return self._start_process(
            "containerd", ["containerd", "--config", str(self.paths.containerd_config)]
        )

    def restart_containerd(self, timeout: float = 60.0) -> int:
        """Restart the node's containerd as a service manager does: SIGTERM, then start it
        again with the same configuration and wait until it answers. Containers keep
        running meanwhile (their shims are processes of their own, outside containerd's
        process group) and the kubelet reconnects by itself. Returns the new pid."""
        old = self.processes.pop("containerd", None)
        if old is None:
            raise ClusterError("the node's containerd is not running")
        old.stop(grace=10)
        process = self._start_containerd()
        self._wait_containerd(time.monotonic() + timeout)
        restarts = self._state.setdefault("restarts", {})
        restarts["containerd"] = int(restarts.get("containerd", 0)) + 1
        _write_state(self._state)
        assert process.pid is not None
        return process.pid

    def _record_pids(self) -> None:
        pids = {name: p.pid for name, p in self.processes.items() if p.pid}
        if self.plane is not None:
            for process in (self.plane.etcd, self.plane.apiserver):
                if process is not None and process.pid:
                    pids[process.name] = process.pid
        self._state["pids"] = pids
        _write_state(self._state)

    def _write_containerd_config(self) -> None:
        self.paths.containerd_root.mkdir(parents=True, exist_ok=True)
        self.paths.containerd_config.write_text(
            nodeconfig.containerd_config(self.paths, self.images)
        )
        self.paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (self.paths.cni_conf_dir / "10-muster.conflist").write_text(
            nodeconfig.to_yaml(nodeconfig.cni_config(self.settings.pod_cidr))
        )
        # No upstream resolver: names outside the cluster resolve nowhere.
        self.paths.resolv_conf.write_text("options ndots:1\n")

    def _write_node_images(self) -> list[Path]:
        folder = self.workdir / "images"
        catatonit = Path(require_programs(["catatonit"])["catatonit"])
        images = [
            BinaryImage(PAUSE_IMAGE, catatonit, ["/catatonit", "-P"]),
            BinaryImage(self.images.coredns, self.binaries / "coredns", ["/coredns"]),
            BinaryImage(
                self.images.netpol,
                self.binaries / "kube-network-policies",
                ["/kube-network-policies"],
            ),
        ]
        return [
            binary_image_archive(
                i, folder / f"{i.reference.rsplit('/', 1)[1].replace(':', '_')}.tar"
            )
            for i in images
        ]

    def ctr(self) -> list[str]:
        """The ``ctr`` command (prefix) that talks to the node's containerd, CRI namespace."""
        if self.namespaces is None:
            raise ClusterError("the node is not running")
        return _ctr_prefix(self.namespaces.pid)

    def _wait_containerd(self, deadline: float) -> None:
        containerd = self.processes["containerd"]

        def ready() -> bool:
            if not containerd.running():
                raise ClusterError(f"containerd exited while starting:\n{containerd.tail()}")
            result = subprocess.run(
                [*self.ctr(), "version"], capture_output=True, text=True, check=False
            )
            return result.returncode == 0

        self._poll(ready, "containerd", deadline)

    def _issue_kubeconfig(
        self, pki: Pki, server: str, name: str, user: str, groups: Sequence[str] = ()
    ) -> Path:
        cert, key = pki.issue(name, user, organizations=groups)
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(kubeconfig_for(server, pki.ca, cert, key, user))
        path.chmod(0o600)
        return path

    def _start_controllers(self, pki: Pki, server: str) -> None:
        self.out("starting kube-scheduler and kube-controller-manager ...")
        scheduler = self._issue_kubeconfig(pki, server, "kube-scheduler", "system:kube-scheduler")
        self._start_process(
            "kube-scheduler",
            [
                str(self.binaries / "kube-scheduler"),
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
            in_node=False,
        )
        manager = self._issue_kubeconfig(
            pki, server, "kube-controller-manager", "system:kube-controller-manager"
        )
        self._start_process(
            "kube-controller-manager",
            [
                str(self.binaries / "kube-controller-manager"),
                f"--kubeconfig={manager}",
                f"--authentication-kubeconfig={manager}",
                f"--authorization-kubeconfig={manager}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_private}",
                # Published in every namespace (kube-root-ca.crt) for the pods' tokens.
                f"--root-ca-file={pki.ca}",
                f"--cluster-signing-cert-file={pki.ca}",
                f"--cluster-signing-key-file={pki.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            ],
            in_node=False,
        )

    def _start_node(self, pki: Pki, server: str) -> None:
        assert self.namespaces is not None
        self.out("starting the kubelet and kube-proxy ...")
        make_cgroup_parent()
        self.namespaces.route_services(SERVICE_CLUSTER_IP_RANGE)
        self.namespaces.route_from_host(SERVICE_CLUSTER_IP_RANGE)
        kubelet_kubeconfig = self._issue_kubeconfig(
            pki, server, "kubelet", f"system:node:{NODE_NAME}", ["system:nodes"]
        )
        serving_cert, serving_key = pki.issue(
            "kubelet-serving",
            NODE_NAME,
            server_names=[NODE_NAME],
            server_ips=[self.addresses.node_ip],
        )
        self.paths.kubelet_config.write_text(
            nodeconfig.to_yaml(
                nodeconfig.kubelet_config(self.paths, ca=pki.ca, cert=serving_cert, key=serving_key)
            )
        )
        self._start_process(
            "kubelet",
            [
                str(self.binaries / "kubelet"),
                f"--config={self.paths.kubelet_config}",
                f"--kubeconfig={kubelet_kubeconfig}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.addresses.node_ip}",
            ],
        )
        proxy_kubeconfig = self._issue_kubeconfig(pki, server, "kube-proxy", "system:kube-proxy")
        self.paths.kube_proxy_config.write_text(
            nodeconfig.to_yaml(
                nodeconfig.kube_proxy_config(
                    proxy_kubeconfig,
                    mode=self.settings.proxy_mode,
                    cluster_cidr=self.settings.pod_cidr,
                )
            )
        )
        self._start_process(
            "kube-proxy",
            [str(self.binaries / "kube-proxy"), f"--config={self.paths.kube_proxy_config}"],
        )

    def _guard_host(self, server: str) -> None:
        """Inside the node: pods and the node reach the host only at the API server's port
        (the host's other services, etcd first, stay out of reach)."""
        assert self.namespaces is not None
        port = urllib.parse.urlsplit(server).port
        host = self.addresses.host_ip
        rules = f"""table inet muster-node-guard {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        ip daddr {host} ct state established,related accept
        ip daddr {host} tcp dport {port} accept
        ip daddr {host} reject
    }}
    chain output {{
        type filter hook output priority filter; policy accept;
        ip daddr {host} ct state established,related accept
        ip daddr {host} tcp dport {port} accept
        ip daddr {host} reject
    }}
}}
"""
        result = subprocess.run(
            [*self.namespaces.enter(mount=False), "nft", "-f", "-"],
            input=rules,
            capture_output=True,
            text=True,
            env={"PATH": SYSTEM_PATH},
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(f"could not fence the host off from the node: {result.stderr}")

    def _poll(self, ready: Callable[[], bool], what: str, deadline: float) -> None:
        def check() -> bool:
            self.check()
            return ready()

        try:
            wait_until(
                check,
                what=what,
                timeout=self._remaining(deadline),
                interval=0.25,
                ignore=(OSError, urllib.error.URLError, KeyError),
            )
        except PollTimeout as exc:
            raise ClusterError(
                f"{exc} (raise MUSTER_CLUSTER_START_TIMEOUT on a slow machine; logs in {self.logs})"
            ) from exc

    def _wait_ready(self, deadline: float) -> None:
        api = self.api
        assert api is not None
        assert self.namespaces is not None
        namespaces = self.namespaces

        def node_ready() -> bool:
            node = api.get(f"/api/v1/nodes/{NODE_NAME}")
            conditions = (node or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        self.out("waiting for the node to be Ready ...")
        self._poll(node_ready, f"node {NODE_NAME} to be Ready", deadline)
        self.timings.mark("node-ready")

        def rolled_out(path: str, field_name: str) -> bool:
            status = (api.get(path) or {}).get("status", {})
            return int(status.get(field_name, 0)) >= 1

        self.out("waiting for CoreDNS and the NetworkPolicy agent ...")
        self._poll(
            lambda: rolled_out(
                f"/apis/apps/v1/namespaces/{nodeconfig.SYSTEM_NAMESPACE}/daemonsets/kube-network-policies",
                "numberReady",
            ),
            "the NetworkPolicy agent to be ready",
            deadline,
        )
        self._poll(
            lambda: rolled_out(
                f"/apis/apps/v1/namespaces/{nodeconfig.SYSTEM_NAMESPACE}/deployments/coredns",
                "availableReplicas",
            ),
            "CoreDNS to be available",
            deadline,
        )
        dns = nodeconfig.dns_service_ip()
        want = str(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE)[1])  # the kubernetes Service
        self._poll(
            lambda: (
                want
                in dns_query(
                    lambda: namespaces.socket(socket.AF_INET, socket.SOCK_DGRAM),
                    dns,
                    f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
                )
            ),
            f"CoreDNS at {dns} to answer for the kubernetes Service",
            deadline,
        )
        self.timings.mark("dns-ready")

    def running(self) -> bool:
        """True while every process of the cluster is alive."""
        try:
            self.check()
        except ClusterError:
            return False
        return True

    def check(self) -> None:
        """Raise :class:`ClusterError` (with the log's last lines) if a process has died."""
        if self.plane is not None:
            try:
                self.plane.check()
            except KubeError as exc:
                raise ClusterError(str(exc)) from exc
        for process in self.processes.values():
            if not process.running():
                raise ClusterError(
                    f"{process.name} exited with status {process.returncode}; last lines of "
                    f"{process.log_path}:\n{process.tail()}"
                )
        holder = self.namespaces.holder if self.namespaces else None
        if holder is not None and not holder.running():
            raise ClusterError("the node's namespace holder died")

    def memory(self) -> dict[str, int]:
        """Resident memory (bytes) of the control plane, the node's daemons and the pods."""
        ns = self.namespaces
        node = node_pids(ns.net_ns, ns.mnt_ns) if ns else set()
        plane = [p for p in self._state.get("pids", {}).values() if p not in node]
        return {"control-plane": rss_bytes(plane), "node": rss_bytes(node)}

    def import_images(self, references: Sequence[str], containers_root: Path) -> list[str]:
        """Export images from buildah's storage and import them into the node's containerd."""
        return import_images(self.ctr(), references, containers_root)

    def start_image_api(self, containers_root: Path, timeout: float = 30.0) -> Path | None:
        """Serve the Docker API over buildah's storage at ``containers_root`` for skaffold
        (:mod:`muster_dev.imageapi`); its socket, or None when podman is not installed."""
        podman = imageapi.find_podman()
        if podman is None:
            self.out(
                "no image API for skaffold: Debian's podman is not installed "
                "(`make skaffold-tools` installs it)"
            )
            return None
        try:
            sock = imageapi.socket_path(self.workdir)
        except imageapi.ImageApiError as exc:
            raise ClusterError(str(exc)) from exc
        tmpdir = self.workdir / "podman"
        tmpdir.mkdir(exist_ok=True)
        self._start_process(
            "podman",
            imageapi.service_argv(podman, containers_root, sock, tmpdir),
            in_node=False,
        )
        self._poll(
            lambda: imageapi.answers(sock),
            f"the image API (podman system service) to answer at {sock}",
            time.monotonic() + timeout,
        )
        self._state["image_api"] = str(sock)
        _write_state(self._state)
        return sock

    def stop(self) -> None:
        """Stop everything and remove all but the logs; idempotent."""
        if self._lock is None:
            return  # never started (or already stopped): whatever runs is not ours
        for name in ("kube-proxy", "kubelet", "containerd"):
            process = self.processes.pop(name, None)
            if process is not None:
                process.stop(grace=10)
        ns = self.namespaces
        report = sweep(ns.net_ns if ns else None, ns.mnt_ns if ns else None)
        if ns is not None:
            ns.stop()
            self.namespaces = None
        for name in list(self.processes):
            self.processes.pop(name).stop(grace=10)
        if self.plane is not None:
            self.plane.stop()
            self.plane = None
        self.access = None
        self.api = None
        if report.problems:
            self.out("the node could not be removed completely: " + "; ".join(report.problems))
        else:
            if self.workdir.exists():
                _remove_tree(self.workdir, keep_logs=True)
            STATE_FILE.unlink(missing_ok=True)
        self._lock.close()
        self._lock = None


def _version_tag(binary: Path) -> str:
    """``v1.15.0`` from a link like ``bin/coredns -> coredns-v1.15.0`` (the Makefile's)."""
    target = binary.resolve().name if binary.exists() else binary.name
    _, separator, version = target.rpartition("-v")
    return f"v{version}" if separator and version else "dev"


def _remove_tree(folder: Path, *, keep_logs: bool) -> None:
    """Empty ``folder``, keeping ``*.log`` files if asked."""
    for entry in folder.iterdir():
        if keep_logs and entry.is_dir() and not entry.is_symlink():
            _remove_tree(entry, keep_logs=True)
            with contextlib.suppress(OSError):
                entry.rmdir()
        elif keep_logs and (entry.suffix == ".log" or entry.name == _MARKER):
            continue
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _ctr_prefix(holder_pid: int) -> list[str]:
    return [
        "nsenter", f"--target={holder_pid}", "--mount", "--net", "--",
        "ctr", "--address", nodeconfig.CONTAINERD_SOCKET, "--namespace", CRI_NAMESPACE,
    ]  # fmt: skip


def import_images(
    ctr: Sequence[str],
    references: Sequence[str],
    containers_root: Path,
    also: Sequence[str] = (),
    out: Callable[[str], None] | None = None,
) -> list[str]:
    """Export each image from buildah's storage and import it with ``ctr``; their names.
    ``also`` gives the one image of ``references`` more names in the node.

    An image the node already holds under another name (the same config, so the same
    layers: skaffold's tag for an image the tests imported by its content tag, or the
    other way round) only gets the new names, instead of being exported and read again."""
    if also and len(references) != 1:
        raise ImageError("more names (--tag) can be given to one image at a time only")
    imported = []
    held = node_images_by_config(ctr)
    with tempfile.TemporaryDirectory(prefix="muster-images-") as tmp:
        for reference in references:
            names = [reference, *(n for n in also if n != reference)]
            present = held.get(buildah_image_id(reference, containers_root))
            if present:
                imported += name_in_node(ctr, present[0], names)
                if out is not None:
                    out(f"{reference}: the node holds it as {present[0]}; named it")
                continue
            archive = buildah_archive(reference, Path(tmp) / "image.tar", containers_root, also)
            imported += import_archive(ctr, archive)
            archive.unlink()
    return imported


# --- clean-up from another process (`muster cluster down`) ---------------------------------


def clean_up(state: dict[str, Any] | None, out: Callable[[str], None]) -> list[str]:
    """Remove what a launcher that is gone left: its processes, the node, the state file.
    Returns the problems (empty when all is gone)."""
    net_ns = mnt_ns = None
    if state is not None:
        net_ns, mnt_ns = state.get("net_ns"), state.get("mnt_ns")
        for name, pid in dict(state.get("pids", {})).items():
            if _is_process(int(pid), name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    report = sweep(net_ns, mnt_ns)
    problems = report.problems or []
    if not problems:
        STATE_FILE.unlink(missing_ok=True)
        if state is not None and state.get("workdir"):
            workdir = Path(state["workdir"])
            if (workdir / _MARKER).exists():
                _remove_tree(workdir, keep_logs=True)
    if report.killed:
        out(f"stopped {report.killed} process(es) of the node")
    return problems


def _is_process(pid: int, name: str) -> bool:
    """Whether ``pid`` still runs the program ``name`` (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(Path(arg.decode(errors="replace")).name.startswith(name) for arg in cmdline if arg)


def down(out: Callable[[str], None], timeout: float = 120.0) -> int:
    """Stop a running cluster (by signalling its launcher) or clean up after a dead one."""
    require_root()
    state = read_state()
    stopped = False
    if launcher_running():
        pid = (state or {}).get("launcher_pid")
        if not pid:
            out("a launcher holds the node lock but left no state file; stop it yourself")
            return 1
        out(f"stopping the cluster's launcher (pid {pid}) ...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGTERM)
        try:
            wait_until(lambda: not launcher_running(), what="the launcher to stop", timeout=timeout)
        except PollTimeout:
            out(f"the launcher (pid {pid}) did not stop within {timeout:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        state = read_state()
        stopped = True
    if state is None and not leftovers():
        out("the local cluster is stopped" if stopped else "no local cluster is running")
        return 0
    problems = clean_up(state, out)
    if problems:
        out("could not remove everything: " + "; ".join(problems))
        return 1
    out("the local cluster is gone")
    return 0


RESTARTABLE = ("containerd",)
# `muster cluster restart` asks the launcher (which supervises the node's daemons and would
# take any of them dying for a failure) to restart one with this signal.
_RESTART_SIGNAL = signal.SIGUSR1


def restart(component: str, out: Callable[[str], None], timeout: float = 120.0) -> int:
    """Have the running launcher restart one of the node's daemons; wait until it has."""
    require_root()
    if component not in RESTARTABLE:
        out(f"cannot restart {component!r}; restartable: {', '.join(RESTARTABLE)}")
        return 2
    state = read_state()
    if state is None or not launcher_running() or not state.get("launcher_pid"):
        out("no local cluster is running (start one with `muster cluster up`)")
        return 1
    before = int(state.get("restarts", {}).get(component, 0))
    old_pid = state.get("pids", {}).get(component)
    out(f"restarting the node's {component} (pid {old_pid}) ...")
    started = time.monotonic()
    os.kill(int(state["launcher_pid"]), _RESTART_SIGNAL)

    def restarted() -> dict[str, Any] | None:
        if not launcher_running():
            raise ClusterError(
                f"the cluster stopped while restarting {component}; see {state['workdir']}/logs"
            )
        now = read_state() or {}
        return now if int(now.get("restarts", {}).get(component, 0)) > before else None

    try:
        now = wait_until(restarted, what=f"{component} to be restarted", timeout=timeout)
    except (PollTimeout, ClusterError) as exc:
        out(f"muster cluster restart: {exc}")
        return 1
    new_pid = now.get("pids", {}).get(component)
    out(f"{component} restarted (pid {old_pid} -> {new_pid}) in "
        f"{time.monotonic() - started:.1f}s")  # fmt: skip
    return 0


def status(out: Callable[[str], None]) -> int:
    """Say whether a cluster runs, where its kubeconfig is, and how much memory it uses."""
    state = read_state()
    running = launcher_running()
    if not running:
        left = leftovers()
        if state is not None or left:
            out(
                "no cluster runs, but one left things behind: "
                + ", ".join(left or [str(STATE_FILE)])
            )
            out("run `muster cluster down` to remove them")
            return 1
        out("no local cluster is running (start one with `muster cluster up`)")
        return 3
    if state is None:
        out("a launcher holds the node lock but has not written its state yet")
        return 0
    out(f"running since {state['started']} (launcher pid {state['launcher_pid']})")
    out(f"export KUBECONFIG={state['kubeconfig']}")
    if state.get("image_api"):
        out(_skaffold_line(Path(state["image_api"])))
    pids = [int(p) for p in state.get("pids", {}).values()]
    node = node_pids(state.get("net_ns"), state.get("mnt_ns"))
    out(f"memory: node {rss_bytes(node) >> 20} MiB (daemons and pods), "
        f"control plane {rss_bytes([p for p in pids if p not in node]) >> 20} MiB")  # fmt: skip
    return 0


# --- the command line ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """``muster cluster`` and its verbs."""
    parser = argparse.ArgumentParser(
        prog="muster cluster",
        description="A real one-node Kubernetes cluster on the local host (needs root).",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verbs, on ``parser`` (the ``muster`` command adds them under ``cluster``)."""
    verbs = parser.add_subparsers(dest="verb", required=True)
    up = verbs.add_parser("up", help="run the cluster in the foreground; Ctrl-C stops it")
    up.add_argument("--workdir", type=Path, help="the node's folder (default .state/cluster)")
    up.add_argument("--kubeconfig", type=Path, help="write the admin kubeconfig here")
    up.add_argument(
        "--proxy-mode", choices=["nftables", "iptables"], help="kube-proxy's mode (nftables)"
    )
    up.add_argument("--timeout", type=float, help="seconds to wait for readiness (default 240)")
    up.add_argument(
        "--image",
        action="append",
        default=[],
        help="also import this image from buildah's storage once up (repeatable)",
    )
    up.add_argument(
        "--containers-root",
        type=Path,
        default=Path(".cache/containers"),
        help="buildah's storage, for --image and the image API skaffold uses "
        "(default .cache/containers)",
    )
    verbs.add_parser("down", help="stop the cluster, or clean up after one that crashed")
    verbs.add_parser("status", help="whether a cluster runs, its kubeconfig, its memory")
    again = verbs.add_parser(
        "restart",
        help="restart one of the node's daemons (containers keep running), as after an upgrade",
    )
    again.add_argument("component", choices=RESTARTABLE, help="the daemon to restart")
    imp = verbs.add_parser("import", help="import images from buildah's storage into the node")
    imp.add_argument("images", nargs="+", help="image names, e.g. localhost/muster-base:bookworm")
    imp.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="NAME",
        help="also name the image NAME in the node (repeatable; one image only)",
    )
    imp.add_argument(
        "--containers-root",
        type=Path,
        default=Path(".cache/containers"),
        help="buildah's storage (default .cache/containers)",
    )
    tag = verbs.add_parser(
        "context-tag",
        help="print the content tag of an image build context: images built from the same "
        "files share it (the skaffold profile `local` reuses them by it)",
    )
    tag.add_argument(
        "context",
        type=Path,
        nargs="?",
        default=Path("."),
        help="the build context: the repository root or a copy of its build inputs (default .)",
    )
    parser.set_defaults(func=run)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


_restart_requested: list[str] = []


def _request_restart(signum: int, frame: FrameType | None) -> None:
    _restart_requested.append("containerd")


def _print(line: str) -> None:
    print(line, flush=True)


def _skaffold_line(image_api: Path) -> str:
    """What to export for ``skaffold dev -p local`` (docs/development.md)."""
    env = " ".join(f"{k}={v}" for k, v in imageapi.skaffold_env(image_api).items())
    return f"export {env}  # for skaffold -p local"


def _up(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "workdir": args.workdir,
            "proxy_mode": args.proxy_mode,
            "start_timeout": args.timeout,
        }.items()
        if v is not None
    }
    settings = ClusterSettings(**overrides)
    # SIGTERM (`muster cluster down`, a supervisor) stops the cluster as Ctrl-C does; SIGINT
    # too when a shell started us in the background with it ignored.
    previous = {
        sig: signal.signal(sig, _raise_keyboard_interrupt)
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    previous[_RESTART_SIGNAL] = signal.signal(_RESTART_SIGNAL, _request_restart)
    cluster = LocalCluster(settings, kubeconfig_path=args.kubeconfig, out=_print)
    try:
        _print(f"starting a one-node cluster from {cluster.binaries} (one per machine) ...")
        access = cluster.start()
        if args.image:
            names = cluster.import_images(args.image, args.containers_root)
            _print(f"imported {', '.join(names)}")
        image_api = cluster.start_image_api(args.containers_root)
        memory = cluster.memory()
        marks = cluster.timings.marks
        _print(
            f"node {NODE_NAME} Ready after {marks.get('node-ready')}s, CoreDNS answering after "
            f"{marks.get('dns-ready')}s; memory: node {memory['node'] >> 20} MiB, control plane "
            f"{memory['control-plane'] >> 20} MiB.\n"
            f"export KUBECONFIG={access.kubeconfig}\n"
            + (f"{_skaffold_line(image_api)}\n" if image_api else "")
            + f"Logs in {cluster.logs}. Ctrl-C (or `muster cluster down`) stops it.",
        )
        while True:
            while _restart_requested:
                component = _restart_requested.pop()
                _print(f"restarting {component} (asked by `muster cluster restart`) ...")
                pid = cluster.restart_containerd()
                _print(f"{component} restarted, pid {pid}")
            cluster.check()
            time.sleep(0.5)  # supervision tick, not a wait for some state
    except KeyboardInterrupt:
        _print("\nstopping the cluster ...")
        return 0
    except (ClusterError, NodeError, KubeError, ToolMissing, ImageError) as exc:
        print(f"muster cluster up: {exc}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short (`down` still can, after a while).
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        cluster.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    """Run one verb; returns the exit status."""
    try:
        if args.verb == "up":
            return _up(args)
        if args.verb == "down":
            return down(_print)
        if args.verb == "status":
            return status(_print)
        if args.verb == "restart":
            return restart(args.component, _print)
        if args.verb == "context-tag":
            _print(context_tag(args.context))
            return 0
        if args.verb == "import":
            require_root()
            state = read_state()
            if state is None or not launcher_running() or "holder_pid" not in state:
                print("muster cluster import: no cluster is running", file=sys.stderr)
                return 1
            names = import_images(
                _ctr_prefix(int(state["holder_pid"])),
                args.images,
                args.containers_root,
                args.tag,
                out=_print,
            )
            _print(f"imported {', '.join(names)}")
            return 0
    except (ClusterError, NodeError, ImageError) as exc:
        print(f"muster cluster {args.verb}: {exc}", file=sys.stderr)
        return 1
    raise AssertionError(args.verb)


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``muster cluster`` to the ``muster`` command (see :mod:`muster_dev.cli`)."""
    parser = subcommands.add_parser(
        "cluster",
        help="a real one-node Kubernetes cluster on the local host (root; make cluster-up)",
    )
    add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m muster_dev.cluster``: see :func:`build_parser`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    status_code: int = args.func(args)
    return status_code


if __name__ == "__main__":
    sys.exit(main())
