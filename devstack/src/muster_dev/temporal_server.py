"""A real Temporal server on PostgreSQL: ``muster up --temporal server`` and the test lane.

PostgreSQL (Debian's package) runs a cluster of its own on a loopback port. Its ``initdb``
and ``postgres`` refuse to run as root, so as root they run in a user namespace of their
own (``unshare --user``) as ``nobody``: PostgreSQL sees an ordinary user that owns its data
folder, while on disk the files stay the caller's, and nothing is added to the system.
``temporal-sql-tool`` creates the two databases and applies the schemas that the server
version embeds (``schema/postgresql/v12``); ``temporal-server`` runs frontend, history,
matching and worker in one process with the ``postgres12`` plugin for the default and the
visibility store. Both binaries come from ``make temporal-server`` (``./bin``, or
``$MUSTER_BIN_DIR``). ``muster up`` keeps the data under ``.state/``; the tests use a
throw-away folder.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    GetSystemInfoRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from muster_dev.kube import repo_root
from muster_dev.process import ManagedProcess, tcp_ready
from muster_dev.temporal import ToolMissing
from muster_runtime.client import connect
from muster_runtime.polling import async_wait_until, wait_until
from muster_runtime.search_attributes import ensure_search_attributes
from muster_runtime.settings import TemporalSettings

T = TypeVar("T")

POSTGRES_USER = "temporal"
MAX_MEMBERSHIP_PORT = 32767
DATABASES = {
    "temporal": "postgresql/v12/temporal",
    "temporal_visibility": "postgresql/v12/visibility",
}
"""The two databases and the schema (embedded in temporal-sql-tool) each one gets."""

# Dynamic config of every server this module starts. Worker Deployments (Worker Versioning)
# are on by default in this server version (system.enableDeploymentVersions and
# frontend.workerVersioningWorkflowAPIs default to true); they are named here so a change of
# default cannot switch them off unnoticed. A draining version refreshes its status every 3
# minutes by default: 10 seconds lets a local rollout see a version drain while one waits.
# Not system.forceSearchAttributesCacheRefreshOnRead: it reads the namespace from PostgreSQL,
# under one lock, on every search-attribute lookup (each listed schedule, each start), and
# from about 4,000 schedules on a list exceeds the persistence rate limit. New attributes are
# usable after the namespace cache refreshes (2 s); ensure_search_attributes waits for that.
# Visibility calls (list, count) are limited per namespace and frontend to 10 per second by
# default, and a throttled call is retried by the SDK about a second later: a gateway that
# lists inboxes back to back stalls. Muster's clusters want more (docs/operations.md).
DYNAMIC_CONFIG: dict[str, Any] = {
    "frontend.namespaceRPS.visibility": 100,
    "system.enableDeploymentVersions": True,
    "frontend.workerVersioningWorkflowAPIs": True,
    "matching.wv.VersionDrainageStatusRefreshInterval": "10s",
    "matching.wv.VersionDrainageStatusVisibilityGracePeriod": "30s",
}


def bin_dir() -> Path:
    """Where ``make temporal-server`` puts the binaries."""
    explicit = os.environ.get("MUSTER_BIN_DIR")
    if explicit:
        return Path(explicit)
    return (repo_root() or Path.cwd()) / "bin"


def built_tool(name: str) -> Path:
    """``temporal-server`` or ``temporal-sql-tool`` from ``./bin``."""
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolMissing(
            f"`{name}` not found in {path.parent}: run `make temporal-server` to build it from "
            "go.temporal.io/server (or set MUSTER_BIN_DIR to where it is)"
        )
    return path


def postgres_bin_dir() -> Path:
    """PostgreSQL's programs: ``$MUSTER_POSTGRES_BIN_DIR``, else Debian's newest version."""
    explicit = os.environ.get("MUSTER_POSTGRES_BIN_DIR")
    candidates = (
        [Path(explicit)]
        if explicit
        else sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
            reverse=True,
        )
    )
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "postgres", "pg_isready")):
            return folder
    where = explicit or "/usr/lib/postgresql/*/bin"
    raise ToolMissing(
        f"PostgreSQL's initdb and postgres not found in {where}: run `make postgresql` "
        "(Debian's postgresql package), or set MUSTER_POSTGRES_BIN_DIR to a PostgreSQL 12+ "
        "bin folder"
    )


def unprivileged(argv: Sequence[str]) -> list[str]:
    """``argv`` as PostgreSQL accepts it: unchanged for ordinary users; for root, inside a
    user namespace of its own as ``nobody`` (files it writes stay root's on disk)."""
    if os.geteuid() != 0:
        return list(argv)
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ToolMissing(
            "PostgreSQL refuses to run as root, and `unshare` (util-linux), which runs it as "
            "nobody in a user namespace, is missing: install util-linux or run as another user"
        )
    nobody = "65534"
    return [unshare, "--user", f"--map-user={nobody}", f"--map-group={nobody}", "--", *argv]


@dataclass
class PostgresConfig:
    """A PostgreSQL cluster of Muster's own, on a loopback port."""

    data_dir: Path
    port: int
    ip: str = "127.0.0.1"
    durable: bool = True
    """False for throw-away clusters: no fsync, which makes tests faster and a power cut
    fatal to the data."""


class Postgres:
    """One ``postgres`` process over its own data folder, created on first start."""

    def __init__(self, config: PostgresConfig, *, log_path: Path | None = None) -> None:
        self.config = config
        self.bindir = postgres_bin_dir()
        self.log_path = log_path
        self.process: ManagedProcess | None = None

    @property
    def initialized(self) -> bool:
        """Whether the data folder holds a cluster already."""
        return (self.config.data_dir / "PG_VERSION").is_file()

    def init(self) -> None:
        """``initdb`` with a ``temporal`` superuser that loopback clients reach without a
        password (the cluster only listens on loopback)."""
        data = self.config.data_dir
        data.parent.mkdir(parents=True, exist_ok=True)
        argv = unprivileged(
            [
                str(self.bindir / "initdb"), "-D", str(data), "-U", POSTGRES_USER,
                "--auth=trust", "-E", "UTF8", "--no-locale", "--no-instructions",
            ]
        )  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb {data} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def argv(self) -> list[str]:
        """The ``postgres`` command line: TCP on loopback only, no Unix socket (its default
        folder belongs to the system's PostgreSQL)."""
        c = self.config
        argv = [
            str(self.bindir / "postgres"), "-D", str(c.data_dir),
            "-c", f"listen_addresses={c.ip}", "-p", str(c.port),
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200",
            "-c", "shared_buffers=64MB",
        ]  # fmt: skip
        if not c.durable:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                argv += ["-c", setting]
        return unprivileged(argv)

    def ready(self) -> bool:
        """Whether the server accepts connections (not just the port: start-up refuses)."""
        c = self.config
        argv = [
            str(self.bindir / "pg_isready"), "-q", "-h", c.ip, "-p", str(c.port),
            "-U", POSTGRES_USER, "-d", "postgres",
        ]  # fmt: skip
        result = subprocess.run(argv, check=False)
        return result.returncode == 0

    def start(self, timeout: float = 60.0) -> None:
        """Initialise the cluster if needed, start it and wait until it accepts connections."""
        if not self.initialized:
            self.init()
        # A cluster that a SIGKILLed run left behind keeps its pid file; postgres removes a
        # stale one itself when that pid is gone.
        self.process = ManagedProcess("postgres", self.argv(), log_path=self.log_path)
        self.process.start()
        process = self.process

        def up() -> bool:
            if not process.running():
                raise RuntimeError(
                    f"postgres exited with status {process.returncode}:\n{process.tail()}"
                )
            return self.ready()

        try:
            wait_until(
                up, what=f"PostgreSQL on {self.config.ip}:{self.config.port}", timeout=timeout
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown (SIGINT: open sessions are ended, the data is checkpointed)."""
        if self.process is None:
            return
        self.process.signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            if self.process.popen is not None:
                self.process.popen.wait(timeout=30)
        self.process.stop(grace=5)


@dataclass(frozen=True)
class ServerTLS:
    """TLS on the frontend: the server's certificate, and the CA whose client certificates
    it requires (mTLS) when ``client_ca`` is set."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class JwtAuth:
    """Temporal's default authorizer and claim mapper: callers present a JWT (an API key)
    signed by a key that ``jwks_url`` publishes, with ``permissions`` like
    ``default:write`` (roles: read, write, worker, admin; namespace
    ``temporal-system`` for the whole cluster)."""

    jwks_url: str


@dataclass
class ServerPorts:
    """Every port of the four services; the frontend's gRPC port is the one clients use."""

    frontend: int
    history: int
    matching: int
    worker: int
    frontend_membership: int
    history_membership: int
    matching_membership: int
    worker_membership: int
    internal_frontend: int
    internal_frontend_membership: int
    frontend_http: int | None = None
    metrics: int | None = None

    def __post_init__(self) -> None:
        # The SQL schema keeps each membership port in a smallint column: a port above
        # 32767 makes the server fail to join its own ring.
        high = {
            name: port
            for name, port in self.internal().items()
            if name.endswith("membership") and port > MAX_MEMBERSHIP_PORT
        }
        if high:
            listed = ", ".join(f"{name} {port}" for name, port in high.items())
            raise ValueError(
                f"membership ports must be at most {MAX_MEMBERSHIP_PORT} (the SQL schema keeps "
                f"them as smallint): {listed}; choose a lower Temporal port"
            )

    @classmethod
    def block(cls, frontend: int) -> ServerPorts:
        """Upstream's layout around a frontend port: history +1, matching +2, worker +6,
        membership ports 300 below each, the internal frontend +3 (and -297)."""
        return cls(
            frontend=frontend,
            history=frontend + 1,
            matching=frontend + 2,
            worker=frontend + 6,
            frontend_membership=frontend - 300,
            history_membership=frontend - 299,
            matching_membership=frontend - 298,
            worker_membership=frontend - 294,
            internal_frontend=frontend + 3,
            internal_frontend_membership=frontend - 297,
        )

    def internal(self) -> dict[str, int]:
        """Ports besides the frontend's, by what they are for."""
        ports = {
            "history": self.history,
            "matching": self.matching,
            "worker": self.worker,
            "frontend membership": self.frontend_membership,
            "history membership": self.history_membership,
            "matching membership": self.matching_membership,
            "worker membership": self.worker_membership,
            "internal frontend": self.internal_frontend,
            "internal frontend membership": self.internal_frontend_membership,
        }
        if self.frontend_http:
            ports["frontend HTTP"] = self.frontend_http
        if self.metrics:
            ports["metrics"] = self.metrics
        return ports


@dataclass
class TemporalServerConfig:
    """Where the server and its PostgreSQL listen and keep their state."""

    state_dir: Path
    """Holds ``postgres/`` (the data), ``temporal-server/`` (config files) and logs."""
    ports: ServerPorts
    postgres_port: int
    ip: str = "127.0.0.1"
    namespaces: list[str] = field(default_factory=lambda: ["default"])
    register_search_attributes: bool = True
    history_shards: int = 4
    retention: timedelta = timedelta(days=3)
    durable: bool = True
    log_level: str = "warn"
    tls: ServerTLS | None = None
    auth: JwtAuth | None = None
    dynamic_config: dict[str, Any] = field(default_factory=lambda: dict(DYNAMIC_CONFIG))

    @property
    def address(self) -> str:
        """``host:port`` of the frontend gRPC service."""
        return f"{self.ip}:{self.ports.frontend}"

    @property
    def internal_frontend(self) -> bool:
        """With TLS or authorization on the frontend, the server's own worker service talks
        to an internal frontend instead (plain, no authorizer, loopback only)."""
        return self.tls is not None or self.auth is not None

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "temporal-server"

    @property
    def services(self) -> list[str]:
        """The services the one process runs."""
        services = ["frontend", "history", "matching", "worker"]
        if self.internal_frontend:
            services.insert(1, "internal-frontend")
        return services

    def _store(self, database: str, max_conns: int) -> dict[str, Any]:
        return {
            "sql": {
                "pluginName": "postgres12",
                "databaseName": database,
                "connectAddr": f"{self.ip}:{self.postgres_port}",
                "connectProtocol": "tcp",
                "user": POSTGRES_USER,
                "password": "",
                "maxConns": max_conns,
                "maxIdleConns": max_conns,
                "maxConnLifetime": "1h",
            }
        }

    def _rpc(self, grpc: int, membership: int, http: int | None = None) -> dict[str, Any]:
        rpc: dict[str, Any] = {"grpcPort": grpc, "membershipPort": membership, "bindOnIP": self.ip}
        if http:
            rpc["httpPort"] = http
        return {"rpc": rpc}

    def server_config(self) -> dict[str, Any]:
        """The server's configuration file, as data."""
        p = self.ports
        services = {
            "frontend": self._rpc(p.frontend, p.frontend_membership, p.frontend_http),
            "history": self._rpc(p.history, p.history_membership),
            "matching": self._rpc(p.matching, p.matching_membership),
            "worker": self._rpc(p.worker, p.worker_membership),
        }
        if self.internal_frontend:
            services["internal-frontend"] = self._rpc(
                p.internal_frontend, p.internal_frontend_membership
            )
        global_: dict[str, Any] = {
            "membership": {"maxJoinDuration": "30s", "broadcastAddress": self.ip},
        }
        if p.metrics:
            global_["metrics"] = {
                "prometheus": {
                    "framework": "tally",
                    "timerType": "histogram",
                    "listenAddress": f"{self.ip}:{p.metrics}",
                }
            }
        if self.tls is not None:
            server: dict[str, Any] = {"certFile": str(self.tls.cert), "keyFile": str(self.tls.key)}
            if self.tls.client_ca is not None:
                server["requireClientAuth"] = True
                server["clientCaFiles"] = [str(self.tls.client_ca)]
            global_["tls"] = {"frontend": {"server": server}}
        if self.auth is not None:
            global_["authorization"] = {
                "jwtKeyProvider": {"keySourceURIs": [self.auth.jwks_url], "refreshInterval": "1m"},
                "permissionsClaimName": "permissions",
                "authorizer": "default",
                "claimMapper": "default",
            }
        return {
            "log": {"stdout": True, "level": self.log_level, "format": "json"},
            "persistence": {
                "defaultStore": "postgres-default",
                "visibilityStore": "postgres-visibility",
                "numHistoryShards": self.history_shards,
                "datastores": {
                    "postgres-default": self._store("temporal", 20),
                    "postgres-visibility": self._store("temporal_visibility", 10),
                },
            },
            "global": global_,
            "services": services,
            "clusterMetadata": {
                "enableGlobalNamespace": False,
                "failoverVersionIncrement": 10,
                "masterClusterName": "active",
                "currentClusterName": "active",
                "clusterInformation": {
                    "active": {
                        "enabled": True,
                        "initialFailoverVersion": 1,
                        "rpcName": "frontend",
                        "rpcAddress": self.address,
                    }
                },
            },
            "dcRedirectionPolicy": {"policy": "noop"},
            "dynamicConfigClient": {
                "filepath": str(self.config_dir / "dynamicconfig.yaml"),
                "pollInterval": "10s",
            },
        }

    def dynamic_config_file(self) -> dict[str, Any]:
        """The dynamic config file, as data (every key unconstrained)."""
        return {key: [{"value": value}] for key, value in self.dynamic_config.items()}


class TemporalServer:
    """PostgreSQL plus ``temporal-server`` on top of it, with Muster's namespace and search
    attributes in place once :meth:`start` returns."""

    def __init__(self, config: TemporalServerConfig, *, logs: Path | None = None) -> None:
        self.config = config
        self.logs = logs or config.state_dir / "logs"
        self.server_binary = built_tool("temporal-server")
        self.sql_tool = built_tool("temporal-sql-tool")
        self.postgres = Postgres(
            PostgresConfig(
                data_dir=config.state_dir / "postgres",
                port=config.postgres_port,
                ip=config.ip,
                durable=config.durable,
            ),
            log_path=self.logs / "postgres.log",
        )
        self.process: ManagedProcess | None = None
        self.notes: list[str] = []
        """What the last :meth:`start` registered, for people."""

    # -- database ---------------------------------------------------------------------------

    def _sql_tool(self, database: str, *args: str) -> str:
        argv = [
            str(self.sql_tool), "--plugin", "postgres12", "--ep", self.config.ip,
            "-p", str(self.config.postgres_port), "-u", POSTGRES_USER, "--pw", "",
            "--db", database, *args,
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"temporal-sql-tool {' '.join(args)} on {database} failed "
                f"({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result.stdout + result.stderr

    def _databases(self) -> set[str]:
        argv = [
            str(self.postgres.bindir / "psql"), "-h", self.config.ip,
            "-p", str(self.config.postgres_port), "-U", POSTGRES_USER, "-d", "postgres",
            "-tAc", "SELECT datname FROM pg_database",
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=True)
        return {line.strip() for line in result.stdout.splitlines() if line.strip()}

    def prepare_databases(self) -> None:
        """Create the databases on first use and bring both schemas to this server version
        (``update-schema`` applies only what is missing, so a version bump upgrades the
        kept data)."""
        existing = self._databases()
        for database, schema in DATABASES.items():
            if database not in existing:
                self._sql_tool(database, "create-database")
                self._sql_tool(database, "setup-schema", "-v", "0.0")
            self._sql_tool(database, "update-schema", "--schema-name", schema)

    # -- server -------------------------------------------------------------------------------

    def write_config(self) -> Path:
        """Write the server's config and dynamic config; the config file's path."""
        folder = self.config.config_dir
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dynamicconfig.yaml").write_text(
            yaml.safe_dump(self.config.dynamic_config_file(), sort_keys=True)
        )
        path = folder / "config.yaml"
        path.write_text(
            "# Written by muster_dev.temporal_server at every start; edits are overwritten.\n"
            + yaml.safe_dump(self.config.server_config(), sort_keys=False)
        )
        return path

    def argv(self, config_file: Path) -> list[str]:
        argv = [str(self.server_binary), "--config-file", str(config_file)]
        if self.config.auth is None:
            argv.append("--allow-no-auth")
        argv.append("start")
        for service in self.config.services:
            argv += ["--service", service]
        return argv

    def start_server(self, timeout: float = 90.0) -> None:
        """Start ``temporal-server`` (PostgreSQL must be up) and wait for its frontend port."""
        config_file = self.write_config()
        self.process = ManagedProcess(
            "temporal-server", self.argv(config_file), log_path=self.logs / "temporal-server.log"
        )
        self.process.start()
        process = self.process

        def up() -> bool:
            if not process.running():
                raise RuntimeError(
                    f"temporal-server exited with status {process.returncode}:\n{process.tail()}"
                )
            return tcp_ready(self.config.ip, self.config.ports.frontend)

        wait_until(up, what=f"Temporal server frontend on {self.config.address}", timeout=timeout)

    def stop_server(self) -> None:
        """Stop ``temporal-server`` cleanly (SIGTERM; it leaves the membership ring)."""
        if self.process is not None:
            self.process.stop(grace=30)

    def kill_server(self) -> None:
        """SIGKILL ``temporal-server`` (PostgreSQL keeps running and keeps the state)."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            self.process.stop(grace=5)

    def start(self, admin: TemporalSettings | None = None, timeout: float = 120.0) -> None:
        """PostgreSQL, the schemas, the server; then the namespaces and search attributes
        (through ``admin``, default a plain connection to the frontend)."""
        deadline = time.monotonic() + timeout
        self.postgres.start(timeout=timeout)
        try:
            self.prepare_databases()
            self.start_server(timeout=max(1.0, deadline - time.monotonic()))
            self.notes = _run_coroutine(
                lambda: self.prepare(admin, timeout=max(1.0, deadline - time.monotonic()))
            )
        except BaseException:
            self.stop()
            raise

    def restart_server(self, *, kill: bool = False, timeout: float = 90.0) -> None:
        """Stop (or SIGKILL) the server and start it again on the same data and ports."""
        if kill:
            self.kill_server()
        else:
            self.stop_server()
        self.start_server(timeout=timeout)

    def stop(self) -> None:
        """Stop the server, then PostgreSQL."""
        self.stop_server()
        self.postgres.stop()

    # -- namespaces ---------------------------------------------------------------------------

    def settings(self, namespace: str = "default") -> TemporalSettings:
        """Plain client settings for this server (no TLS, no API key)."""
        return TemporalSettings(address=self.config.address, namespace=namespace)

    async def prepare(
        self, admin: TemporalSettings | None = None, timeout: float = 60.0
    ) -> list[str]:
        """Register the namespaces that are missing and Muster's search attributes in each;
        return once each namespace accepts calls, with a line for each thing registered."""
        settings = admin or self.settings()

        async def connected() -> Client | None:
            if self.process is not None and not self.process.running():
                raise RuntimeError(
                    f"temporal-server exited with status {self.process.returncode}:\n"
                    + self.process.tail()
                )
            return await _try_connect(settings)

        client = await async_wait_until(
            connected,
            what=f"Temporal server at {self.config.address} answering",
            timeout=timeout,
        )
        notes = []
        for namespace in self.config.namespaces:
            if await ensure_namespace(client, namespace, self.config.retention, timeout=timeout):
                notes.append(f"registered namespace {namespace!r}")
            if self.config.register_search_attributes:
                added = await ensure_search_attributes(client, namespace, timeout=timeout)
                if added:
                    notes.append(
                        f"registered search attributes in {namespace!r}: {', '.join(added)}"
                    )
        return notes

    def memory_bytes(self) -> dict[str, int]:
        """Memory (PSS) of the server and of PostgreSQL with all its processes, in bytes."""
        sizes: dict[str, int] = {}
        for name, process in (
            ("temporal-server", self.process),
            ("postgres", self.postgres.process),
        ):
            if process is not None and process.pid is not None and process.running():
                sizes[name] = _tree_pss(process.pid)
        return sizes


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end from synchronous code, also when this thread already runs
    an event loop (then in a thread of its own, blocking the caller as any sync call does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _try_connect(settings: TemporalSettings) -> Client | None:
    try:
        client = await connect(settings, tracing=False)
        await client.workflow_service.get_system_info(GetSystemInfoRequest())
    except (RPCError, RuntimeError, ConnectionError):
        return None
    return client


async def ensure_namespace(
    client: Client, namespace: str, retention: timedelta, *, timeout: float = 60.0
) -> bool:
    """Register ``namespace`` unless it exists, and wait until the frontend serves it (the
    namespace cache refreshes every few seconds). True when it was registered now."""
    added = False
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        request = RegisterNamespaceRequest(namespace=namespace)
        request.workflow_execution_retention_period.FromTimedelta(retention)
        with contextlib.suppress(RPCError):  # registered meanwhile by someone else: fine
            await client.workflow_service.register_namespace(request)
        added = True

    async def served() -> bool:
        try:
            await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace)
            )
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace)
            )
            await client.list_workflows(query="", page_size=1).__anext__()
        except StopAsyncIteration:
            return True
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.UNAVAILABLE):
                return False
            raise
        return True

    await async_wait_until(served, what=f"namespace {namespace!r} served", timeout=timeout)
    return added


def _tree_pss(pid: int) -> int:
    """Proportional set size of ``pid`` and all its descendants, in bytes. PostgreSQL's
    backends are children in sessions of their own, and share its buffers: PSS counts each
    shared page once overall, where adding up RSS would count it per backend."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for member in tree:
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total
