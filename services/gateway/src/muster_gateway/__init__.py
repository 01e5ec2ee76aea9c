"""Muster's gateway: the HTTP API for approvals and orders, and the approver web page."""

from muster_runtime.spec import ServiceSpec

SERVICE = ServiceSpec(
    name="gateway",
    module="muster_gateway",
    env_prefix="MUSTER_GATEWAY_",
    description="gateway (HTTP API, approver page)",
    settings="muster_gateway.settings:GatewaySettings",
    kind="http",
    order=300,
    ports=("api",),
    links=(("approver page", "api", "/ui/"), ("API reference", "api", "/docs")),
    hint="sign in as alice, bob or carol with token <user>-demo-token "
    "(examples/gateway/tokens.yaml)",
)
