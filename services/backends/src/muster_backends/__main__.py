"""``python -m muster_backends`` runs the reference backends."""

from muster_backends import SERVICE
from muster_backends.main import main
from muster_runtime.shutdown import exit_now
from muster_runtime.usage import handle_service_command_line

handle_service_command_line(SERVICE)
exit_now(main())
