"""Muster's reference backends: inventory, payment, shipping and notification over HTTP."""

from muster_runtime.spec import ServiceSpec

SERVICE = ServiceSpec(
    name="backends",
    module="muster_backends",
    env_prefix="MUSTER_BACKENDS_",
    description="reference backends (inventory, payment, shipping, notification)",
    settings="muster_backends.settings:BackendsSettings",
    kind="http",
    order=50,
    ports=("api",),
)
