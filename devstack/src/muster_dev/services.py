"""The one table of the services ``muster up`` runs: module, ports and environment wiring.

Production packages know nothing of local ports or example files; everything that wires
them together on one machine (which port a service gets, the backend URLs a worker calls,
the mailbox the approval worker sends to, the policies folder, the demo people and tokens) is
here.
The configuration reference (``make generate``) reads the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Local:
    """What a service's wiring may use: every service's ports (by ``"<service>.<port name>"``,
    or just ``"<service>"`` for the management port), the example files (policies, people,
    demo tokens) and the stack's state folder (for data that outlives a run)."""

    ports: Mapping[str, int]
    examples_dir: Path
    state: Path

    def examples(self, *parts: str) -> str:
        """A path under the example files' folder."""
        return str(self.examples_dir.joinpath(*parts).resolve())

    @property
    def policies(self) -> str:
        """Where the local gateway and approval worker read ApprovalPolicies: the state
        folder's ``policies/``, which ``muster up`` fills from ``examples/policies`` and
        ``muster apply`` publishes into (so a new policy works at once)."""
        return str(policies_dir(self.state))


POLICIES_DIR_VARIABLES = ("MUSTER_APPROVAL_POLICIES_DIR", "MUSTER_GATEWAY_POLICIES_DIR")
"""The settings through which services read a policies folder."""


def policies_dir(state: Path) -> Path:
    """The policies folder of a stack's state folder."""
    return state / "policies"


Wiring = Callable[[Local], Mapping[str, str]]
"""Extra environment of a service on one machine."""


@dataclass(frozen=True)
class ServiceSpec:
    """How ``muster up`` runs a service.

    ``module`` is run with ``python -m``; ``env_prefix`` is where its settings live, so the
    stack can hand it a port (``<prefix>HTTP__PORT``); ``env`` adds variables computed from
    the ports of all services, the example files and the state folder (for example the
    backend URLs a worker calls, or the demo tokens the gateway reads locally). ``order``
    sorts start-up: lower starts first. ``settings`` names the service's settings class
    (``module:Class``) for the generated configuration reference. Besides its management
    port, a service gets one port per name in ``ports`` (``("api",)`` for an HTTP
    service), handed over as ``<prefix><NAME>__PORT``. ``links`` are printed by
    ``muster up`` as ``(label, port name, path)``; ``hint`` is one line of advice printed
    after them.
    """

    name: str
    module: str
    env_prefix: str
    description: str
    settings: str
    kind: Literal["worker", "http"] = "worker"
    order: int = 100
    env: Wiring | None = None
    ports: tuple[str, ...] = ()
    links: tuple[tuple[str, str, str], ...] = ()
    hint: str = ""


def _backends(local: Local) -> dict[str, str]:
    return {"MUSTER_BACKENDS_DATA_DIR": str(local.state / "backends")}


def _approval(local: Local) -> dict[str, str]:
    env = {
        "MUSTER_APPROVAL_POLICIES_DIR": local.policies,
        "MUSTER_APPROVAL_DIRECTORY_FILE": local.examples("directory.yaml"),
    }
    if "mailbox.smtp" in local.ports:
        env["MUSTER_APPROVAL_SMTP__HOST"] = "127.0.0.1"
        env["MUSTER_APPROVAL_SMTP__PORT"] = str(local.ports["mailbox.smtp"])
    if "gateway.api" in local.ports:
        env["MUSTER_APPROVAL_PUBLIC_URL"] = f"http://127.0.0.1:{local.ports['gateway.api']}/ui"
    else:
        env["MUSTER_APPROVAL_PUBLIC_URL"] = "http://127.0.0.1:8080/ui"
    return env


def _fulfillment(local: Local) -> dict[str, str]:
    api = local.ports.get("backends.api")
    if api is None:
        return {}
    return {
        f"MUSTER_FULFILLMENT_BACKENDS__{name.upper()}": f"http://127.0.0.1:{api}/{name}"
        for name in ("inventory", "payment", "shipping", "notification")
    }


