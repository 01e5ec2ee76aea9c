"""``python -m muster_approval`` runs the approval worker."""

from muster_approval import SERVICE
from muster_approval.worker import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_service_command_line

handle_service_command_line(SERVICE)
exit_now(main())
