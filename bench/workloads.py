"""Workflows and activities the benchmarks run; the same code under every variant."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow


class BenchInput(BaseModel):
    """A small typed payload, like a real request."""

    request_id: str
    amount_minor: int


@activity.defn(name="bench.step")
async def step(request: BenchInput) -> BenchInput:
    """A no-op activity: returns its input."""
    return request


@workflow.defn(name="BenchFourSteps")
class BenchFourSteps:
    """Four sequential no-op activities: the shape of a short saga without the saga."""

    @workflow.run
    async def run(self, request: BenchInput) -> BenchInput:
        for _ in range(4):
            request = await workflow.execute_activity(
                step, request, start_to_close_timeout=timedelta(seconds=30)
            )
        return request