def _gateway(local: Local) -> dict[str, str]:
    return {
        "MUSTER_GATEWAY_AUTH__TOKENS_FILE": local.examples("gateway", "tokens.yaml"),
        "MUSTER_GATEWAY_POLICIES_DIR": local.policies,
        "MUSTER_GATEWAY_DIRECTORY_FILE": local.examples("directory.yaml"),
    }


def _scheduling(local: Local) -> dict[str, str]:
    env = {
        "MUSTER_SCHEDULING_REPORTS_DIR": str(local.state / "reports"),
        "MUSTER_SCHEDULING_WAREHOUSE": str(local.state / "warehouse.db"),
    }
    api = local.ports.get("backends.api")
    if api:
        env["MUSTER_SCHEDULING_BACKENDS_URL"] = f"http://127.0.0.1:{api}"
    return env


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="mailbox",
        module="muster_dev.mailbox",
        env_prefix="MUSTER_MAILBOX_",
        description="local mailbox (SMTP in, messages listed over HTTP)",
        settings="muster_dev.mailbox:MailboxSettings",
        kind="http",
        order=40,
        ports=("api", "smtp"),
        links=(("mailbox messages", "api", "/messages"),),
    ),
    ServiceSpec(
        name="backends",
        module="muster_backends",
        env_prefix="MUSTER_BACKENDS_",
        description="reference backends (inventory, payment, shipping, notification)",
        settings="muster_backends.settings:BackendsSettings",
        kind="http",
        order=50,
        env=_backends,
        ports=("api",),
    ),
    ServiceSpec(
        name="approval",
        module="muster_approval",
        env_prefix="MUSTER_APPROVAL_",
        description="approval worker (human-in-the-loop requests)",
        settings="muster_approval.worker:ApprovalSettings",
        order=150,
        env=_approval,
    ),
    ServiceSpec(
        name="fulfillment",
        module="muster_fulfillment",
        env_prefix="MUSTER_FULFILLMENT_",
        description="fulfillment worker (order saga)",
        settings="muster_fulfillment.worker:FulfillmentSettings",
        order=200,
        env=_fulfillment,
    ),
    ServiceSpec(
        name="gateway",
        module="muster_gateway",
        env_prefix="MUSTER_GATEWAY_",
        description="gateway (HTTP API, approver page)",
        settings="muster_gateway.settings:GatewaySettings",
        kind="http",
        order=300,
        env=_gateway,
        ports=("api",),
        links=(("approver page", "api", "/ui/"), ("API reference", "api", "/docs")),
        hint="sign in as alice, bob or carol with token <user>-demo-token "
        "(examples/gateway/tokens.yaml)",
    ),
    ServiceSpec(
        name="scheduling",
        module="muster_scheduling",
        env_prefix="MUSTER_SCHEDULING_",
        description="scheduling worker (daily report, data sync, health check, reminders)",
        settings="muster_scheduling.worker:SchedulingSettings",
        order=310,
        env=_scheduling,
    ),
    ServiceSpec(
        name="canary",
        module="muster_runtime.canary",
        env_prefix="MUSTER_CANARY_",
        description="canary worker (end-to-end ping)",
        settings="muster_runtime.canary.worker:CanarySettings",
        order=900,
    ),
)
"""Every service of the local stack, in start-up order."""

OTHER_PROCESSES: tuple[tuple[str, str], ...] = (
    ("operator", "muster_operator.settings:OperatorSettings"),
)
"""Processes that ``muster up`` does not run but the configuration reference documents."""


def installed(spec: ServiceSpec) -> bool:
    """Whether the service's package is importable here (a subset may be installed)."""
    from importlib.util import find_spec  # noqa: PLC0415

    top = spec.module.split(".", 1)[0]
    return find_spec(top) is not None
