"""``python -m muster_fulfillment`` runs the fulfillment worker."""

from muster_fulfillment.worker import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_command_line

handle_command_line(
    "python -m muster_fulfillment",
    "Muster fulfillment worker (order saga)",
    "muster_fulfillment.worker:FulfillmentSettings",
)
exit_now(main())
