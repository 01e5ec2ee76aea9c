"""Helpers shared by every test tier: unique names, deadline-bounded polling, HTTP probes,
and running Muster processes the way a user or Kubernetes runs them."""

from __future__ import annotations

import os
import random
import shutil
import socket
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from muster_dev.process import ManagedProcess, free_port
from muster_dev.temporal_server import ServerPorts, TemporalServerConfig
from muster_runtime.polling import PollTimeout, async_wait_until, wait_until

__all__ = [
    "ON_BOTH_SERVERS",
    "REPO",
    "PollTimeout",
    "async_wait_until",
    "copy_from_checkout",
    "free_port",
    "free_port_block",
    "http_get",
    "start_service",
    "unique",
    "wait_until",
]

REPO = Path(__file__).resolve().parent.parent

ON_BOTH_SERVERS = pytest.mark.parametrize(
    "temporal_target", ["dev", "server"], indirect=True, scope="module"
)
"""Run a module's tests on the dev server and on the real server (PostgreSQL): put it in
the module's ``pytestmark``. The conftest's ``temporal_settings``, ``temporal_env`` and
``client`` follow the parameter."""


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports (``muster up --base-port``).

    Chosen below the kernel's ephemeral range, where ``free_port()`` and outgoing
    connections take their ports, so nothing else in the test run lands inside the block
    between this check and the stack binding it.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        base = random.randrange(10_000, low - count)
        if all(_bindable(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between 10000 and {low}")


def copy_from_checkout(dest: Path, entries: tuple[str, ...]) -> Path:
    """Copy files and folders of the checkout (paths relative to it) to ``dest``, as an
    image build or skaffold would see them: no bytecode caches, no egg-info."""
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info")
    for entry in entries:
        source = REPO / entry
        if source.is_dir():
            shutil.copytree(source, dest / entry, ignore=ignore)
        else:
            (dest / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / entry)
    return dest


def throwaway_server_config(state: Path, **extra: Any) -> TemporalServerConfig:
    """A local real Temporal server on a throw-away PostgreSQL, on free ports. Membership
    ports must stay below 32768 (the ephemeral range starts above): a free block there holds
    upstream's layout, 300 ports below the frontend to 6 above."""
    return TemporalServerConfig(
        state_dir=state,
        ports=ServerPorts.block(free_port_block(307) + 300),
        postgres_port=free_port(),
        durable=False,
        **extra,
    )


def unique(prefix: str) -> str:
    """A fresh name for task queues, workflow ids, namespaces."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET a URL; returns (status, body) for any HTTP status, raises if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def start_service(
    module: str,
    env: Mapping[str, str],
    log_path: Path,
    *,
    argv: list[str] | None = None,
) -> ManagedProcess:
    """Start ``python -m module`` (or ``argv``) with the test's environment on top of ours."""
    full_env = dict(os.environ)
    full_env.update(env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    process = ManagedProcess(
        module, argv or [sys.executable, "-m", module], env=full_env, log_path=log_path
    )
    process.start()
    return process
