"""Muster's order fulfillment saga: reserve, charge, ship, confirm — or compensate."""

from collections.abc import Mapping

from muster_runtime.spec import ServiceSpec


def _backend_urls(ports: Mapping[str, int]) -> dict[str, str]:
    api = ports.get("backends.api")
    if api is None:
        return {}
    base = f"http://127.0.0.1:{api}"
    return {
        f"MUSTER_FULFILLMENT_BACKENDS__{name.upper()}": f"{base}/{name}"
        for name in ("inventory", "payment", "shipping", "notification")
    }


SERVICE = ServiceSpec(
    name="fulfillment",
    module="muster_fulfillment",
    env_prefix="MUSTER_FULFILLMENT_",
    description="fulfillment worker (order saga)",
    settings="muster_fulfillment.worker:FulfillmentSettings",
    kind="worker",
    order=200,
    env=_backend_urls,
)
