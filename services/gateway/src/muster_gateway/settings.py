"""``MUSTER_GATEWAY_*`` settings of the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from muster_runtime.http import ApiSettings, HttpServiceSettings


class AuthSettings(BaseModel):
    """How callers prove who they are."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    mode: Literal["tokens", "proxy", "tokens+proxy"] = "tokens"
    """tokens: bearer tokens checked against hashes; proxy: identity headers set by a
    trusted authenticating proxy (oauth2-proxy style); tokens+proxy: either."""
    tokens_file: Path = Path("examples/gateway/tokens.yaml")
    """YAML file mapping user id to 'sha256:<hex>' of their token (a Secret in Kubernetes)."""
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
    policies_dir: Path = Path("examples/policies")
    """ApprovalPolicy files (to pick a policy when a request names none)."""
    directory_file: Path = Path("examples/directory.yaml")
    """Who is who (names, groups; members of 'muster-admins' see every request)."""
    approvals_task_queue: str = "muster-approval"
    """Task queue of the approval worker."""
    orders_task_queue: str = "muster-fulfillment"
    """Task queue of the fulfillment worker."""
    admin_group: str = "muster-admins"
    """Group whose members may see and list every request and order."""
