"""Muster's human-in-the-loop approvals: requests that wait for people, never forever."""

from collections.abc import Mapping

from muster_runtime.spec import ServiceSpec


def _channels(ports: Mapping[str, int]) -> dict[str, str]:
    env: dict[str, str] = {}
    if "mailbox.smtp" in ports:
        env["MUSTER_APPROVAL_SMTP__HOST"] = "127.0.0.1"
        env["MUSTER_APPROVAL_SMTP__PORT"] = str(ports["mailbox.smtp"])
    if "gateway.api" in ports:
        env["MUSTER_APPROVAL_PUBLIC_URL"] = f"http://127.0.0.1:{ports['gateway.api']}/ui"
    return env


SERVICE = ServiceSpec(
    name="approval",
    module="muster_approval",
    env_prefix="MUSTER_APPROVAL_",
    description="approval worker (human-in-the-loop requests)",
    settings="muster_approval.worker:ApprovalSettings",
    kind="worker",
    order=150,
    env=_channels,
)
