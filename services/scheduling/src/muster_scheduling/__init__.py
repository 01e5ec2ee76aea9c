"""Muster's scheduling worker: the workflows that Schedule resources start."""

from collections.abc import Mapping

from muster_runtime.spec import ServiceSpec


def _backends(ports: Mapping[str, int]) -> dict[str, str]:
    api = ports.get("backends.api")
    return {"MUSTER_SCHEDULING_BACKENDS_URL": f"http://127.0.0.1:{api}"} if api else {}


SERVICE = ServiceSpec(
    name="scheduling",
    module="muster_scheduling",
    env_prefix="MUSTER_SCHEDULING_",
    description="scheduling worker (daily report, data sync, health check, reminders)",
    settings="muster_scheduling.worker:SchedulingSettings",
    kind="worker",
    order=310,
    env=_backends,
)
