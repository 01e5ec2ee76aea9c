"""The fulfillment worker's own types (never seen by clients).

What clients send and read is the contract in :mod:`muster_api.fulfillment`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from muster_api.common import Money


class ApprovalRequirement(BaseModel):
    """The approval a charge needs: the payment step decides it from its threshold."""

    model_config = ConfigDict(frozen=True)

    policy: str
    threshold: Money
