"""``python -m muster_fulfillment`` runs the fulfillment worker."""

from muster_fulfillment.worker import main
from muster_runtime.shutdown import exit_now

exit_now(main())
