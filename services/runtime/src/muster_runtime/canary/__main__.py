"""``python -m muster_runtime.canary`` runs the canary worker."""

from muster_runtime.canary.worker import main
from muster_runtime.shutdown import exit_now

exit_now(main())
