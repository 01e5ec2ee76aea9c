"""The local node's machinery: its namespaces, network link, cgroups, and their clean-up.

The node (containerd, kubelet, kube-proxy and every pod) lives in a network namespace and a
private mount namespace that a small holder process creates, so the host keeps nothing of
it: in there ``/run`` is a fresh tmpfs, ``/var`` an overlay whose changes go to the node's
work folder, ``/var/lib/kubelet`` a folder of it, and the kernel settings the kubelet would
change (``vm.overcommit_memory``, ``kernel.panic``...) read as already set. The only ways in
are a veth pair (the host side gets ``HOST_IP``, the node ``NODE_IP``; the node has no
default route, so nothing reaches beyond the host) and the pods' cgroups under
``/muster-node``. :func:`sweep` removes all of it, also after a launcher that was killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from muster_dev.process import ManagedProcess
from muster_runtime.polling import PollTimeout, wait_until

log = logging.getLogger(__name__)

NODE_NAME = "muster-node"
HOST_LINK = "muster0"
"""The host's end of the veth pair (the node's end is its ``eth0``)."""
NODE_LINK = "eth0"
CGROUP_PARENT = "muster-node"
"""The kubelet's ``cgroupRoot``: every pod's cgroup is below ``/muster-node`` in each hierarchy."""
LINK_CIDR = "198.18.0.0/30"
"""The veth link: RFC 2544's benchmarking range, which no network routes."""
POD_CIDR = "10.244.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# What the kubelet sets on start unless already so (pkg/kubelet/cm, setupKernelTunables).
# These are machine-wide, so the node's mount namespace shows these values instead.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}

_CLONE_NEWNET = 0x40000000


class NodeError(RuntimeError):
    """The node cannot start or clean up; the message says why and what to do."""


@dataclass(frozen=True)
class NodeAddresses:
    """The two ends of the veth link."""

    host_ip: str
    node_ip: str
    prefix: int

    @classmethod
    def from_cidr(cls, cidr: str) -> NodeAddresses:
        """The first two addresses of ``cidr`` (a /30 or larger IPv4 network)."""
        try:
            network = ipaddress.IPv4Network(cidr)
        except ValueError as exc:
            raise NodeError(f"link network {cidr!r} is not an IPv4 network: {exc}") from exc
        if network.num_addresses < 4:
            raise NodeError(f"link network {cidr} is too small: it needs a /30 or larger")
        hosts = list(network.hosts())[:2]
        return cls(str(hosts[0]), str(hosts[1]), network.prefixlen)


def require_root() -> None:
    """Raise :class:`NodeError` unless this process is root (namespaces, mounts, cgroups)."""
    if os.geteuid() != 0:
        raise NodeError(
            "the local node needs root: it creates network and mount namespaces, cgroups and "
            "a veth pair, and runs containerd and the kubelet (run it as root, e.g. with sudo)"
        )


def require_programs(names: Sequence[str]) -> dict[str, Path]:
    """Full paths of the Debian programs the node runs; a clear error naming the missing ones."""
    found: dict[str, Path] = {}
    missing = []
    for name in names:
        path = shutil.which(name, path=SYSTEM_PATH)
        if path is None:
            missing.append(name)
        else:
            found[name] = Path(path)
    if missing:
        raise NodeError(
            f"{', '.join(missing)} not found: run `make node-packages` (Debian's containerd, "
            "runc, containernetworking-plugins, iptables, nftables, conntrack, catatonit)"
        )
    return found


# --- the namespaces ----------------------------------------------------------------------


def _holder_script() -> str:
    """What the holder runs inside its new namespaces before it just waits.

    $1: the node's work folder, $2: a file listing ``<sysctl> <value>`` lines to present.
    """
    return """set -eu
work=$1
mount -t tmpfs -o mode=0755,nosuid,nodev muster-node-run /run
mount -t overlay -o "lowerdir=/var,upperdir=$work/var/upper,workdir=$work/var/work" \\
    muster-node-var /var
mkdir -p /var/lib/kubelet
mount --bind "$work/kubelet" /var/lib/kubelet
while read -r key value; do
    printf '%s\\n' "$value" > "$work/sysctl/${key//\\//.}"
    mount --bind "$work/sysctl/${key//\\//.}" "/proc/sys/$key"
done < "$2"
ip link set lo up
touch "$work/holder.ready"
exec sleep infinity
"""


