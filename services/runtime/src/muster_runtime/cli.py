"""The ``muster`` command: run the local stack and talk to a Muster installation.

``muster up`` runs the embedded default stack; ``muster ping`` and ``muster
search-attributes`` work against whatever cluster the ``TEMPORAL_*`` variables name.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from muster_runtime.settings import SettingsError, TemporalSettings, load_settings
from muster_runtime.shutdown import exit_now


def _print_err(message: str) -> None:
    print(message, file=sys.stderr)


def _up(args: argparse.Namespace) -> int:
    from muster_runtime.localstack.stack import (  # noqa: PLC0415 - keeps `muster --help` fast
        StackError,
        StackSettings,
        run_stack,
    )

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "state_dir": args.state_dir,
            "host": args.host,
            "temporal_port": args.temporal_port,
            "ui_port": args.ui_port,
            "base_port": args.base_port,
            "namespace": args.namespace,
            "services": args.services,
            "schedules": args.schedules,
            "prometheus_port": args.prometheus_port,
        }.items()
        if value is not None
    }
    try:
        settings = load_settings(StackSettings, **overrides)
    except SettingsError as exc:
        for problem in exc.problems:
            _print_err(f"muster up: configuration error: {problem}")
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        return asyncio.run(run_stack(settings, out=out))
    except StackError as exc:
        _print_err(f"muster up: {exc}")
        return 3


def _temporal_settings() -> TemporalSettings | None:
    try:
        return load_settings(TemporalSettings)
    except SettingsError as exc:
        for problem in exc.problems:
            _print_err(f"muster: configuration error: {problem}")
        return None


def _ping(_: argparse.Namespace) -> int:
    from muster_runtime.localstack.stack import ping_canary  # noqa: PLC0415

    temporal = _temporal_settings()
    if temporal is None:
        return 2
    try:
        print(asyncio.run(asyncio.wait_for(ping_canary(temporal), timeout=60)))
    except Exception as exc:
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


def _services(_: argparse.Namespace) -> int:
    from muster_runtime.localstack.stack import discover_services  # noqa: PLC0415

    for spec in discover_services():
        print(f"{spec.name:<14} {spec.kind:<7} python -m {spec.module:<36} {spec.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="muster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the local stack in the foreground (Ctrl-C stops it)")
    up.add_argument("--state-dir", type=Path, help="SQLite file, logs, lock (default .state)")
    up.add_argument("--host", help="address to bind Temporal and the UI (default 127.0.0.1)")
    up.add_argument("--temporal-port", type=int, help="Temporal frontend port (default 7233)")
    up.add_argument("--ui-port", type=int, help="Temporal Web UI port (default 8233)")
    up.add_argument(
        "--base-port", type=int, help="first service port; others follow (default 9100)"
    )
    up.add_argument("--namespace", help="Temporal namespace (default 'default')")
    up.add_argument(
        "--services",
        type=lambda v: [s.strip() for s in v.split(",") if s.strip()],
        help="comma-separated subset of services to run (default: all installed)",
    )
    up.add_argument(
        "--schedules",
        help="folder of Schedule files to apply once ready (default examples/schedules; "
        "'' loads none)",
    )
    up.add_argument(
        "--prometheus-port",
        type=int,
        help="also run a local Prometheus on this port, scraping every service and "
        "evaluating Muster's alert rules (Debian's prometheus: `make prometheus`)",
    )
    up.set_defaults(func=_up)

    ping = sub.add_parser("ping", help="run one canary workflow against TEMPORAL_ADDRESS")
    ping.set_defaults(func=_ping)

    attrs = sub.add_parser(
        "search-attributes", help="register Muster's search attributes in a namespace"
    )
    attrs.add_argument("--namespace", help="namespace (default TEMPORAL_NAMESPACE)")
    attrs.set_defaults(func=_search_attributes)

    from muster_runtime.localstack import kube  # noqa: PLC0415 - argparse needs its options

    kube_up = sub.add_parser(
        "kube-up",
        parents=[kube.build_parser()],
        add_help=False,
        help="run a local kube-apiserver + etcd in the foreground (make kube-up)",
    )
    kube_up.set_defaults(func=kube.run)

    services = sub.add_parser("services", help="list the services `muster up` would run")
    services.set_defaults(func=_services)

    # Installed packages add commands (the operator package adds `apply`).
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
