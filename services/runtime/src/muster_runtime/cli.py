"""The ``muster`` command: talk to a Muster installation.

``muster ping`` and ``muster search-attributes`` work against whatever cluster the
``TEMPORAL_*`` variables name. Installed packages add commands through the
``muster.commands`` entry points: the operator adds ``apply``, and the development stack
(``muster-dev``, never in an image) adds ``up``, ``kube-up`` and ``services``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from muster_runtime.settings import SettingsError, TemporalSettings, load_settings
from muster_runtime.shutdown import exit_now


def _print_err(message: str) -> None:
    print(message, file=sys.stderr)


def _temporal_settings() -> TemporalSettings | None:
    try:
        return load_settings(TemporalSettings)
    except SettingsError as exc:
        for problem in exc.problems:
            _print_err(f"muster: configuration error: {problem}")
        return None


def _unreachable(address: str, exc: Exception) -> str:
    """Why nothing answered at ``address``, and how to point muster at a Temporal."""
    answer = re.findall(r'message: "([^"]+)"', str(exc))
    why = answer[-1].lower() if answer else "no answer"
    if "TEMPORAL_ADDRESS" in os.environ:
        where = f"TEMPORAL_ADDRESS={address}"
        fix = "is that Temporal running? `make up` prints the address of the local one"
    else:
        where = f"{address}, the default: TEMPORAL_ADDRESS is not set"
        fix = (
            "start the local stack with `make up`, or set TEMPORAL_ADDRESS to your Temporal's "
            "frontend, e.g. `export TEMPORAL_ADDRESS=127.0.0.1:7233` (make up prints the line)"
        )
    return f"no Temporal answers at {where} ({why}); {fix}"


def _ping(_: argparse.Namespace) -> int:
    from muster_runtime.canary.ping import ping_canary  # noqa: PLC0415

    temporal = _temporal_settings()
    if temporal is None:
        return 2
    try:
        print(asyncio.run(asyncio.wait_for(ping_canary(temporal), timeout=60)))
    except Exception as exc:
        if "Failed client connect" in str(exc):
            _print_err(f"muster ping: {_unreachable(temporal.address, exc)}")
            return 1
        _print_err(f"muster ping: failed against {temporal.address}: {exc}")
        return 1
    return 0


def _search_attributes(args: argparse.Namespace) -> int:
    from muster_runtime.client import connect  # noqa: PLC0415
    from muster_runtime.search_attributes import (  # noqa: PLC0415
        SearchAttributeConflict,
        ensure_search_attributes,
    )

    temporal = _temporal_settings()
    if temporal is None:
        return 2
    namespace = args.namespace or temporal.namespace

    async def run() -> list[str]:
        client = await connect(temporal, tracing=False)
        return await ensure_search_attributes(client, namespace)

    try:
        added = asyncio.run(run())
    except SearchAttributeConflict as exc:
        _print_err(f"muster search-attributes: {exc}")
        return 1
    except Exception as exc:
        _print_err(f"muster search-attributes: failed against {temporal.address}: {exc}")
        return 1
    print(f"added: {', '.join(added)}" if added else "all Muster search attributes present")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="muster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ping = sub.add_parser("ping", help="run one canary workflow against TEMPORAL_ADDRESS")
    ping.set_defaults(func=_ping)

    attrs = sub.add_parser(
        "search-attributes", help="register Muster's search attributes in a namespace"
    )
    attrs.add_argument("--namespace", help="namespace (default TEMPORAL_NAMESPACE)")
    attrs.set_defaults(func=_search_attributes)

    # Installed packages add commands (the operator `apply`, the dev stack `up` and more).
    for entry in entry_points(group="muster.commands"):
        entry.load()(sub)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Parse and run one command; returns its exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status


def main() -> None:
    """Entry point of the ``muster`` console script."""
    exit_now(run())


if __name__ == "__main__":
    main()
