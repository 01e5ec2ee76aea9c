"""``python -m muster_approval`` runs the approval worker."""

from muster_approval.worker import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_command_line

handle_command_line(
    "python -m muster_approval",
    "Muster approval worker (human-in-the-loop requests)",
    "muster_approval.worker:ApprovalSettings",
)
exit_now(main())
