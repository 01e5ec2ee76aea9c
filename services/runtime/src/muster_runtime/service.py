"""Process scaffolding shared by every Muster service.

:class:`ServiceProcess` sets up logging, tracing, metrics and the health server, turns
SIGTERM/SIGINT into a stop request, and connects to Temporal with retries while reporting
readiness. :func:`run_worker` runs a Temporal worker inside it and drains in-flight
activities on stop within the configured grace period. :func:`worker_main` is the console
entry point of a worker service: it turns bad settings into one clear line per problem
and exit status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from muster_runtime import __version__
from muster_runtime.client import connect_with_retry
from muster_runtime.health import Health, HealthServer
from muster_runtime.logs import configure_logging
from muster_runtime.metrics import MetricsHub
from muster_runtime.sandbox import muster_workflow_runner
from muster_runtime.settings import (
    ServiceSettings,
    SettingsError,
    TemporalSettings,
    WorkerServiceSettings,
    load_settings,
    pod_identity,
)
from muster_runtime.telemetry import TelemetryConfigError, build_resource, setup_tracing
from muster_runtime.versioning import WorkerVersion, worker_behavior

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The process cannot start; the message says what to change."""


@dataclass
class WorkerDefinition:
    """What a worker service registers, plus hooks to close the clients its activities hold."""

    workflows: Sequence[type] = ()
    activities: Sequence[Callable[..., Any]] = ()
    on_close: Sequence[Callable[[], Awaitable[None]]] = field(default_factory=list)
    worker_options: Mapping[str, Any] = field(default_factory=dict)
    # Long-running helpers (a gauge refresher, say), cancelled when the process stops.
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


