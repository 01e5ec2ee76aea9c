"""A real Kubernetes control plane as local processes: etcd and kube-apiserver as children.

Set up the way controller-runtime's envtest does it: secure serving with a throw-away CA
made at start, an admin client certificate in ``system:masters``, RBAC authorization,
service-account signing keys, free loopback ports and a generated kubeconfig. It backs the
``tests/kube`` fixtures and ``make kube-up``. The binaries are built by ``make kube-tools``
into ``<repo>/bin`` (or ``$MUSTER_BIN_DIR``). With ``MUSTER_USE_EXISTING_CLUSTER=true``
nothing is started and the cluster that ``$KUBECONFIG`` names is used instead.
"""

from __future__ import annotations

import argparse
import base64
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
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from muster_dev.process import ManagedProcess
from muster_dev.temporal import ToolMissing
from muster_runtime.polling import PollTimeout, wait_until

log = logging.getLogger(__name__)

CONTEXT_NAME = "muster-local"
ADMIN_USER = "muster-admin"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
# The API server's client identity towards kubelets; the cluster binds it to the built-in
# `system:kubelet-api-admin` role.
KUBELET_CLIENT_USER = "muster:apiserver-kubelet-client"
KUBELET_CLIENT_GROUP = "muster:apiservers"
_ETCD_HOST = "127.0.0.1"
_PORT_RETRIES = 3


class KubeError(RuntimeError):
    """The control plane could not start or died; the message says why."""


class KubeSettings(BaseSettings):
    """``MUSTER_*`` variables of the local Kubernetes control plane (and its test fixtures).

    ``KUBECONFIG`` is read as kubectl reads it.
    """

    model_config = SettingsConfigDict(
        env_prefix="MUSTER_", extra="ignore", use_attribute_docstrings=True
    )

    use_existing_cluster: bool = False
    """Use the cluster ``KUBECONFIG`` names (kind, a real one) instead of starting a local
    kube-apiserver and etcd, like envtest's ``USE_EXISTING_CLUSTER``."""
    kube_context: str | None = None
    """kubeconfig context to use with an existing cluster (default: its current context)."""
    bin_dir: Path | None = None
    """Where ``kube-apiserver``, ``etcd`` and ``helm`` are (default: ``<repo>/bin``)."""
    kube_start_timeout: float = Field(default=90.0, gt=0)
    """Seconds to wait for etcd and kube-apiserver to report ready."""


@dataclass(frozen=True)
class KubeAccess:
    """How to reach a control plane: what kubectl and the Python client need."""

    kubeconfig: str
    """A kubeconfig path (for an existing cluster possibly a ``:``-separated list)."""
    context: str | None
    """The context to use, or None for the kubeconfig's current context."""
    server: str | None
    """The API server's URL when known (always for a local plane)."""
    existing: bool
    """True when this is a cluster Muster did not start (and must not harm)."""

    def env(self) -> dict[str, str]:
        """Environment variables that point kubectl and helm at this plane."""
        return {"KUBECONFIG": self.kubeconfig}

    def kubectl_args(self) -> list[str]:
        """Global kubectl/helm flags that select this plane."""
        args = ["--kubeconfig", self.kubeconfig]
        if self.context:
            args += ["--context", self.context]
        return args


