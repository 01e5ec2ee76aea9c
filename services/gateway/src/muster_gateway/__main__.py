"""``python -m muster_gateway`` runs the gateway."""

from muster_gateway import SERVICE
from muster_gateway.main import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_service_command_line

handle_service_command_line(SERVICE)
exit_now(main())