class ServiceProcess:
    """One Muster process: telemetry, metrics, health server, signals, Temporal connection."""

    def __init__(
        self,
        service: str,
        settings: ServiceSettings,
        *,
        version: str = __version__,
        build_id: str | None = None,
        worker_deployment: str | None = None,
        install_signal_handlers: bool = True,
        configure_process_logging: bool = True,
        checks: Sequence[str] = ("temporal",),
    ) -> None:
        self.service = service
        self.settings = settings
        self.version = version
        self.build_id = build_id
        self.worker_deployment = worker_deployment
        self.health = Health()
        # Every check the process will report is declared now, so readiness cannot pass
        # before the last component (say, the worker) has even started.
        for check in checks:
            self.health.register(check)
        self.stop_requested = asyncio.Event()
        self.metrics: MetricsHub | None = None
        self.server: HealthServer | None = None
        self._install_signals = install_signal_handlers
        self._configure_logging = configure_process_logging
        self._tasks: list[asyncio.Task[Any]] = []
        self._tracer: Any = None

    async def __aenter__(self) -> Self:
        if self._configure_logging:
            configure_logging(
                self.service, level=self.settings.log.level, fmt=self.settings.log.format
            )
        try:
            self._tracer = setup_tracing(build_resource(f"muster-{self.service}", self.version))
        except TelemetryConfigError as exc:
            raise StartupError(str(exc)) from None
        self.metrics = MetricsHub(
            service=self.service,
            version=self.version,
            build_id=self.build_id,
            worker_deployment=self.worker_deployment,
            readiness=self.health.readiness,
        )
        try:
            self.server = HealthServer(
                self.settings.http.host, self.settings.http.port, self.health, self.metrics.render
            )
        except OSError as exc:
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"failed: {exc}"
            variable = f"{type(self.settings).model_config.get('env_prefix', '')}HTTP__PORT"
            raise StartupError(
                f"{variable}={self.settings.http.port}: binding "
                f"{self.settings.http.host}:{self.settings.http.port} {reason}; choose another port"
            ) from None
        self.server.start()
        if self._install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, sig)
        self.spawn(self.health.heartbeat())
        self.spawn(self.metrics.drain_forever())
        log.info(
            "%s %s started; health and metrics on port %d",
            self.service,
            self.version,
            self.server.port,
        )
        return self

    def request_stop(self, sig: signal.Signals | None = None) -> None:
        """Begin a graceful stop (signal handler, or tests)."""
        if not self.stop_requested.is_set():
            log.info("stop requested%s", f" by {sig.name}" if sig else "")
            self.health.set_draining()
            self.stop_requested.set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background task that is cancelled when the process stops."""
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        return task

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.health.set_draining()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._install_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if self._tracer is not None:
            await asyncio.to_thread(self._tracer.force_flush, 5000)
            self._tracer.shutdown()
        if self.server is not None:
            self.server.stop()
        log.info("%s stopped", self.service)

    async def until_stopped(self, aw: Awaitable[Any]) -> Any:
        """Await ``aw``; if a stop is requested first, cancel it and return None."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self.stop_requested.wait())
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            stop.cancel()
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return None

    async def connect_temporal(
        self, temporal: TemporalSettings, *, identity: str | None = None
    ) -> Client | None:
        """Connect with retries, reporting the ``temporal`` readiness check; None if stopped.

        Afterwards a monitor keeps the check current with the frontend's health endpoint.
        """
        assert self.metrics is not None, "use inside `async with ServiceProcess(...)`"
        self.health.register("temporal", f"connecting to {temporal.address}")

        def failed(error: Exception, attempt: int, wait: float) -> None:
            self.health.set(
                "temporal",
                ok=False,
                detail=f"cannot reach {temporal.address} (attempt {attempt}, retry in "
                f"{wait:.1f}s): {error}",
            )

        client: Client | None = await self.until_stopped(
            connect_with_retry(
                temporal, on_failure=failed, runtime=self.metrics.runtime, identity=identity
            )
        )
        if client is None:
            return None
        self.health.set("temporal", ok=True, detail=f"connected to {temporal.address}")
        self.spawn(self._monitor_temporal(client, temporal.address))
        return client

    async def _monitor_temporal(self, client: Client, address: str, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                ok = await client.service_client.check_health(timeout=timedelta(seconds=3))
                detail = f"connected to {address}" if ok else f"{address} reports not serving"
            except Exception as exc:
                ok, detail = False, f"health check of {address} failed: {exc}"
            self.health.set("temporal", ok=ok, detail=detail)


async def wait_for_poller(
    client: Client,
    task_queue: str,
    identity: str,
    *,
    has_workflows: bool,
    stop: asyncio.Event,
    interval: float = 0.5,
) -> bool:
    """Poll DescribeTaskQueue until the server lists ``identity`` as a poller."""
    kind = (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if has_workflows
        else (TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    )
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=kind,
    )
    while not stop.is_set():
        try:
            response = await client.workflow_service.describe_task_queue(request)
            if any(p.identity == identity for p in response.pollers):
                return True
        except Exception as exc:
            log.debug("describe task queue failed: %s", exc)
        await asyncio.sleep(interval)
    return False


def worker_version(service: str, settings: WorkerServiceSettings) -> WorkerVersion:
    """The worker's deployment (``muster-<service>`` unless set) and build id (None:
    unversioned)."""
    worker = settings.worker
    return WorkerVersion(worker.deployment_name or f"muster-{service}", worker.build_id)


def deployment_options(version: WorkerVersion, workflows: Sequence[type]) -> dict[str, Any]:
    """The Worker options that put a worker in its deployment version, if it has one.

    The deployment's default behaviour is the one its workflow types declare
    (:mod:`muster_runtime.versioning`); a worker without a build id gets no options and
    runs unversioned.
    """
    if not version.versioned:
        return {}
    assert version.build_id is not None
    try:
        behavior = worker_behavior(workflows)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    return {
        "deployment_config": WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(version.deployment_name, version.build_id),
            use_worker_versioning=True,
            default_versioning_behavior=behavior,
        )
    }


async def make_current(
    client: Client,
    version: WorkerVersion,
    identity: str,
    *,
    stop: asyncio.Event,
    interval: float = 1.0,
) -> bool:
    """Make ``version`` its deployment's current version; retried until it works or a stop.

    The server knows a version only once its pollers have reached it, so the first calls
    may fail with "not found". Returns whether it was done.
    """
    assert version.build_id is not None
    request = SetWorkerDeploymentCurrentVersionRequest(
        namespace=client.namespace,
        deployment_name=version.deployment_name,
        build_id=version.build_id,
        identity=identity,
    )
    while not stop.is_set():
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
            return True
        except Exception as exc:
            log.debug("making %s current failed: %s", version, exc)
        await asyncio.sleep(interval)
    return False