def repo_root() -> Path | None:
    """The checkout this module runs from (the folder holding ``infra/kube.mk``), if any."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "infra" / "kube.mk").is_file():
                return folder
    return None


def bin_dir(settings: KubeSettings | None = None) -> Path:
    """Where the Makefile puts the Go-built tools."""
    settings = settings or KubeSettings()
    if settings.bin_dir is not None:
        return settings.bin_dir
    root = repo_root()
    return (root or Path.cwd()) / "bin"


def kube_binary(name: str, directory: Path | None = None) -> Path:
    """Path of ``kube-apiserver``, ``etcd`` or ``helm``; a clear error if not built yet."""
    folder = directory or bin_dir()
    path = folder / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolMissing(
            f"`{name}` not found in {folder}: run `make kube-tools` to build kube-apiserver, "
            "etcd and helm from Go modules (or set MUSTER_BIN_DIR to where they are)"
        )
    return path


def existing_cluster(settings: KubeSettings | None = None) -> KubeAccess | None:
    """The cluster to use instead of a local plane, when ``MUSTER_USE_EXISTING_CLUSTER`` says so."""
    settings = settings or KubeSettings()
    if not settings.use_existing_cluster:
        return None
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    paths = [Path(p) for p in kubeconfig.split(os.pathsep) if p]
    if not any(p.is_file() for p in paths):
        raise KubeError(
            f"MUSTER_USE_EXISTING_CLUSTER is set but no kubeconfig exists at {kubeconfig}; "
            "set KUBECONFIG (for kind: `kind get kubeconfig --name NAME > FILE`)"
        )
    return KubeAccess(
        kubeconfig=kubeconfig, context=settings.kube_context, server=None, existing=True
    )


# --- a throw-away PKI -------------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # An hour of slack for clock skew; a week is longer than any test run or kube-up.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
    )


def _new_ca(common_name: str) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        _builder(name, name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return _Pair(cert, key)


def _issue(
    ca: _Pair,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    server_names: Sequence[str] = (),
    server_ips: Sequence[str] = (),
) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    serving = bool(server_names or server_ips)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if serving else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name, organizations), ca.cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=True, key_cert_sign=False,
                crl_sign=False, content_commitment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )  # fmt: skip
    if serving:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _Pair(builder.sign(ca.key, hashes.SHA256()), key)


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@dataclass(frozen=True)
class Pki:
    """The plane's throw-away certificate authority and the files made from it (PEM)."""

    ca: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public: Path
    sa_private: Path

    def issue(
        self,
        name: str,
        common_name: str,
        *,
        organizations: Sequence[str] = (),
        server_names: Sequence[str] = (),
        server_ips: Sequence[str] = (),
    ) -> tuple[Path, Path]:
        """A certificate (and key) signed by this CA, written as ``<name>.crt``/``<name>.key``
        beside it: a client certificate for ``common_name`` in ``organizations`` (Kubernetes'
        user and groups), or a serving one when names or addresses are given."""
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise KubeError(f"{self.ca_key} is not the EC key this module makes")
        ca = _Pair(x509.load_pem_x509_certificate(self.ca.read_bytes()), ca_key)
        pair = _issue(
            ca,
            common_name,
            organizations=organizations,
            server_names=server_names,
            server_ips=server_ips,
        )
        folder = self.ca.parent
        return (
            _write(folder / f"{name}.crt", pair.cert_pem(), 0o644),
            _write(folder / f"{name}.key", pair.key_pem()),
        )


def _make_pki(folder: Path, host: str) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _new_ca("muster-local-ca")
    serving = _issue(
        ca,
        "kube-apiserver",
        server_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        # 10.0.0.1 is the in-cluster `kubernetes` Service IP of SERVICE_CLUSTER_IP_RANGE.
        server_ips=sorted({host, "127.0.0.1", "10.0.0.1"}),
    )
    admin = _issue(ca, ADMIN_USER, organizations=["system:masters"])
    sa_key = ec.generate_private_key(ec.SECP256R1())
    sa_public = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sa_private = _Pair(ca.cert, sa_key).key_pem()
    return Pki(
        ca=_write(folder / "ca.crt", ca.cert_pem(), 0o644),
        # Kept (owner-only) so that a node's components get certificates from the same CA.
        ca_key=_write(folder / "ca.key", ca.key_pem()),
        serving_cert=_write(folder / "apiserver.crt", serving.cert_pem(), 0o644),
        serving_key=_write(folder / "apiserver.key", serving.key_pem()),
        admin_cert=_write(folder / "admin.crt", admin.cert_pem(), 0o644),
        admin_key=_write(folder / "admin.key", admin.key_pem()),
        sa_public=_write(folder / "sa.pub", sa_public, 0o644),
        sa_private=_write(folder / "sa.key", sa_private),
    )


def _kubeconfig(server: str, pki: Pki) -> str:
    """A kubeconfig (JSON is YAML) with the admin credentials embedded."""
    return kubeconfig_for(server, pki.ca, pki.admin_cert, pki.admin_key, ADMIN_USER)


