"""Helpers shared by the kube and chart tiers (fixtures live in tests/kube_fixtures.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException

# The kubectl and helm fixtures: ``kubectl("get", "ns", input=None, check=True)``.
Run = Callable[..., subprocess.CompletedProcess[str]]


def status_message(exc: ApiException) -> str:
    """The API server's own message from the Status object of a failed request."""
    body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body)
    return str(json.loads(body)["message"])
