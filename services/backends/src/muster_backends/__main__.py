"""``python -m muster_backends`` runs the reference backends."""

from muster_backends.main import main
from muster_runtime.shutdown import exit_now

exit_now(main())
