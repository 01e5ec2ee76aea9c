"""``muster up``: the embedded default stack on one machine.

Starts Temporal (the dev server with SQLite under the state folder and its Web UI, or with
``--temporal server`` a real Temporal server on PostgreSQL, data under the state folder
too), registers Muster's search attributes, then every installed service of the table in
:mod:`muster_dev.services`, waits until each reports ready, prints what runs where,
restarts a service that dies, and on Ctrl-C (or SIGTERM) stops everything it started. A
lock in the state folder makes a second ``muster up`` say that one is already running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from muster_dev.buildid import local_build_id
from muster_dev.process import ManagedProcess, port_in_use
from muster_dev.prometheus import PrometheusConfig, PrometheusServer, prometheus_binary
from muster_dev.services import (
    POLICIES_DIR_VARIABLES,
    SERVICES,
    Local,
    ServiceSpec,
    installed,
    policies_dir,
)
from muster_dev.temporal import DevServer, DevServerConfig, ToolMissing
from muster_dev.temporal_server import ServerPorts, TemporalServer, TemporalServerConfig
from muster_runtime.canary.ping import ping_canary
from muster_runtime.client import connect_with_retry
from muster_runtime.search_attributes import SearchAttributeConflict, ensure_search_attributes
from muster_runtime.settings import Port, TemporalSettings

log = logging.getLogger(__name__)

LOCK_NAME = "muster-up.lock"
STATE_NAME = "muster-up.json"


class StackError(RuntimeError):
    """The stack cannot start; the message says why and what to do."""


class AlreadyRunning(StackError):
    """Another ``muster up`` holds the state folder."""


class StackSettings(BaseSettings):
    """``MUSTER_UP_*`` variables (command-line flags override them)."""

    model_config = SettingsConfigDict(
        env_prefix="MUSTER_UP_", extra="ignore", use_attribute_docstrings=True
    )

    state_dir: Path = Path(".state")
    """Folder for Temporal's data (the dev server's SQLite file, the real server's
    PostgreSQL), service logs, the lock and the state file."""
    temporal: Literal["dev", "server"] = "dev"
    """Which Temporal: 'dev' (`temporal server start-dev`, starts in seconds, Web UI) or
    'server' (the real multi-service server on PostgreSQL, built by `make temporal-server`)."""
    host: str = "127.0.0.1"
    """Address Temporal and the UI bind."""
    temporal_port: Port = 7233
    """Temporal frontend (gRPC) port. The real server also takes the ports +1, +2, +3, +6
    and 300 below each of these and the frontend's for its internal services."""
    ui_port: Port = 8233
    """Temporal Web UI port (the dev server's; the real server has no UI)."""
    postgres_port: Port = 5433
    """PostgreSQL port of the real server (--temporal server), on the same address."""
    base_port: Port = 9100
    """First service port; services get consecutive ports in start-up order."""
    namespace: str = Field(default="default", min_length=1)
    """Temporal namespace the services use (created if not 'default')."""
    services: Annotated[list[str] | None, NoDecode] = None
    """Comma-separated subset of services to run; default all installed."""
    ready_timeout: float = Field(default=90.0, gt=0)
    """Seconds each component may take to become ready."""
    max_restarts: int = Field(default=5, ge=0)
    """How often a crashed service is restarted before the stack gives up on it."""
    examples: Path = Path("examples")
    """Folder of the example files the local services read: ApprovalPolicy files
    (policies/), the people (directory.yaml) and the demo tokens (gateway/tokens.yaml)."""
    schedules: Path | None = Path("examples/schedules")
    """Schedule files applied with `muster apply` once the stack is ready (the scheduling
    worker runs them); empty to load none."""
    prometheus_port: Port | None = None
    """Start a local Prometheus on this port that scrapes every service and evaluates
    Muster's alert rules (Debian's prometheus: `make prometheus`); unset: none."""
    alert_rules: Path = Path("charts/muster/files/alerts.yaml")
    """Prometheus rule file the local Prometheus evaluates (skipped when missing)."""
    build_id: str | None = None
    """Build id the workers run as (Worker Versioning); default the git revision (with a
    hash of uncommitted changes), or a hash of the sources outside a checkout; "none" runs
    them unversioned."""

    @field_validator("schedules", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", "none") else value

    @field_validator("services", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def discover_services() -> list[ServiceSpec]:
    """Every service of the table whose package is installed here, in start-up order."""
    return sorted((s for s in SERVICES if installed(s)), key=lambda s: (s.order, s.name))


@dataclass(frozen=True)
class Planned:
    """A service and the ports the stack gives it (management, and named extra ones)."""

    spec: ServiceSpec
    port: int
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class RunningService:
    """A service process the stack supervises."""

    spec: ServiceSpec
    port: int
    process: ManagedProcess
    extra: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    restart_at: float | None = None
    reads_policies: str | None = None
    """The policies folder the service reads, if it reads one."""

    @property
    def url(self) -> str:
        """Base URL of the service's health and metrics port."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str | None:
        """Base URL of an HTTP service's API."""
        port = self.extra.get("api")
        return f"http://127.0.0.1:{port}" if port else None


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status code of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class LocalStack:
    """The processes of one ``muster up``."""

    settings: StackSettings
    out: Callable[[str], None] = print
    services: list[RunningService] = field(default_factory=list)
    server: DevServer | None = None
    real_server: TemporalServer | None = None
    prometheus: PrometheusServer | None = None
    _lock_file: IO[str] | None = None

    @property
    def state_dir(self) -> Path:
        """The folder holding the SQLite file, logs, lock and state file."""
        return self.settings.state_dir.resolve()

    @property
    def temporal_address(self) -> str:
        """Frontend address for clients (``TEMPORAL_ADDRESS``)."""
        return f"{self.settings.host}:{self.settings.temporal_port}"

    # -- locking -----------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Take the state folder's lock, or explain who holds it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.state_dir / LOCK_NAME).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AlreadyRunning(self._describe_running()) from None
        self._lock_file = handle

    def _describe_running(self) -> str:
        state_file = self.state_dir / STATE_NAME
        detail = ""
        pid: int | None = None
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(state_file.read_text())
            pid = int(state["pid"])
            detail = (
                f" (pid {pid}, Temporal on {state['temporal']['address']}, "
                f"UI {state['temporal'].get('ui') or 'off'})"
            )
        stop = f"`kill -INT {pid}`" if pid else "Ctrl-C in its terminal"
        return (
            f"already running for state folder {self.state_dir}{detail}; "
            f"use that stack, or stop it first with {stop}"
        )

    def release_lock(self) -> None:
        """Drop the lock and the state file."""
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / STATE_NAME).unlink()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # -- planning ------------------------------------------------------------------------

    def plan(self) -> list[Planned]:
        """Which services run on which ports; fails before starting anything."""
        self.check_examples()
        if self.settings.prometheus_port is not None:
            try:
                prometheus_binary()
            except ToolMissing as exc:
                raise StackError(
                    f"--prometheus-port needs Prometheus: {exc}; `make prometheus` installs "
                    "Debian's package (sudo apt-get install prometheus), or leave out "
                    "--prometheus-port"
                ) from None
        specs = discover_services()
        wanted = self.settings.services
        if wanted is not None:
            known = {s.name for s in specs}
            unknown = sorted(set(wanted) - known)
            if unknown:
                raise StackError(
                    f"unknown service(s) {', '.join(unknown)}; "
                    f"installed: {', '.join(sorted(known))}"
                )
            specs = [s for s in specs if s.name in wanted]
        planned: list[Planned] = []
        next_port = self.settings.base_port
        for spec in specs:
            extra = {name: next_port + 1 + i for i, name in enumerate(spec.ports)}
            planned.append(Planned(spec, next_port, extra))
            next_port += 1 + len(spec.ports)
        ports = {
            "Temporal frontend (--temporal-port / MUSTER_UP_TEMPORAL_PORT)": (
                self.settings.temporal_port
            ),
        }
        if self.settings.temporal == "dev":
            ports["Temporal UI (--ui-port / MUSTER_UP_UI_PORT)"] = self.settings.ui_port
        else:
            for what, port in self.server_ports().internal().items():
                ports[f"Temporal server's {what} (from --temporal-port)"] = port
            ports["PostgreSQL (--postgres-port / MUSTER_UP_POSTGRES_PORT)"] = (
                self.settings.postgres_port
            )
        for item in planned:
            ports[f"service {item.spec.name} (--base-port / MUSTER_UP_BASE_PORT)"] = item.port
            for name, port in item.extra.items():
                ports[
                    f"the {name} port of {item.spec.name} (--base-port / MUSTER_UP_BASE_PORT)"
                ] = port
        seen: dict[int, str] = {}
        problems: list[str] = []
        for what, port in ports.items():
            if port in seen:
                problems.append(f"port {port} is wanted by both {seen[port]} and {what}")
            seen[port] = what
            if port_in_use(port, self.settings.host):
                problems.append(f"port {port} for {what} is already in use")
        if problems:
            raise StackError("; ".join(problems))
        return planned

    def check_examples(self) -> None:
        """The example files the local services read are where the settings say."""
        folder = self.settings.examples
        missing = [
            name
            for name in ("policies", "directory.yaml", "gateway/tokens.yaml")
            if not (folder / name).exists()
        ]
        if missing:
            raise StackError(
                f"the local services read example files from {folder.resolve()}, but "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing there: run "
                "muster up in a Muster checkout, or point --examples (MUSTER_UP_EXAMPLES) at a "
                "folder with policies/, directory.yaml and gateway/tokens.yaml"
            )

    # -- start/stop ------------------------------------------------------------------------

    def server_ports(self) -> ServerPorts:
        """The real server's ports, laid out around the frontend's."""
        try:
            return ServerPorts.block(self.settings.temporal_port)
        except ValueError as exc:
            raise StackError(f"--temporal server: {exc}") from None

    @property
    def temporal_name(self) -> str:
        """What runs Temporal, for people."""
        return "Temporal dev server" if self.settings.temporal == "dev" else "Temporal server"

    def start_temporal(self) -> None:
        """Start the chosen Temporal with its data in the state folder."""
        if self.settings.temporal == "server":
            self.start_real_server()
            return
        namespaces = [] if self.settings.namespace == "default" else [self.settings.namespace]
        config = DevServerConfig(
            ip=self.settings.host,
            port=self.settings.temporal_port,
            ui_port=self.settings.ui_port,
            db_file=self.state_dir / "temporal.db",
            namespaces=namespaces,
        )
        self.server = DevServer(config, log_path=self.state_dir / "logs" / "temporal.log")
        self.server.start(timeout=self.settings.ready_timeout)

    def start_real_server(self) -> None:
        """PostgreSQL and the real server, data in ``postgres/`` of the state folder; the
        namespace and Muster's search attributes are registered before this returns."""
        config = TemporalServerConfig(
            state_dir=self.state_dir,
            ports=self.server_ports(),
            postgres_port=self.settings.postgres_port,
            ip=self.settings.host,
            namespaces=[self.settings.namespace],
        )
        try:
            self.real_server = TemporalServer(config, logs=self.state_dir / "logs")
        except ToolMissing as exc:
            raise StackError(str(exc)) from None
        self.real_server.start(timeout=max(self.settings.ready_timeout, 120.0))

    def service_env(self, item: Planned, ports: dict[str, int]) -> dict[str, str]:
        """Environment for one service: Temporal connection, its ports, computed extras."""
        spec, port = item.spec, item.port
        env = dict(os.environ)
        env.update(
            {
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_NAMESPACE": self.settings.namespace,
                f"{spec.env_prefix}HTTP__HOST": "127.0.0.1",
                f"{spec.env_prefix}HTTP__PORT": str(port),
                "MUSTER_STATE_DIR": str(self.state_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name, extra_port in item.extra.items():
            env[f"{spec.env_prefix}{name.upper()}__HOST"] = "127.0.0.1"
            env[f"{spec.env_prefix}{name.upper()}__PORT"] = str(extra_port)
        if spec.env is not None:
            env.update(spec.env(Local(ports, self.settings.examples, self.state_dir)))
        return env

    def launch(self, running: RunningService, env: dict[str, str]) -> None:
        """(Re)start a service process."""
        running.process = ManagedProcess(
            running.spec.name,
            [sys.executable, "-m", running.spec.module],
            env=env,
            log_path=self.state_dir / "logs" / f"{running.spec.name}.log",
        )
        running.process.start()

    def wait_ready(self, running: RunningService, stop: asyncio.Event | None = None) -> None:
        """Block until the service's /readyz answers 200; fail with its log if it dies."""
        deadline = time.monotonic() + self.settings.ready_timeout
        while True:
            if stop is not None and stop.is_set():
                return
            if not running.process.running():
                raise StackError(
                    f"service {running.spec.name} exited with status "
                    f"{running.process.returncode} during start-up; its log "
                    f"({running.process.log_path}) ends with:\n{running.process.tail()}"
                )
            if http_status(running.url + "/readyz") == 200:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"service {running.spec.name} not ready after "
                    f"{self.settings.ready_timeout:.0f}s; {running.url}/readyz and its log "
                    f"({running.process.log_path}) say why:\n{running.process.tail()}"
                )
            time.sleep(0.2)

    def start_prometheus(self, port: int) -> str:
        """Prometheus scraping every running service; returns a line for people."""
        rules = self.settings.alert_rules
        config = PrometheusConfig(
            port=port,
            data_dir=self.state_dir / "prometheus",
            targets={r.spec.name: [f"127.0.0.1:{r.port}"] for r in self.services},
            rule_files=[rules.resolve()] if rules.is_file() else [],
        )
        self.prometheus = PrometheusServer(
            config, log_path=self.state_dir / "logs" / "prometheus.log"
        )
        self.prometheus.start()
        what = f"rules from {rules}" if rules.is_file() else f"no rules ({rules} not found)"
        return f"prometheus: {config.url} scrapes {len(config.targets)} services, {what}"

    def stop_all(self) -> None:
        """Stop Prometheus, services in reverse start order, then the dev server."""
        if self.prometheus is not None:
            self.prometheus.stop()
        for running in reversed(self.services):
            if running.process.running():
                self.out(f"stopping {running.spec.name} ...")
            running.process.stop(grace=40)
        if self.server is not None:
            self.out("stopping Temporal dev server ...")
            self.server.stop()
        if self.real_server is not None:
            self.out("stopping Temporal server and PostgreSQL ...")
            self.real_server.stop()

    def write_state(self) -> None:
        """Record what runs where for other tools (and the second `muster up`)."""
        state = {
            "pid": os.getpid(),
            "started": time.time(),
            "temporal": {
                "kind": self.settings.temporal,
                "address": self.temporal_address,
                "namespace": self.settings.namespace,
                "ui": self.server.config.ui_url if self.server else None,
                "pid": self.temporal_pid(),
                "postgres": (
                    f"{self.settings.host}:{self.settings.postgres_port}"
                    if self.real_server
                    else None
                ),
            },
            "services": {
                r.spec.name: {
                    "pid": r.process.pid,
                    "port": r.port,
                    "url": r.url,
                    "api_url": r.api_url,
                    "ports": r.extra,
                }
                for r in self.services
            },
            "prometheus": self.prometheus.config.url if self.prometheus else None,
            # What `muster apply` needs to publish where the running services read.
            "policies": {
                "dir": str(policies_dir(self.state_dir)),
                "read_by": sorted(r.spec.name for r in self.services if r.reads_policies),
            },
        }
        path = self.state_dir / STATE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)

    def temporal_pid(self) -> int | None:
        """The pid of the Temporal server process, once started."""
        if self.server is not None:
            return self.server.process.pid
        if self.real_server is not None and self.real_server.process is not None:
            return self.real_server.process.pid
        return None

    def pids(self) -> Iterator[int]:
        """Pids of every process the stack started and that still runs."""
        if self.server is not None and self.server.process.pid and self.server.process.running():
            yield self.server.process.pid
        if self.real_server is not None:
            for process in (self.real_server.process, self.real_server.postgres.process):
                if process is not None and process.pid and process.running():
                    yield process.pid
        for running in self.services:
            if running.process.pid and running.process.running():
                yield running.process.pid
        prometheus = self.prometheus.process if self.prometheus is not None else None
        if prometheus is not None and prometheus.pid and prometheus.running():
            yield prometheus.pid

    def summary(self) -> str:
        """What runs where, for people."""
        ui = self.server.config.ui_url if self.server else None
        lines = [
            f"Muster is up (state and logs in {self.state_dir}).",
            f"  {'Temporal frontend':<20} {self.temporal_address:<28} "
            f"export TEMPORAL_ADDRESS={self.temporal_address}",
        ]
        if self.real_server is not None:
            lines += [
                f"  {'Temporal server':<20} the real server on PostgreSQL "
                f"{self.settings.host}:{self.settings.postgres_port} (data in "
                f"{self.state_dir}/postgres)",
                f"  {'Temporal UI':<20} none (the Web UI comes with the dev server; use "
                "`temporal workflow list` or `temporal operator`)",
            ]
        else:
            lines.append(f"  {'Temporal UI':<20} {ui or 'disabled'}")
        if self.prometheus is not None:
            lines.append(f"  {'Prometheus':<20} {self.prometheus.config.url}")
        for r in self.services:
            endpoints = f"{r.url}  (/metrics /healthz /readyz)"
            lines.append(f"  {r.spec.name:<20} {endpoints:<28} {r.spec.description}")
            for name, port in r.extra.items():
                where = f"http://127.0.0.1:{port}" if name == "api" else f"127.0.0.1:{port}"
                lines.append(f"  {r.spec.name + ' ' + name:<20} {where}")
            for label, name, path in r.spec.links:
                if name in r.extra:
                    lines.append(f"  {label:<20} http://127.0.0.1:{r.extra[name]}{path}")
            if r.spec.hint:
                lines.append(f"  {'':<20} {r.spec.hint}")
        lines.append("Press Ctrl-C to stop everything.")
        return "\n".join(lines)

    async def supervise(self, stop: asyncio.Event, envs: dict[str, dict[str, str]]) -> None:
        """Restart services that die (with backoff) until a stop is requested."""
        while not stop.is_set():
            for running in self.services:
                if running.process.running() or stop.is_set():
                    continue
                now = time.monotonic()
                if running.restart_at is None:
                    if running.restarts >= self.settings.max_restarts:
                        continue
                    delay = min(30.0, 2.0**running.restarts)
                    running.restart_at = now + delay
                    self.out(
                        f"service {running.spec.name} exited with status "
                        f"{running.process.returncode}; restarting in {delay:.0f}s. Log tail:\n"
                        f"{running.process.tail(10)}"
                    )
                elif now >= running.restart_at:
                    running.restarts += 1
                    running.restart_at = None
                    self.launch(running, envs[running.spec.name])
                    self.write_state()
                    if running.restarts >= self.settings.max_restarts:
                        self.out(f"service {running.spec.name}: last restart allowed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)


def _apply_installed() -> bool:
    return any(e.name == "apply" for e in entry_points(group="muster.commands"))


def _copy_policies(source: Path, target: Path) -> None:
    # Named as muster apply names what it publishes, so a later apply replaces, not doubles.
    for path in sorted(source.glob("*.y*ml")):
        (target / f"default.{path.name}").write_text(path.read_text())


async def publish_policies(source: Path, target: Path, temporal: TemporalSettings) -> list[str]:
    """Fill the folder the local services read policies from: ``muster apply -f source``
    (it publishes each policy and creates its reminder schedule), or, without the operator
    package, a plain copy of the files. A policy published there before, by ``muster
    apply``, stays (one of the same name is replaced by the example)."""
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    if not await asyncio.to_thread(source.is_dir):
        raise StackError(f"{source} is not a folder of ApprovalPolicy files")
    if not _apply_installed():
        await asyncio.to_thread(_copy_policies, source, target)
        return [f"policies: copied from {source} to {target}"]
    code, lines = await _muster_apply(source, temporal, "--policies-dir", str(target))
    if code != 0:
        raise StackError(f"publishing {source} to {target} failed: " + "; ".join(lines))
    return [f"policies: {line}" for line in lines]


async def _muster_apply(
    folder: Path, temporal: TemporalSettings, *args: str
) -> tuple[int, list[str]]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": temporal.address,
        "TEMPORAL_NAMESPACE": temporal.namespace,
        "OTEL_SDK_DISABLED": "true",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "muster_runtime.cli", "apply", "-f", str(folder), *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    lines = [line for line in output.decode().splitlines() if line.strip()]
    return process.returncode or 0, lines


async def apply_schedules(folder: Path, temporal: TemporalSettings) -> list[str]:
    """``muster apply -f folder`` against the stack (the operator's reconcile core, in its
    own process); its output lines, or why nothing was applied."""
    if not await asyncio.to_thread(folder.is_dir):
        return [f"schedules: {folder} is not a folder; none loaded"]
    if not _apply_installed():
        return ["schedules: `muster apply` is not installed (package muster-operator); none loaded"]
    code, output = await _muster_apply(folder, temporal)
    lines = [f"schedules: {line}" for line in output]
    if code != 0:
        lines.append(f"WARNING: loading {folder} failed (exit {code})")
    return lines


def worker_build_id(setting: str | None, out: Callable[[str], None]) -> str | None:
    """The build id every worker of the stack runs as; None: unversioned."""
    if setting == "none":
        out("workers run unversioned (MUSTER_UP_BUILD_ID=none)")
        return None
    if setting:
        out(f"workers run as build {setting}")
        return setting
    build, source = local_build_id()
    out(f"workers run as build {build} (from {source})")
    return build


async def run_stack(settings: StackSettings, out: Callable[[str], None] = print) -> int:
    """Run the whole stack until Ctrl-C/SIGTERM; returns the exit status."""
    stack = LocalStack(settings, out=out)
    stack.acquire_lock()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        planned = stack.plan()
        out(f"starting {stack.temporal_name} on {stack.temporal_address} ...")
        await asyncio.to_thread(stack.start_temporal)
        for note in stack.real_server.notes if stack.real_server else []:
            out(note)
        temporal = TemporalSettings(address=stack.temporal_address, namespace=settings.namespace)
        client = await connect_with_retry(temporal, max_attempts=20, tracing=False)
        added = await ensure_search_attributes(client, settings.namespace)
        if added:
            out(f"registered search attributes: {', '.join(added)}")
        ports: dict[str, int] = {}
        for item in planned:
            ports[item.spec.name] = item.port
            for name, port in item.extra.items():
                ports[f"{item.spec.name}.{name}"] = port
        envs = {item.spec.name: stack.service_env(item, ports) for item in planned}
        build = worker_build_id(settings.build_id, out)
        for item in planned:
            if item.spec.kind == "worker" and build is not None:
                envs[item.spec.name][f"{item.spec.env_prefix}WORKER__BUILD_ID"] = build
        reading = {
            name: next((env[v] for v in POLICIES_DIR_VARIABLES if v in env), None)
            for name, env in envs.items()
        }
        if any(reading.values()):
            # Before the services start: the approval worker refuses to run without policies.
            examples = settings.examples / "policies"
            target = policies_dir(stack.state_dir)
            for line in await publish_policies(examples, target, temporal):
                out(line)
        for item in planned:
            spec = item.spec
            if stop.is_set():
                break
            out(f"starting {spec.name} on port {item.port} ...")
            reads = reading[spec.name]
            running = RunningService(
                spec, item.port, ManagedProcess(spec.name, []), extra=dict(item.extra),
                reads_policies=reads,
            )  # fmt: skip
            stack.launch(running, envs[spec.name])
            stack.services.append(running)
            stack.write_state()
            await asyncio.to_thread(stack.wait_ready, running, stop)
        if not stop.is_set():
            if any(r.spec.name == "canary" for r in stack.services):
                try:
                    out(await asyncio.wait_for(ping_canary(temporal, "muster up"), timeout=60))
                except Exception as exc:
                    # The stack stays up so the UI and logs can show what is wrong.
                    out(f"WARNING: the canary ping failed ({exc!r}); see {stack.state_dir}/logs")
            if settings.schedules is not None:
                for line in await apply_schedules(settings.schedules, temporal):
                    out(line)
            if settings.prometheus_port is not None:
                out(await asyncio.to_thread(stack.start_prometheus, settings.prometheus_port))
            stack.write_state()
            out(stack.summary())
            await stack.supervise(stop, envs)
        return 0
    except StackError as exc:
        out(f"muster up: {exc}")
        return 1
    except SearchAttributeConflict as exc:
        out(f"muster up: {exc}")
        return 1
    except Exception as exc:
        log.exception("muster up failed")
        out(f"muster up: failed: {exc!r}; logs are in {stack.state_dir}/logs")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(stack.stop_all)
        stack.release_lock()
        out("stopped.")
