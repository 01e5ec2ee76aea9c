"""Process wiring of the reference backends."""

from __future__ import annotations

from typing import Any

from muster_backends.app import create_app, open_backends
from muster_backends.settings import BackendsSettings
from muster_runtime.http import http_main
from muster_runtime.service import ServiceProcess
from muster_runtime.settings import TemporalSettings


async def build(
    process: ServiceProcess, settings: BackendsSettings, _: TemporalSettings | None
) -> Any:
    """Open the databases and build the app."""
    faults = settings.faults
    backends = open_backends(
        settings.data_dir,
        faults={
            "inventory": faults.inventory,
            "payment": faults.payment,
            "shipping": faults.shipping,
            "notification": faults.notification,
        },
        countries=frozenset(settings.countries),
        initial_stock=settings.initial_stock,
        seed=settings.seed,
    )
    return create_app(backends)


def main() -> int:
    """Entry point: ``python -m muster_backends``."""
    return http_main("backends", BackendsSettings, build)
