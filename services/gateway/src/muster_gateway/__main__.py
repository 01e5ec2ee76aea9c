"""``python -m muster_gateway`` runs the gateway service."""

from muster_gateway.main import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_command_line

handle_command_line(
    "python -m muster_gateway",
    "Muster gateway (HTTP API, approver page)",
    "muster_gateway.settings:GatewaySettings",
)
exit_now(main())
