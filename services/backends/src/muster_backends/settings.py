"""``MUSTER_BACKENDS_*`` settings of the reference backends."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from muster_backends.models import Fault
from muster_runtime.http import ApiSettings, HttpServiceSettings

DEFAULT_COUNTRIES = (
    "AT", "BE", "CA", "CH", "CZ", "DE", "DK", "ES", "FI", "FR", "GB", "IE", "IT", "LU", "NL",
    "NO", "PL", "PT", "SE", "US",
)  # fmt: skip


class FaultSettings(BaseModel):
    """Fault injection per backend at start (change it at run time with PUT /admin/faults)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    inventory: Fault = Fault()
    """Faults of the inventory service."""
    payment: Fault = Fault()
    """Faults of the payment service."""
    shipping: Fault = Fault()
    """Faults of the shipping service."""
    notification: Fault = Fault()
    """Faults of the notification service."""


class BackendsSettings(HttpServiceSettings):
    """``MUSTER_BACKENDS_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_BACKENDS_")

    api: ApiSettings = ApiSettings(port=8100)
    """HTTP API of the four backends."""
    data_dir: Path = Path("/var/lib/muster/backends")
    """Folder of the SQLite files (a volume in Kubernetes; the local stack keeps them under
    .state/backends)."""
    faults: FaultSettings = FaultSettings()
    """Fault injection at start."""
    countries: list[str] = Field(default_factory=lambda: list(DEFAULT_COUNTRIES))
    """Countries the shipping service delivers to (JSON list)."""
    initial_stock: dict[str, int] = Field(
        default_factory=lambda: {"WIDGET-1": 1000, "GADGET-2": 1000, "GIZMO-3": 100}
    )
    """Stock put in place when the inventory database is new (JSON object SKU -> on hand)."""
    seed: int | None = None
    """Seed of the fault injection's random numbers (for reproducible runs)."""
