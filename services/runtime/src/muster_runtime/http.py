"""HTTP services (backends, gateway): an ASGI app served by uvicorn inside a ServiceProcess.

The API listens on its own port (``<prefix>API__PORT``); health, readiness and metrics stay
on the management port every Muster process has. Signals are the ServiceProcess's: SIGTERM
makes the API report not ready, keep serving for ``shutdown_delay_seconds`` (while a load
balancer or kube-proxy stops sending it new connections; every answer then closes its
connection, so keep-alive clients reconnect elsewhere), then stop accepting, finish
in-flight requests, and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

import uvicorn
from pydantic import BaseModel, ConfigDict, Field

from muster_runtime.service import ServiceProcess, StartupError, fail_startup
from muster_runtime.settings import (
    Port,
    ServiceSettings,
    SettingsError,
    TemporalSettings,
    load_settings,
)

ASGIApp = Callable[..., Awaitable[None]]

log = logging.getLogger(__name__)


class ApiSettings(BaseModel):
    """Where an HTTP service's API listens."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    host: str = "0.0.0.0"  # noqa: S104 - the API is meant to be reached from outside the pod
    """Address the API binds."""
    port: Port = 8080
    """API port."""
    shutdown_grace_seconds: float = 20.0
    """After SIGTERM (and the delay below), in-flight requests get this long to finish."""
    shutdown_delay_seconds: float = Field(default=0.0, ge=0, le=120)
    """After SIGTERM, keep accepting requests this long before closing the listener: the
    time whoever routes to this process takes to stop sending it new connections (on
    Kubernetes, kube-proxy dropping a terminating pod; the chart sets the gateway's from
    gateway.shutdownDelaySeconds)."""


class HttpServiceSettings(ServiceSettings):
    """Settings of a process that serves an HTTP API."""

    api: ApiSettings = ApiSettings()
    """HTTP API."""


class _CloseWhenDraining:
    """ASGI middleware: once ``draining`` is set, every HTTP answer says
    ``Connection: close``, so a keep-alive client's next request opens a new connection
    (which goes to a pod that is not stopping) instead of reusing one about to close."""

    def __init__(self, app: Any, draining: asyncio.Event) -> None:
        self.app = app
        self.draining = draining

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing_send(message: Any) -> None:
            if message["type"] == "http.response.start" and self.draining.is_set():
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing_send)


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling (the ServiceProcess owns the signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int, variable: str) -> socket.socket:
    """Bind the API socket up front, so a busy port is a clear error, not a log line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc}"
        raise StartupError(f"{variable}={port}: binding {host}:{port} {reason}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve_asgi(
    process: ServiceProcess,
    app: Any,
    api: ApiSettings,
    *,
    variable: str,
    check: str = "api",
) -> int:
    """Serve ``app`` until a stop is requested; returns the exit status."""
    sock = bind(api.host, api.port, variable)
    draining = asyncio.Event()
    config = uvicorn.Config(
        _CloseWhenDraining(app, draining),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(api.shutdown_grace_seconds),
        proxy_headers=True,
        server_header=False,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():
        error = task.exception()
        raise StartupError(f"the API did not start: {error!r}")
    process.health.set(check, ok=True, detail=f"serving on {api.host}:{api.port}")
    stop = asyncio.create_task(process.stop_requested.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if task.done():
        stop.cancel()
        status = 1
        process.health.set(check, ok=False, detail=f"API stopped: {task.exception()!r}")
    else:
        process.health.set(check, ok=False, detail="draining")
        draining.set()
        if api.shutdown_delay_seconds:
            log.info(
                "stopping: serving %.1fs more while routes to this process are removed",
                api.shutdown_delay_seconds,
            )
            # The process's own drain period (like kube-apiserver's shutdown delay), not a
            # wait for some state: nothing tells a pod when every proxy has updated.
            await asyncio.sleep(api.shutdown_delay_seconds)
        server.should_exit = True
        with contextlib.suppress(SystemExit):
            await task
    sock.close()
    return status


SettingsT = TypeVar("SettingsT", bound=HttpServiceSettings)


def http_main(
    service: str,
    settings_cls: type[SettingsT],
    build: Callable[[ServiceProcess, SettingsT, TemporalSettings | None], Awaitable[Any]],
    *,
    needs_temporal: bool = False,
    extra_checks: Sequence[str] = (),
) -> int:
    """Console entry point of an HTTP service; returns the process exit status.

    ``build`` gets the running process (to connect to Temporal, register checks, spawn
    helpers) and returns the ASGI app.
    """
    problems: list[str] = []
    temporal: TemporalSettings | None = None
    try:
        settings = load_settings(settings_cls)
    except SettingsError as exc:
        problems += exc.problems
    if needs_temporal:
        try:
            temporal = load_settings(TemporalSettings)
        except SettingsError as exc:
            problems += exc.problems
    if problems:
        return fail_startup(service, problems)
    variable = f"{settings_cls.model_config.get('env_prefix', '')}API__PORT"

    async def run() -> int:
        checks = ("api", *(("temporal",) if needs_temporal else ()), *extra_checks)
        async with ServiceProcess(service, settings, checks=checks) as process:
            app = await build(process, settings, temporal)
            if process.stop_requested.is_set():
                return 0
            return await serve_asgi(process, app, settings.api, variable=variable)

    try:
        return asyncio.run(run())
    except StartupError as exc:
        return fail_startup(service, [str(exc)])
