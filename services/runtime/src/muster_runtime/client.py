"""The one Temporal client factory every Muster process uses.

It applies the settings (address, namespace, API key, TLS/mTLS), the pydantic data
converter, OpenTelemetry tracing (Temporal's plugin) and the process's metrics runtime, so
no service wires these by hand. :func:`connect_with_retry` keeps trying with exponential
backoff while the server is unreachable and reports each failure.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry import trace
from temporalio.client import Client, Interceptor, Plugin, WorkflowHandle
from temporalio.contrib.opentelemetry import OpenTelemetryPlugin, ReplaySafeTracerProvider
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from muster_runtime.settings import TemporalSettings

log = logging.getLogger(__name__)


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """The SDK's TLS argument for these settings: False, True (system roots) or a config."""
    if not settings.tls_enabled():
        return False
    ca = settings.server_ca_cert()
    cert = settings.client_cert()
    key = settings.client_key()
    if ca is None and cert is None and settings.tls_server_name is None:
        return True
    return TLSConfig(
        server_root_ca_cert=ca,
        client_cert=cert,
        client_private_key=key,
        domain=settings.tls_server_name,
    )


def client_plugins(*, tracing: bool = True) -> list[Plugin]:
    """Plugins every Muster client carries: tracing, when this process traces.

    Temporal's tracing plugin needs the global tracer provider to be its replay-safe one
    (see :func:`muster_runtime.telemetry.setup_tracing`); with tracing off
    (``OTEL_SDK_DISABLED``, or a tool that never set it up) the plugin is left out.
    """
    if not tracing or not isinstance(trace.get_tracer_provider(), ReplaySafeTracerProvider):
        return []
    return [OpenTelemetryPlugin(add_temporal_spans=True)]


async def connect(
    settings: TemporalSettings,
    *,
    runtime: Runtime | None = None,
    identity: str | None = None,
    plugins: Sequence[Plugin] = (),
    interceptors: Sequence[Interceptor] = (),
    tracing: bool = True,
    lazy: bool = False,
) -> Client:
    """Connect once to Temporal with Muster's converter, tracing and metrics runtime."""
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        tls=tls_config(settings),
        data_converter=pydantic_data_converter,
        plugins=[*client_plugins(tracing=tracing), *plugins],
        interceptors=list(interceptors),
        runtime=runtime,
        identity=identity,
        lazy=lazy,
    )


def backoff_delays(
    initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0, jitter: float = 0.2
) -> Callable[[int], float]:
    """Delay before retry ``attempt`` (1-based): exponential, capped, with some jitter."""

    def delay(attempt: int) -> float:
        base: float = min(maximum, initial * factor ** (attempt - 1))
        return base * (1 + random.uniform(-jitter, jitter))  # noqa: S311 - not for crypto

    return delay


async def connect_with_retry(
    settings: TemporalSettings,
    *,
    on_failure: Callable[[Exception, int, float], None] | None = None,
    max_attempts: int | None = None,
    delays: Callable[[int], float] | None = None,
    runtime: Runtime | None = None,
    identity: str | None = None,
    plugins: Sequence[Plugin] = (),
    tracing: bool = True,
) -> Client:
    """Connect, retrying with backoff until it works (or ``max_attempts`` are used up).

    ``on_failure(error, attempt, next_delay)`` is called after each failed attempt, so the
    caller can report it (readiness, logs).
    """
    next_delay = delays or backoff_delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            client = await connect(
                settings, runtime=runtime, identity=identity, plugins=plugins, tracing=tracing
            )
        except Exception as exc:
            if max_attempts is not None and attempt >= max_attempts:
                raise
            wait = next_delay(attempt)
            log.warning(
                "cannot reach Temporal at %s (attempt %d): %s; retrying in %.1fs",
                settings.address,
                attempt,
                exc,
                wait,
            )
            if on_failure is not None:
                on_failure(exc, attempt, wait)
            await asyncio.sleep(wait)
        else:
            if attempt > 1:
                log.info("connected to Temporal at %s after %d attempts", settings.address, attempt)
            return client


T = TypeVar("T")


def server_went_away(exc: RPCError) -> bool:
    """Whether a call failed because the frontend went away under it (a restart, a
    rollout) rather than because of what was asked: worth asking again."""
    if exc.status == RPCStatusCode.UNAVAILABLE:
        return True
    # A real server that dies during a long poll surfaces as UNKNOWN "transport error",
    # which the SDK does not retry by itself.
    if exc.status == RPCStatusCode.UNKNOWN and "transport error" in exc.message:
        return True
    # A call queued on a connection that closes before it was sent is dropped by the
    # client's HTTP/2 layer: CANCELLED "operation was canceled". Muster never cancels an
    # RPC that way (a cancelled task raises asyncio.CancelledError, not RPCError).
    return exc.status == RPCStatusCode.CANCELLED and "operation was canceled" in exc.message


async def result_across_restarts(
    handle: WorkflowHandle[Any, T],
    *,
    give_up_after: float = 120.0,
    delays: Callable[[int], float] | None = None,
) -> T:
    """``handle.result()``, carried on when the Temporal frontend restarts during the wait.

    Waiting for a result is a long poll; the SDK retries it only while the server answers.
    When the server goes away, the wait resumes once it answers again. An outage lasts
    until the wait has run ``give_up_after`` seconds without losing the server again; one
    that lasts longer raises its latest error. A wait of weeks survives any number of
    restarts that far apart.
    """
    next_delay = delays or backoff_delays(initial=0.2, maximum=5.0)
    down_since: float | None = None
    while True:
        asked = time.monotonic()
        try:
            return await handle.result()
        except RPCError as exc:
            if not server_went_away(exc):
                raise
            now = time.monotonic()
            if down_since is None or now - asked >= give_up_after:
                down_since = now
            log.warning("lost Temporal while waiting for %s (%s)", handle.id, exc.message)
            await _until_answering(handle, exc, down_since, give_up_after, next_delay)


async def _until_answering(
    handle: WorkflowHandle[Any, Any],
    lost: RPCError,
    down_since: float,
    give_up_after: float,
    next_delay: Callable[[int], float],
) -> None:
    """Return once the server answers a question about ``handle`` (any answer: an error
    that is not an outage is for the caller's next call to raise); raise the outage's
    latest error once it lasted ``give_up_after`` seconds."""
    attempt = 0
    while True:
        attempt += 1
        wait = next_delay(attempt)
        if time.monotonic() + wait - down_since > give_up_after:
            raise lost
        await asyncio.sleep(wait)
        try:
            await handle.describe()
        except RPCError as exc:
            if not server_went_away(exc):
                return
            lost = exc
        else:
            log.info(
                "Temporal answers again after %.1fs; waiting for %s",
                time.monotonic() - down_since,
                handle.id,
            )
            return
