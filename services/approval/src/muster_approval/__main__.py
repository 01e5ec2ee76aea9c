"""``python -m muster_approval`` runs the approval worker."""

from muster_approval.worker import main
from muster_runtime.shutdown import exit_now

exit_now(main())
