"""Wiring of the fulfillment worker: settings, the HTTP client, registration, and a gauge of
orders that need attention (counted through visibility, so every replica reports the truth)."""

from __future__ import annotations

import asyncio
import logging

import httpx
from prometheus_client import Gauge
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict
from temporalio.client import Client

from muster_api.fulfillment import TASK_QUEUE
from muster_fulfillment.activities import Backends, FulfillmentActivities
from muster_fulfillment.workflows import OrderFulfillment
from muster_runtime.service import WorkerDefinition, worker_main
from muster_runtime.settings import WorkerServiceSettings, WorkerSettings

log = logging.getLogger(__name__)

NEEDING_ATTENTION = Gauge(
    "muster_orders_needing_attention",
    "Running orders parked in needs_attention (visibility count; same on every replica)",
)


class BackendSettings(BaseModel):
    """Where the four backends are (the reference ones, or your own services)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    inventory: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8100/inventory")
    """Base URL of the inventory service."""
    payment: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8100/payment")
    """Base URL of the payment service."""
    shipping: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8100/shipping")
    """Base URL of the shipping service."""
    notification: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8100/notification")
    """Base URL of the notification service."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """HTTP timeout of one backend call (an attempt; Temporal retries)."""


class ApprovalSettings(BaseModel):
    """When an order needs an approval before payment."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    thresholds: dict[str, int] = {"EUR": 100_000, "USD": 100_000}
    """Per currency, the total (minor units) from which an order needs approval (JSON)."""
    policy: str = "large-orders"
    """The ApprovalPolicy that governs those approvals."""


class FulfillmentSettings(WorkerServiceSettings):
    """``MUSTER_FULFILLMENT_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_FULFILLMENT_")

    worker: WorkerSettings = WorkerSettings(task_queue=TASK_QUEUE)
    """Temporal worker."""
    backends: BackendSettings = BackendSettings()
    """Backend services."""
    approval: ApprovalSettings = ApprovalSettings()
    """Approval threshold."""
    attention_refresh_seconds: float = Field(default=30.0, gt=0)
    """How often the needs-attention gauge is recounted."""


ATTENTION_QUERY = (
    "MusterPattern = 'fulfillment' AND MusterNeedsAttention = true AND ExecutionStatus = 'Running'"
)


async def count_attention(client: Client, every: float) -> None:
    """Keep the needs-attention gauge current."""
    while True:
        try:
            NEEDING_ATTENTION.set((await client.count_workflows(ATTENTION_QUERY)).count)
        except Exception as exc:
            log.warning("counting orders that need attention failed: %s", exc)
        await asyncio.sleep(every)


async def build(client: Client, settings: FulfillmentSettings) -> WorkerDefinition:
    """Create the HTTP client and register the workflow and activities."""
    http = httpx.AsyncClient(timeout=settings.backends.timeout_seconds)
    backends = Backends(
        http,
        {
            "inventory": str(settings.backends.inventory),
            "payment": str(settings.backends.payment),
            "shipping": str(settings.backends.shipping),
            "notification": str(settings.backends.notification),
        },
    )
    activities = FulfillmentActivities(
        backends, dict(settings.approval.thresholds), settings.approval.policy
    )
    return WorkerDefinition(
        workflows=[OrderFulfillment],
        activities=activities.all(),
        on_close=[http.aclose],
        background=[lambda: count_attention(client, settings.attention_refresh_seconds)],
    )


def main() -> int:
    """Entry point: ``python -m muster_fulfillment``."""
    return worker_main("fulfillment", FulfillmentSettings, build)
