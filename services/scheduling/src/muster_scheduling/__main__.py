"""``python -m muster_scheduling`` runs the scheduling worker."""

from muster_runtime.shutdown import exit_now
from muster_scheduling.worker import main

exit_now(main())
