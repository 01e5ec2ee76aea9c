"""``python -m muster_runtime.canary`` runs the canary worker."""

from muster_runtime.canary.worker import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_command_line

handle_command_line(
    "python -m muster_runtime.canary",
    "Muster canary worker (end-to-end ping)",
    "muster_runtime.canary.worker:CanarySettings",
)
exit_now(main())
