"""``python -m muster_runtime.canary`` runs the canary worker."""

from muster_runtime.canary import SERVICE
from muster_runtime.canary.worker import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_service_command_line

handle_service_command_line(SERVICE)
exit_now(main())
