"""``MUSTER_GATEWAY_*`` settings of the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from muster_api import approval, fulfillment
from muster_runtime.http import ApiSettings, HttpServiceSettings


class AuthSettings(BaseModel):
    """How callers prove who they are."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    mode: Literal["tokens", "proxy", "tokens+proxy"] = "tokens"
    """tokens: bearer tokens checked against hashes; proxy: identity headers set by a
    trusted authenticating proxy (oauth2-proxy style); tokens+proxy: either."""
    tokens_file: Path | None = None
    """YAML file mapping user id to 'sha256:<hex>' of their token (a Secret in Kubernetes);
    required when the mode accepts tokens."""
    proxy_user_header: str = "X-Forwarded-User"
    """Header carrying the user id from the proxy."""
    proxy_groups_header: str = "X-Forwarded-Groups"
    """Header carrying the user's groups (comma-separated) from the proxy."""
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    """Networks whose identity headers are believed (JSON list of CIDRs)."""
    session_secret_file: Path | None = None
    """Key that signs web sessions; unset: a random one per start (sessions end on restart)."""
    session_hours: float = Field(default=12.0, gt=0)
    """How long a web session lasts."""


class GatewaySettings(HttpServiceSettings):
    """``MUSTER_GATEWAY_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="MUSTER_GATEWAY_")

    api: ApiSettings = ApiSettings(port=8080)
    """HTTP API and approver page."""
    auth: AuthSettings = AuthSettings()
    """Authentication."""
    policies_dir: Path
    """Folder of ApprovalPolicy YAML files (to pick a policy when a request names none; the
    operator publishes them to a ConfigMap in Kubernetes)."""
    directory_file: Path
    """YAML file of who is who: user ids, e-mail addresses, groups (members of
    'muster-admins' see every request)."""
    approvals_task_queue: str = approval.TASK_QUEUE
    """Task queue of the approval worker."""
    orders_task_queue: str = fulfillment.TASK_QUEUE
    """Task queue of the fulfillment worker."""
    admin_group: str = "muster-admins"
    """Group whose members may see and list every request and order."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Largest request body accepted; a larger one is refused with 413 before it is read."""
    idempotency_hours: float = Field(default=24.0, ge=1, le=24 * 30)
    """How long an Idempotency-Key is held at least (a key record in Temporal, kept after
    that for the namespace's retention)."""
    state_read_timeout: float = Field(default=5.0, gt=0, le=60)
    """Seconds a create (POST /v1/approvals, /v1/orders) waits for the started workflow's
    state from its worker; past it, the answer is 202 Accepted with a Location to GET. Also
    bounds each request's state read on the approver page's lists: a request whose state
    takes longer is listed under "Not readable just now" instead of holding up the page."""

    @model_validator(mode="after")
    def _tokens_file_when_tokens(self) -> Self:
        if "tokens" in self.auth.mode and self.auth.tokens_file is None:
            raise ValueError(
                "MUSTER_GATEWAY_AUTH__TOKENS_FILE is required when MUSTER_GATEWAY_AUTH__MODE "
                f"is {self.auth.mode!r}: set it to a YAML file that maps each user id to "
                "'sha256:<hex>' of their token (python -m muster_gateway.auth hashes one), "
                "or use MUSTER_GATEWAY_AUTH__MODE=proxy behind an authenticating proxy"
            )
        return self