class NodeNamespaces:
    """The holder process and the network and mount namespaces it keeps alive."""

    def __init__(self, workdir: Path, addresses: NodeAddresses, logs: Path) -> None:
        self.workdir = workdir
        self.addresses = addresses
        self.logs = logs
        self.holder: ManagedProcess | None = None
        self.net_ns: str | None = None
        self.mnt_ns: str | None = None

    @property
    def pid(self) -> int:
        """The holder's pid (the namespaces' anchor)."""
        if self.holder is None or self.holder.pid is None:
            raise NodeError("the node's namespaces are not set up")
        return self.holder.pid

    def start(self, timeout: float) -> None:
        """Create the namespaces, mounts and veth link; wait until the holder is ready."""
        for folder in ("var/upper", "var/work", "kubelet", "sysctl"):
            (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        (self.workdir / "holder.ready").unlink(missing_ok=True)
        sysctls = self.workdir / "sysctl.list"
        # bash for ${key//\//.}; the list has the kubelet's wanted value for each.
        sysctls.write_text("".join(f"{k} {v}\n" for k, v in KUBELET_SYSCTLS.items()))
        bash = require_programs(["bash"])["bash"]
        self.holder = ManagedProcess(
            "node-namespaces",
            [
                "unshare",
                "--mount",
                "--net",
                "--propagation",
                "private",
                "--",
                str(bash),
                "-c",
                _holder_script(),
                "muster-node-holder",
                str(self.workdir),
                str(sysctls),
            ],
            env={"PATH": SYSTEM_PATH},
            log_path=self.logs / "node-namespaces.log",
            death_signal=signal.SIGKILL,
        )
        self.holder.start()
        ready = self.workdir / "holder.ready"

        def holder_ready() -> bool:
            assert self.holder is not None
            if not self.holder.running():
                raise NodeError(
                    f"could not create the node's namespaces (exit {self.holder.returncode}):\n"
                    f"{self.holder.tail()}"
                )
            return ready.exists()

        try:
            wait_until(holder_ready, what="the node's namespaces", timeout=timeout)
        except PollTimeout as exc:
            raise NodeError(f"{exc}:\n{self.holder.tail()}") from exc
        self.net_ns = os.readlink(f"/proc/{self.pid}/ns/net")
        self.mnt_ns = os.readlink(f"/proc/{self.pid}/ns/mnt")
        self._link()

    def _link(self) -> None:
        a = self.addresses
        _run(["ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name", NODE_LINK,
              "netns", str(self.pid)])  # fmt: skip
        _run(["ip", "addr", "add", f"{a.host_ip}/{a.prefix}", "dev", HOST_LINK])
        _run(["ip", "link", "set", HOST_LINK, "up"])
        inside = self.enter(net=True, mount=False)
        _run([*inside, "ip", "addr", "add", f"{a.node_ip}/{a.prefix}", "dev", NODE_LINK])
        _run([*inside, "ip", "link", "set", NODE_LINK, "up"])

    def route_services(self, service_cidr: str) -> None:
        """Let the node itself reach Service IPs (hostNetwork pods, probes).

        Packets the node sends need a route before kube-proxy's DNAT rewrites them; an
        on-link route on the veth suffices and, with no gateway, sends nothing further.
        """
        inside = self.enter(net=True, mount=False)
        _run([*inside, "ip", "route", "add", service_cidr, "dev", NODE_LINK,
              "src", self.addresses.node_ip])  # fmt: skip

    def route_from_host(self, cidr: str) -> None:
        """Route ``cidr`` (the Services' addresses) from the host through the node.

        The API server runs on the host and calls admission webhooks (and aggregated APIs)
        at their Service's ClusterIP; without this route those connections follow the
        host's default route off the machine. kube-proxy in the node forwards them to the
        pods. The route goes with the veth pair when the node stops.
        """
        _run(["ip", "route", "add", cidr, "via", self.addresses.node_ip, "dev", HOST_LINK])

    def enter(self, *, net: bool = True, mount: bool = True) -> list[str]:
        """The ``nsenter`` prefix that runs a command inside the node."""
        argv = ["nsenter", f"--target={self.pid}"]
        if net:
            argv.append("--net")
        if mount:
            argv.append("--mount")
        return [*argv, "--"]

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket in the node's network namespace: it reaches pod and Service IPs."""
        return netns_socket(Path(f"/proc/{self.pid}/ns/net"), family, kind)

    def stop(self) -> None:
        """Stop the holder; the namespaces go once nothing else is in them (see :func:`sweep`)."""
        if self.holder is not None:
            self.holder.stop(grace=2)
            self.holder = None


def netns_socket(netns: Path, family: int, kind: int) -> socket.socket:
    """A socket created inside the network namespace ``netns`` (a ``/proc/<pid>/ns/net`` path).

    A socket stays in the namespace it was made in, so a short-lived thread enters the
    namespace (``setns`` moves only the calling thread), makes it, and ends.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns({netns}): {os.strerror(errno)}")
            finally:
                os.close(fd)
            made.append(socket.socket(family, kind))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=make, name="netns-socket")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


# --- DNS, for the readiness check ---------------------------------------------------------


def dns_query(sock_factory: Callable[[], socket.socket], server: str, name: str) -> list[str]:
    """The A records ``server`` (port 53, UDP) gives for ``name``; [] if it has none."""
    query_id = int.from_bytes(os.urandom(2), "big")
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0\0\1\0\1"
    with sock_factory() as sock:
        sock.settimeout(2)
        sock.sendto(packet, (server, 53))
        reply, _ = sock.recvfrom(4096)
    rid, flags, qdcount, ancount = struct.unpack(">HHHH", reply[:8])
    if rid != query_id:
        raise OSError("DNS reply for another query")
    if flags & 0x000F:
        raise OSError(f"DNS error code {flags & 0x000F} for {name}")
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(reply, offset) + 4
    addresses = []
    for _ in range(ancount):
        offset = _skip_name(reply, offset)
        rtype, _rclass, _ttl, length = struct.unpack(">HHIH", reply[offset : offset + 10])
        offset += 10
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntoa(reply[offset : offset + 4]))
        offset += length
    return addresses


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        if length == 0:
            return offset + 1
        offset += length + 1


# --- cgroups ----------------------------------------------------------------------------


def cgroup_mounts() -> list[Path]:
    """Every cgroup (v1 and v2) hierarchy mounted on the host."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype = after.split(" ", 1)[0]
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(before.split(" ")[4]))
    return mounts


