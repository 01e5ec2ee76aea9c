"""The canary's activity: echo the message back, naming the worker that ran it."""

from prometheus_client import Counter
from temporalio import activity

from muster_runtime.canary.models import EchoInput, PingResult

ECHOES = Counter("muster_canary_echoes", "Canary pings echoed by this worker")


class CanaryActivities:
    """Holds the worker identity that every echo reports."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    @activity.defn(name="canary.echo")
    async def echo(self, request: EchoInput) -> PingResult:
        """Return the message unchanged with this worker's identity."""
        activity.logger.info("canary echo", extra={"chars": len(request.message)})
        ECHOES.inc()
        return PingResult(
            echo=request.message, handled_by=self.identity, workflow_time=request.workflow_time
        )