def kubeconfig_for(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    """A kubeconfig (JSON is YAML) for ``server`` with a client certificate embedded."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT_NAME,
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert),
                    "client-key-data": b64(key),
                },
            }
        ],
        "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": user}}],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"


# --- the plane ----------------------------------------------------------------------------


class LocalControlPlane:
    """etcd plus kube-apiserver on free loopback ports, in a throw-away folder.

    Use as a context manager (or call :meth:`start` and :meth:`stop`); stopping is
    idempotent and also happens when starting fails halfway.

    With ``serve_nodes`` the API server is set up for a node that runs pods (the local
    cluster, :mod:`muster_runtime.localstack.cluster`): the ``kubernetes`` Service gets
    ``host`` as its endpoint, ServiceAccount admission mounts tokens, kubelets are
    authorized as nodes and reached with a client certificate of this CA.
    """

    def __init__(
        self,
        *,
        binaries: Path | None = None,
        workdir: Path | None = None,
        kubeconfig_path: Path | None = None,
        host: str = "127.0.0.1",
        start_timeout: float | None = None,
        apiserver_args: Sequence[str] = (),
        etcd_args: Sequence[str] = (),
        keep_workdir: bool = False,
        serve_nodes: bool = False,
    ) -> None:
        settings = KubeSettings()
        self.binaries = binaries or bin_dir(settings)
        self.host = host
        self.start_timeout = start_timeout or settings.kube_start_timeout
        self.apiserver_args = list(apiserver_args)
        self.etcd_args = list(etcd_args)
        self.serve_nodes = serve_nodes
        self._given_workdir = workdir
        self._kubeconfig_path = kubeconfig_path
        self._keep_workdir = keep_workdir or workdir is not None
        self.workdir: Path | None = None
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.access: KubeAccess | None = None
        self.pki: Pki | None = None
        self._admin_tls: ssl.SSLContext | None = None

    # context manager -----------------------------------------------------------------

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

    # lifecycle ---------------------------------------------------------------------

    def start(self) -> KubeAccess:
        """Start etcd and kube-apiserver and wait until ``/readyz`` says ok."""
        etcd_bin = kube_binary("etcd", self.binaries)
        apiserver_bin = kube_binary("kube-apiserver", self.binaries)
        try:
            self.workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="muster-kube-"))
            self.workdir.mkdir(parents=True, exist_ok=True)
            pki = self.pki = _make_pki(self.workdir / "pki", self.host)
            deadline = time.monotonic() + self.start_timeout
            for attempt in range(1, _PORT_RETRIES + 1):
                try:
                    server = self._start_processes(etcd_bin, apiserver_bin, pki, deadline)
                    break
                except _PortTaken as exc:
                    # A free port is only free until someone else binds it; pick new ones.
                    log.warning("port race (%s), attempt %d of %d", exc, attempt, _PORT_RETRIES)
                    self._stop_processes()
                    if attempt == _PORT_RETRIES:
                        raise KubeError(f"could not bind free ports: {exc}") from exc
            kubeconfig = self._kubeconfig_path or self.workdir / "kubeconfig"
            kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            _write(kubeconfig, _kubeconfig(server, pki).encode())
            self.access = KubeAccess(
                kubeconfig=str(kubeconfig), context=CONTEXT_NAME, server=server, existing=False
            )
            return self.access
        except BaseException:
            self.stop()
            raise

    def _start_processes(
        self, etcd_bin: Path, apiserver_bin: Path, pki: Pki, deadline: float
    ) -> str:
        assert self.workdir is not None
        host = self.host
        # etcd has no authentication: it listens on loopback only, whatever ``host`` is.
        client_port, peer_port = _free_ports(_ETCD_HOST, 2)
        (secure_port,) = _free_ports(host, 1)
        data_dir = self.workdir / "etcd"
        shutil.rmtree(data_dir, ignore_errors=True)
        etcd_url = f"http://{_ETCD_HOST}:{client_port}"
        peer_url = f"http://{_ETCD_HOST}:{peer_port}"
        # etcd also reads ETCD_* variables and refuses flags they contradict.
        etcd_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
        self.etcd = ManagedProcess(
            "etcd",
            [
                str(etcd_bin),
                "--name=default",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Throw-away data: durability only costs time (envtest does the same).
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                *self.etcd_args,
            ],
            env=etcd_env,
            cwd=self.workdir,
            log_path=self.workdir / "etcd.log",
        )
        self.etcd.start()
        self._wait(self.etcd, f"{etcd_url}/health", deadline, _etcd_healthy, None)

        server = f"https://{host}:{secure_port}"
        self.apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(apiserver_bin),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                *(self._node_args(pki) if self.serve_nodes else self._plane_only_args()),
                f"--secure-port={secure_port}",
                f"--cert-dir={pki.ca.parent}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca}",
                f"--service-account-issuer={server}",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--profiling=false",
                # The mixed-version peer proxy (beta, on by default) is for several API servers;
                # its shutdown hook would wait on etcd forever if etcd is already gone.
                "--feature-gates=UnknownVersionInteroperabilityProxy=false",
                *self.apiserver_args,
            ],
            cwd=self.workdir,
            log_path=self.workdir / "kube-apiserver.log",
            # Its state is throw-away: if our process is killed, it need not shut down nicely.
            death_signal=signal.SIGKILL,
        )
        self.apiserver.start()
        self._admin_tls = ssl.create_default_context(cafile=str(pki.ca))
        self._admin_tls.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._wait(self.apiserver, f"{server}/readyz", deadline, _says_ok, self._admin_tls)
        return server

    @staticmethod
    def _plane_only_args() -> list[str]:
        return [
            # The default (lease) reconciler refuses a loopback advertise address, and no
            # pod here needs endpoints for the `kubernetes` Service.
            "--endpoint-reconciler-type=none",
            "--authorization-mode=RBAC",
            # No controller-manager creates each namespace's `default` ServiceAccount, so
            # this plugin would reject every Pod (envtest disables it for the same reason).
            "--disable-admission-plugins=ServiceAccount",
        ]

    @staticmethod
    def _node_args(pki: Pki) -> list[str]:
        kubelet_cert, kubelet_key = pki.issue(
            "apiserver-kubelet-client", KUBELET_CLIENT_USER, organizations=[KUBELET_CLIENT_GROUP]
        )
        return [
            # Pods reach the API server through the `kubernetes` Service: its endpoint is
            # the advertise address, kept by the default (lease) reconciler.
            "--endpoint-reconciler-type=lease",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            # logs, exec and port-forward: the API server calls the kubelet at the node's
            # InternalIP (its hostname resolves nowhere) and checks its serving certificate.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={kubelet_cert}",
            f"--kubelet-client-key={kubelet_key}",
            f"--kubelet-certificate-authority={pki.ca}",
        ]

    def server_version(self) -> str:
        """The API server's ``gitVersion`` (from ``/version``), e.g. ``v1.37.2``."""
        if self.access is None or self.access.server is None or self._admin_tls is None:
            raise KubeError("the control plane is not running")
        url = f"{self.access.server}/version"
        with urllib.request.urlopen(url, timeout=5, context=self._admin_tls) as response:  # noqa: S310 - our own loopback URL
            return str(json.loads(response.read())["gitVersion"])

    def _wait(
        self,
        process: ManagedProcess,
        url: str,
        deadline: float,
        healthy: Callable[[bytes], bool],
        context: ssl.SSLContext | None,
    ) -> None:
        def ready() -> bool:
            if not process.running():
                tail = process.tail()
                if "address already in use" in tail:
                    raise _PortTaken(f"{process.name}: address already in use")
                raise KubeError(
                    f"{process.name} exited with status {process.returncode} while starting; "
                    f"last lines of its log:\n{tail}"
                )
            with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310 - our own loopback URL
                return healthy(response.read())

        try:
            wait_until(
                ready,
                what=f"{process.name} at {url}",
                timeout=max(0.0, deadline - time.monotonic()),
                interval=0.1,
                ignore=(OSError,),
            )
        except PollTimeout as exc:
            raise KubeError(
                f"{exc} (raise MUSTER_KUBE_START_TIMEOUT on a slow machine); "
                f"last lines of its log:\n{process.tail()}"
            ) from exc

    def running(self) -> bool:
        """True while both etcd and kube-apiserver are alive."""
        return all(p is not None and p.running() for p in (self.etcd, self.apiserver))

    def check(self) -> None:
        """Raise :class:`KubeError` (with the log's last lines) if a process has died."""
        for process in (self.etcd, self.apiserver):
            if process is not None and not process.running():
                raise KubeError(
                    f"{process.name} exited with status {process.returncode}; "
                    f"last lines of its log:\n{process.tail()}"
                )

    def _stop_processes(self) -> None:
        # The API server first, so it does not spend its shutdown retrying a dead etcd. One
        # that serves nodes also waits ~10 s to withdraw its `kubernetes` Service endpoint,
        # which matters to nobody once the cluster is going: its state is thrown away.
        if self.apiserver is not None:
            self.apiserver.stop(grace=2 if self.serve_nodes else 15)
            self.apiserver = None
        if self.etcd is not None:
            self.etcd.stop(grace=10)
            self.etcd = None

    def stop(self) -> None:
        """Stop both processes (SIGTERM, then SIGKILL) and remove the throw-away folder."""
        try:
            self._stop_processes()
        finally:
            if self.workdir is not None and not self._keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None
            self.access = None
            self._admin_tls = None


def _free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held open while picking)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


