"""Typed input and result of the canary ping."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PingInput(BaseModel):
    """What a caller sends through the canary."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    message: str = Field(min_length=1, max_length=1000)


class EchoInput(BaseModel):
    """The activity's input: the message and the workflow's (deterministic) time."""

    message: str
    workflow_time: datetime


class PingResult(BaseModel):
    """The echo, which worker handled it, and when the workflow saw it."""

    echo: str
    handled_by: str
    workflow_time: datetime
