"""``python -m muster_scheduling`` runs the scheduling worker."""

from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_command_line
from muster_scheduling.worker import main

handle_command_line(
    "python -m muster_scheduling",
    "Muster scheduling worker (daily report, data sync, health check, reminders)",
    "muster_scheduling.worker:SchedulingSettings",
)
exit_now(main())