def make_cgroup_parent() -> None:
    """``/muster-node`` in every hierarchy: the kubelet wants its cgroupRoot to exist."""
    for mount in cgroup_mounts():
        folder = mount / CGROUP_PARENT
        folder.mkdir(exist_ok=True)
        # A new v1 cpuset has no CPUs or memory nodes until given its parent's.
        for name in ("cpuset.cpus", "cpuset.mems"):
            mine, parents = folder / name, mount / name
            if mine.exists() and parents.exists() and not mine.read_text().strip():
                mine.write_text(parents.read_text())


def cgroup_pids() -> set[int]:
    """The processes in any cgroup below ``/muster-node``."""
    pids: set[int] = set()
    for mount in cgroup_mounts():
        root = mount / CGROUP_PARENT
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def cgroups_left() -> list[Path]:
    """``/muster-node`` folders that still exist."""
    return [m / CGROUP_PARENT for m in cgroup_mounts() if (m / CGROUP_PARENT).is_dir()]


def remove_cgroups() -> list[str]:
    """Remove every cgroup below and including ``/muster-node``; what could not be removed."""
    problems = []
    for root in cgroups_left():
        folders = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for folder in [*folders, root]:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"{folder}: {exc.strerror}")
    return problems


# --- finding and stopping what the node left -----------------------------------------


