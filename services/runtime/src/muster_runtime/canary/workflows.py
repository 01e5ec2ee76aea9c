"""The canary workflow: one activity round trip, no I/O of its own."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from muster_api import search_attributes as sa
    from muster_runtime.canary.activities import CanaryActivities
    from muster_runtime.canary.models import EchoInput, PingInput, PingResult
    from muster_runtime.versioning import declare


@declare(
    VersioningBehavior.PINNED,
    "a ping lasts a second and proves the build that answered it: it stays on that build.",
)
@workflow.defn(name="CanaryPing")
class CanaryPing:
    """Echo a message through an activity on the canary task queue."""

    @workflow.run
    async def run(self, request: PingInput) -> PingResult:
        workflow.upsert_search_attributes([sa.PATTERN.value_set("canary")])
        return await workflow.execute_activity_method(
            CanaryActivities.echo,
            EchoInput(message=request.message, workflow_time=workflow.now()),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
