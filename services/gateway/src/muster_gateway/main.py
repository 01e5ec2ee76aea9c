"""Process wiring of the gateway."""

from __future__ import annotations

from typing import Any

from fastapi.responses import RedirectResponse

from muster_gateway.app import create_app
from muster_gateway.auth import AuthConfigError, Authenticator, session_key
from muster_gateway.idempotency import IdempotencyKeys
from muster_gateway.service import Gateway
from muster_gateway.settings import GatewaySettings
from muster_runtime.http import http_main
from muster_runtime.policies import Directory, PolicyError, cached_by_mtime, load_policy_dir
from muster_runtime.service import ServiceProcess, StartupError
from muster_runtime.settings import TemporalSettings


async def build(
    process: ServiceProcess, settings: GatewaySettings, temporal: TemporalSettings | None
) -> Any:
    """Check the files, connect to Temporal, build the app."""
    assert temporal is not None
    try:
        auth = Authenticator(settings.auth, session_key(settings.auth.session_secret_file))
    except AuthConfigError as exc:
        raise StartupError(str(exc)) from None
    policies_dir = settings.policies_dir
    policies = cached_by_mtime(
        lambda: sorted([*policies_dir.glob("*.y*ml"), policies_dir]),
        lambda: load_policy_dir(policies_dir),
    )
    directory = cached_by_mtime(
        lambda: [settings.directory_file], lambda: Directory.load(settings.directory_file)
    )
    try:
        policies()
        directory()
    except PolicyError as exc:
        raise StartupError(str(exc)) from None
    client = await process.connect_temporal(temporal)
    if client is None:
        return None
    gateway = Gateway(
        client=client,
        policies=policies,
        directory=directory,
        approvals_task_queue=settings.approvals_task_queue,
        orders_task_queue=settings.orders_task_queue,
        admin_group=settings.admin_group,
        keys=IdempotencyKeys(client, hours=settings.idempotency_hours),
        state_read_timeout=settings.state_read_timeout,
    )
    app = create_app(gateway, auth, max_body_bytes=settings.max_body_bytes)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app


def main() -> int:
    """Entry point: ``python -m muster_gateway``."""
    return http_main("gateway", GatewaySettings, build, needs_temporal=True)
