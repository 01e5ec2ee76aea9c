"""``python -m muster_gateway`` runs the gateway."""

from muster_gateway.main import main
from muster_runtime.shutdown import exit_now

exit_now(main())
