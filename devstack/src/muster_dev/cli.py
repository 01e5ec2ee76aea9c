"""The development stack's ``muster`` commands: ``up``, ``kube-up``, ``cluster`` and ``services``.

Registered through the ``muster.commands`` entry points, so they appear in ``muster --help``
wherever ``muster-dev`` is installed (the workspace's dev environment), and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from muster_runtime.settings import SettingsError, load_settings


def _print_err(message: str) -> None:
    print(message, file=sys.stderr)


def _up(args: argparse.Namespace) -> int:
    from muster_dev.stack import StackError, StackSettings, run_stack  # noqa: PLC0415

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "state_dir": args.state_dir,
            "temporal": args.temporal,
            "host": args.host,
            "temporal_port": args.temporal_port,
            "ui_port": args.ui_port,
            "postgres_port": args.postgres_port,
            "base_port": args.base_port,
            "namespace": args.namespace,
            "services": args.services,
            "examples": args.examples,
            "schedules": args.schedules,
            "prometheus_port": args.prometheus_port,
            "build_id": args.build_id,
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


def _services(_: argparse.Namespace) -> int:
    from muster_dev.stack import discover_services  # noqa: PLC0415

    for spec in discover_services():
        print(f"{spec.name:<14} {spec.kind:<7} python -m {spec.module:<36} {spec.description}")
    return 0


def register(sub: Any) -> None:
    """Add ``up``, ``kube-up``, ``cluster`` and ``services`` to the ``muster`` command's
    subparsers."""
    up = sub.add_parser("up", help="run the local stack in the foreground (Ctrl-C stops it)")
    up.add_argument("--state-dir", type=Path, help="Temporal's data, logs, lock (default .state)")
    up.add_argument(
        "--temporal",
        choices=["dev", "server"],
        help="'dev': the Temporal dev server, starts in seconds, with the Web UI (default); "
        "'server': the real Temporal server on PostgreSQL (`make temporal-server`)",
    )
    up.add_argument("--host", help="address to bind Temporal and the UI (default 127.0.0.1)")
    up.add_argument("--temporal-port", type=int, help="Temporal frontend port (default 7233)")
    up.add_argument("--ui-port", type=int, help="Temporal Web UI port (default 8233)")
    up.add_argument(
        "--postgres-port",
        type=int,
        help="PostgreSQL port with --temporal server (default 5433)",
    )
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
        "--examples",
        type=Path,
        help="folder of the example policies, people and demo tokens the local services "
        "read (default examples)",
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
    up.add_argument(
        "--build-id",
        help="build id the workers run as (Worker Versioning; default the git revision, or a "
        "hash of the sources outside a checkout; 'none' runs them unversioned)",
    )
    up.set_defaults(func=_up)

    from muster_dev import kube  # noqa: PLC0415 - argparse needs its options

    kube_up = sub.add_parser(
        "kube-up",
        parents=[kube.build_parser()],
        add_help=False,
        help="run a local kube-apiserver + etcd in the foreground (make kube-up)",
    )
    kube_up.set_defaults(func=kube.run)

    services = sub.add_parser("services", help="list the services `muster up` would run")
    services.set_defaults(func=_services)

    from muster_dev import cluster  # noqa: PLC0415 - argparse needs its options

    cluster.register(sub)
