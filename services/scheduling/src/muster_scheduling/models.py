"""The scheduling worker's own types: activity inputs and results (never seen by clients).

What a Schedule's workflow takes and returns is the contract in :mod:`muster_api.scheduling`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ReportWindow(BaseModel):
    """The activity's input: the scheduled time, and which day before it in which zone."""

    scheduled_at: datetime
    days_back: int
    time_zone: str


class SyncBatch(BaseModel):
    """One batch of the sync: copied rows and the new watermark."""

    copied: int
    watermark: int


class RemindRound(BaseModel):
    """The activity's input: the policy, and the key of this round."""

    policy: str
    key: str
