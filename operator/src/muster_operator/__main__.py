"""``python -m muster_operator``: run the operator (kopf) until SIGTERM/SIGINT.

Runs standalone (no kopf peering): deploy one replica with the ``Recreate`` strategy. Two
replicas would both act: Temporal's conflict tokens keep their schedule writes consistent and
stable request ids make Temporal drop a repeated trigger, but Events and status writes would
be doubled.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any, cast

import kopf
import uvloop

from muster_operator import namespaces
from muster_operator.handlers import build_registry
from muster_operator.settings import OperatorSettings
from muster_runtime.logs import configure_logging
from muster_runtime.settings import SettingsError, TemporalSettings, load_settings
from muster_runtime.usage import handle_command_line

DESCRIPTION = "Muster's operator: reconciles Schedule and ApprovalPolicy resources into Temporal"


def operator_identity() -> str:
    """kopf's name for this operator: the pod's name (or the host's).

    Left to itself kopf asks :func:`getpass.getuser`, which raises for a uid that has no
    entry in ``/etc/passwd``: a pod run as an arbitrary uid (as OpenShift assigns them, or
    ``common.podSecurityContext.runAsUser``) would crash at start.
    """
    return f"muster-operator@{os.environ.get('POD_NAME') or socket.gethostname()}"


def main() -> int:
    """Start kopf with the handlers in :mod:`muster_operator.handlers`."""
    handle_command_line(
        "python -m muster_operator", DESCRIPTION, "muster_operator.settings:OperatorSettings"
    )
    problems: list[str] = []
    try:
        settings = load_settings(OperatorSettings)
    except SettingsError as exc:
        problems += exc.problems
    try:
        temporal = load_settings(TemporalSettings)
    except SettingsError as exc:
        problems += exc.problems
    if problems:
        for problem in problems:
            print(f"muster-operator: configuration error: {problem}", file=sys.stderr)
        return 2
    configure_logging("operator", level=settings.log.level, fmt=settings.log.format)
    # kopf logs every handler and timer run at INFO ("Timer 'resync' succeeded" per resource
    # per interval); Muster's handlers log what they change themselves.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # Namespaces found by glob that kopf would miss (see the module).
    namespaces.install()
    kopf.run(
        registry=build_registry(settings, temporal),
        # On uvloop kopf's per-event work (watch streams, patches over TLS) costs about a
        # fifth less CPU, and a burst of resources is Ready a quarter sooner
        # (bench/bench_operator.py).
        loop=uvloop.new_event_loop(),
        standalone=True,
        # kopf types the identity as a NewType of str that it does not export.
        identity=cast(Any, operator_identity()),
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.liveness_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
