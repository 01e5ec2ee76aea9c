"""How a service announces itself to ``muster up`` (kept free of heavy imports).

Each service package exposes a :class:`ServiceSpec` through the ``muster.services`` entry
point group; the local stack discovers them, gives each a port and runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ServiceSpec:
    """How ``muster up`` runs a service.

    ``module`` is run with ``python -m``; ``env_prefix`` is where its settings live, so the
    stack can hand it a port (``<prefix>HTTP__PORT``); ``env`` adds variables computed from
    the ports of all services by name (for example the backend URLs a worker calls).
    ``order`` sorts start-up: lower starts first. ``settings`` names the service's
    settings class (``module:Class``) for the generated configuration reference. Besides
    its management port, a service gets one port per name in ``ports`` (``("api",)`` for
    an HTTP service), handed over as ``<prefix><NAME>__PORT`` and known to the other
    services' ``env`` as ``"<service>.<name>"``. ``links`` are printed by ``muster up``
    as ``(label, port name, path)``; ``hint`` is one line of advice printed after them.
    """

    name: str
    module: str
    env_prefix: str
    description: str
    settings: str
    kind: Literal["worker", "http"] = "worker"
    order: int = 100
    env: Callable[[Mapping[str, int]], Mapping[str, str]] | None = None
    ports: tuple[str, ...] = ()
    links: tuple[tuple[str, str, str], ...] = ()
    hint: str = ""
