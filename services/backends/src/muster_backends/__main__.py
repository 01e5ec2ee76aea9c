"""``python -m muster_backends`` runs the backends service."""

from muster_backends.main import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_command_line

handle_command_line(
    "python -m muster_backends",
    "Muster reference backends (inventory, payment, shipping, notification)",
    "muster_backends.settings:BackendsSettings",
)
exit_now(main())
