"""``python -m muster_fulfillment`` runs the fulfillment worker."""

from muster_fulfillment import SERVICE
from muster_fulfillment.worker import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_service_command_line

handle_service_command_line(SERVICE)
exit_now(main())
