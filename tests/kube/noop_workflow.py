"""A workflow that does nothing, in a module of its own so the workflow sandbox can import
it without the kube tier's heavy imports (it lets a test's worker poll a task queue)."""

from temporalio import workflow


@workflow.defn(name="OperatorTestNoop")
class Noop:
    """Returns at once."""

    @workflow.run
    async def run(self) -> None:
        return None
