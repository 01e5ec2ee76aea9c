"""Supervised child processes that never outlive their parent.

Each child runs in its own session (process group) so stopping it also stops whatever it
spawned; on Linux it also gets SIGTERM if the supervising process dies, so even a
SIGKILLed supervisor leaves no orphans behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A preexec hook asking the kernel to send ``sig`` to the child when we die."""

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        libc_name = ctypes.util.find_library("c")
        if libc_name and sys.platform.startswith("linux"):
            libc = ctypes.CDLL(libc_name, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)

    return hook


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections (or holds the bind) on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers themselves bind (Go and uvicorn set SO_REUSEADDR): connections of a
        # stack that just stopped linger in TIME_WAIT for a minute and must not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def tcp_ready(host: str, port: int) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class ManagedProcess:
    """A child process with its output in a log file, stopped by process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
        death_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        """``death_signal`` reaches the child if this process dies without stopping it:
        SIGTERM lets it shut down cleanly, SIGKILL suits throw-away state."""
        self.name = name
        self.death_signal = death_signal
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid once started."""
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        """Start the child in a new session with output to its log file."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
        log.debug("starting %s: %s", self.name, " ".join(self.argv))
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file if self._log_file else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(self.death_signal),  # noqa: PLW1509 - only calls prctl
        )
        if self._log_file is not None:
            # The child has its own descriptor for the log; ours is no longer needed.
            self._log_file.close()
            self._log_file = None

    def running(self) -> bool:
        """True while the child has not exited."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status once exited (negative: killed by that signal)."""
        return self.popen.poll() if self.popen else None

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child's whole process group."""
        if self.running():
            self._signal_group(sig)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL. Returns the status."""
        if self.popen is None:
            return None
        if self.running():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, grace)
        # Whatever is left in the group (the child or its children) is killed now.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        """The last lines of the child's log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def wait_for_exit(proc: ManagedProcess, timeout: float) -> int | None:
    """Wait for the child to exit on its own; its status, or None if it is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            return proc.returncode
        time.sleep(0.05)
    return None