async def run_worker(
    process: ServiceProcess,
    client: Client,
    settings: WorkerServiceSettings,
    definition: WorkerDefinition,
    *,
    identity: str,
    version: WorkerVersion | None = None,
) -> int:
    """Run a worker until a stop is requested or it fails; drain on stop. Returns exit status.

    With a build id in ``version`` the worker joins its Worker Deployment version and,
    unless ``settings.worker.promote`` is "external", makes it the current version once
    its pollers are registered. Without one it runs unversioned.
    """
    version = version or WorkerVersion(settings.worker.deployment_name or "muster", None)
    options: dict[str, Any] = {
        "workflow_runner": muster_workflow_runner(),
        "task_queue": settings.worker.task_queue,
        "workflows": list(definition.workflows),
        "activities": list(definition.activities),
        "identity": identity,
        "max_concurrent_activities": settings.worker.max_concurrent_activities,
        "max_concurrent_workflow_tasks": settings.worker.max_concurrent_workflow_tasks,
        "max_cached_workflows": settings.worker.max_cached_workflows,
        "graceful_shutdown_timeout": timedelta(seconds=settings.worker.graceful_shutdown_seconds),
        **deployment_options(version, definition.workflows),
        **definition.worker_options,
    }
    if version.versioned:
        log.info("worker version %s (promote: %s)", version, settings.worker.promote)
    else:
        log.info("worker runs unversioned: no build id (%s)", _BUILD_ID_HINT)
    worker = Worker(client, **options)
    process.health.register("worker", f"starting pollers on {settings.worker.task_queue}")
    run_task = asyncio.create_task(worker.run())

    async def mark_polling() -> None:
        seen = await wait_for_poller(
            client,
            settings.worker.task_queue,
            identity,
            has_workflows=bool(definition.workflows),
            stop=process.stop_requested,
        )
        if not seen or run_task.done():
            return
        polling = f"polling task queue {settings.worker.task_queue}"
        if version.versioned and settings.worker.promote == "on-start":
            process.health.set("worker", ok=False, detail=f"making {version} current")
            if not await make_current(client, version, identity, stop=process.stop_requested):
                return
            log.info("%s is the current version of %s", version, version.deployment_name)
        where = f" as {version}" if version.versioned else ""
        process.health.set("worker", ok=True, detail=polling + where)

    process.spawn(mark_polling())
    for job in definition.background:
        process.spawn(job())
    stop_task = asyncio.create_task(process.stop_requested.wait())
    await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if run_task.done():
        stop_task.cancel()
        error = run_task.exception()
        process.health.set("worker", ok=False, detail=f"worker stopped: {error}")
        log.error("worker failed: %s", error, exc_info=error)
        status = 1
    else:
        process.health.set("worker", ok=False, detail="draining")
        log.info(
            "draining worker: in-flight activities get %.1fs",
            settings.worker.graceful_shutdown_seconds,
        )
        await worker.shutdown()
        (outcome,) = await asyncio.gather(run_task, return_exceptions=True)
        if isinstance(outcome, BaseException):
            log.warning("worker ended with %r", outcome)
    for close in definition.on_close:
        try:
            await close()
        except Exception:
            log.exception("closing a worker resource failed")
    log.info("worker stopped")
    return status


_BUILD_ID_HINT = "set MUSTER_<SERVICE>_WORKER__BUILD_ID to run as a Worker Deployment version"

SettingsT = TypeVar("SettingsT", bound=WorkerServiceSettings)


async def serve_worker(
    service: str,
    settings: SettingsT,
    temporal: TemporalSettings,
    build: Callable[[Client, SettingsT], Awaitable[WorkerDefinition]],
    *,
    install_signal_handlers: bool = True,
) -> int:
    """The whole life of a worker process: start, connect, build, run, drain, stop."""
    identity = settings.worker.identity or f"{service}-{pod_identity()}"
    version = worker_version(service, settings)
    async with ServiceProcess(
        service,
        settings,
        build_id=version.build_id,
        worker_deployment=version.deployment_name,
        install_signal_handlers=install_signal_handlers,
        checks=("temporal", "worker"),
    ) as process:
        client = await process.connect_temporal(temporal, identity=identity)
        if client is None:
            return 0
        definition = await build(client, settings)
        return await run_worker(
            process, client, settings, definition, identity=identity, version=version
        )


def fail_startup(service: str, problems: Sequence[str]) -> int:
    """Print one line per problem to stderr; the exit status for bad configuration."""
    for problem in problems:
        print(f"muster-{service}: configuration error: {problem}", file=sys.stderr)
    return 2


def worker_main(
    service: str,
    settings_cls: type[SettingsT],
    build: Callable[[Client, SettingsT], Awaitable[WorkerDefinition]],
) -> int:
    """Console entry point of a worker service; returns the process exit status."""
    problems: list[str] = []
    try:
        settings = load_settings(settings_cls)
    except SettingsError as exc:
        problems += exc.problems
    try:
        temporal = load_settings(TemporalSettings)
    except SettingsError as exc:
        problems += exc.problems
    if problems:
        return fail_startup(service, problems)
    try:
        return asyncio.run(serve_worker(service, settings, temporal, build))
    except StartupError as exc:
        return fail_startup(service, [str(exc)])