class _PortTaken(Exception):
    """A process lost the race for a port picked as free."""


def _etcd_healthy(body: bytes) -> bool:
    return bool(json.loads(body).get("health") == "true")


def _says_ok(body: bytes) -> bool:
    return body.strip() == b"ok"


@contextlib.contextmanager
def control_plane(**options: Any) -> Iterator[KubeAccess]:
    """An existing cluster if ``MUSTER_USE_EXISTING_CLUSTER`` is set, else a local plane.

    ``options`` go to :class:`LocalControlPlane` (ignored for an existing cluster).
    """
    existing = existing_cluster()
    if existing is not None:
        yield existing
        return
    with LocalControlPlane(**options) as plane:
        assert plane.access is not None
        yield plane.access


# --- `make kube-up` / `python -m muster_dev.kube` --------------------------


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the foreground plane."""
    parser = argparse.ArgumentParser(
        prog="muster kube-up",
        description="Run kube-apiserver and etcd in the foreground until Ctrl-C.",
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="write the admin kubeconfig here (default: inside the throw-away folder)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep certificates, etcd data and logs in this folder (kept after exit)",
    )
    parser.add_argument("--timeout", type=float, help="seconds to wait for readiness (default: 90)")
    return parser


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the plane in the foreground; returns the exit status."""
    existing = existing_cluster()
    if existing is not None:
        print("MUSTER_USE_EXISTING_CLUSTER is set: nothing to start.")
        print(f"export KUBECONFIG={existing.kubeconfig}")
        return 0
    # SIGTERM (a supervisor, CI) stops the plane as cleanly as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    plane = LocalControlPlane(
        workdir=args.workdir, kubeconfig_path=args.kubeconfig, start_timeout=args.timeout
    )
    try:
        print(f"starting etcd and kube-apiserver from {plane.binaries} ...", flush=True)
        access = plane.start()
        version = plane.server_version()
        print(
            f"Kubernetes {version} API server ready at {access.server} "
            f"(etcd and logs in {plane.workdir}).\n"
            f"export KUBECONFIG={access.kubeconfig}\n"
            "Ctrl-C stops it.",
            flush=True,
        )
        while True:
            plane.check()
            time.sleep(0.5)  # supervision tick, not a wait for some state
    except KeyboardInterrupt:
        print("\nstopping kube-apiserver and etcd ...", flush=True)
        return 0
    except (KubeError, ToolMissing) as exc:
        print(f"muster kube-up: {exc}", file=sys.stderr)
        return 1
    finally:
        plane.stop()
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m muster_dev.kube``: see :func:`build_parser`."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
