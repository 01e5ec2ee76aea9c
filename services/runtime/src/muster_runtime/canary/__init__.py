"""The canary: a tiny worker that proves a Muster stack works end to end.

``muster up`` starts it and runs one ``CanaryPing`` workflow through it, which exercises
the Temporal connection, the data converter, tracing, metrics and the worker's probes.
"""

from muster_runtime.spec import ServiceSpec

TASK_QUEUE = "muster-canary"

SERVICE = ServiceSpec(
    name="canary",
    module="muster_runtime.canary",
    env_prefix="MUSTER_CANARY_",
    description="canary worker (end-to-end ping)",
    settings="muster_runtime.canary.worker:CanarySettings",
    kind="worker",
    order=900,
)