def _namespace_of(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def node_pids(net_ns: str | None, mnt_ns: str | None) -> set[int]:
    """Processes of the node: in its namespaces (daemons, shims) or its cgroups (pods)."""
    me = os.getpid()
    found = cgroup_pids()
    if net_ns or mnt_ns:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if (net_ns and _namespace_of(pid, "net") == net_ns) or (
                mnt_ns and _namespace_of(pid, "mnt") == mnt_ns
            ):
                found.add(pid)
    found.discard(me)
    return found


def kill_pids(find: Callable[[], set[int]], timeout: float) -> set[int]:
    """SIGTERM what ``find`` returns, then SIGKILL it until none are left; the survivors."""
    for pid in find():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    grace_end = time.monotonic() + min(3.0, timeout / 2)
    while True:
        left = find()
        if not left or time.monotonic() >= deadline:
            return left
        if time.monotonic() >= grace_end:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)  # processes take a moment to die and be reaped; polled to a deadline


def link_exists(name: str = HOST_LINK) -> bool:
    """Whether the host has a network interface of that name."""
    return Path("/sys/class/net", name).exists()


def check_host_network(addresses: NodeAddresses, service_cidr: str | None = None) -> None:
    """Refuse a link network (or a Service network, which the host routes to the node)
    that the host already uses: a clash would break both."""
    if link_exists():
        raise NodeError(
            f"the host already has an interface {HOST_LINK!r}: a node is running or was left "
            "behind; run `muster cluster down`"
        )
    ours = ipaddress.IPv4Network(f"{addresses.host_ip}/{addresses.prefix}", strict=False)
    wanted = [(ours, "the node's link network", "set MUSTER_CLUSTER_LINK_CIDR to a free /30")]
    if service_cidr is not None:
        wanted.append(
            (ipaddress.IPv4Network(service_cidr), "the cluster's Service network",
             "free that network on the host")
        )  # fmt: skip
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("local", "broadcast"):
            continue
        with contextlib.suppress(ValueError):
            theirs = ipaddress.IPv4Network(dst, strict=False)
            for network, what, advice in wanted:
                if theirs.overlaps(network):
                    raise NodeError(
                        f"{what} {network} overlaps the host's route to {dst} "
                        f"(dev {route.get('dev', '?')}): {advice}"
                    )


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, env={"PATH": SYSTEM_PATH}, check=False
    )
    if result.returncode != 0:
        raise NodeError(f"`{shlex.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


@dataclass
class SweepReport:
    """What :func:`sweep` found and what it could not remove."""

    killed: int = 0
    problems: list[str] | None = None


def sweep(net_ns: str | None, mnt_ns: str | None, *, timeout: float = 30.0) -> SweepReport:
    """Remove everything of the node: processes, then (with them) its namespaces, mounts,
    interfaces and firewall rules, then its cgroups. Safe to call when nothing is left."""
    problems: list[str] = []
    before = node_pids(net_ns, mnt_ns)
    survivors = kill_pids(lambda: node_pids(net_ns, mnt_ns), timeout)
    if survivors:
        problems.append(f"processes that would not die: {sorted(survivors)}")
    # The veth pair goes with the node's network namespace, which the kernel frees a moment
    # after its last process.
    try:
        wait_until(lambda: not link_exists(), what=f"{HOST_LINK} to go", timeout=10)
    except PollTimeout:
        with contextlib.suppress(NodeError):
            _run(["ip", "link", "delete", HOST_LINK])
        if link_exists():
            problems.append(f"interface {HOST_LINK} is still there")
    problems += remove_cgroups()
    return SweepReport(killed=len(before), problems=problems)


def leftovers() -> list[str]:
    """What of a node is on the host now (for `status` and the clean-up test)."""
    found = []
    if link_exists():
        found.append(f"interface {HOST_LINK}")
    found += [f"cgroup {p}" for p in cgroups_left()]
    pids = cgroup_pids()
    if pids:
        found.append(f"processes in /{CGROUP_PARENT}: {sorted(pids)}")
    return found


def rss_bytes(pids: Iterator[int] | Sequence[int] | set[int]) -> int:
    """Resident memory of these processes, summed (shared pages counted in each)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
            if match:
                total += int(match.group(1)) * 1024
    return total
