"""``python -m muster_scheduling`` runs the scheduling worker."""

from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_service_command_line
from muster_scheduling import SERVICE
from muster_scheduling.worker import main

handle_service_command_line(SERVICE)
exit_now(main())
