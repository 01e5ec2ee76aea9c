"""The command line of every Muster process: ``--help`` lists the environment variables
that configure it (processes take no other arguments), anything else is refused."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence

from muster_runtime.docgen import load_settings_class, settings_rows
from muster_runtime.settings import TemporalSettings
from muster_runtime.spec import ServiceSpec

USAGE_STATUS = 2


def usage_text(prog: str, description: str, settings: str) -> str:
    """What ``--help`` prints: what the process is and every variable it reads."""
    settings_cls = load_settings_class(settings)
    lines = [
        f"usage: {prog} [--help]",
        "",
        f"{description}.",
        "Configured by environment variables only (documented in docs/configuration.md):",
        "",
    ]
    for cls in (TemporalSettings, settings_cls):
        for variable, type_text, default, text in settings_rows(cls):
            shown = f"  {variable.strip('`')}  ({type_text}"
            shown += f", default {default.strip('`')})" if default else ")"
            lines.append(shown)
            if text:
                lines += textwrap.wrap(text, width=88, initial_indent="      ",
                                       subsequent_indent="      ")  # fmt: skip
    return "\n".join(lines) + "\n"


def handle_command_line(
    prog: str, description: str, settings: str, argv: Sequence[str] | None = None
) -> None:
    """Print the usage and exit 0 on ``--help``/``-h``; exit 2 on any other argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        return
    if args[0] in {"-h", "--help"}:
        sys.stdout.write(usage_text(prog, description, settings))
        raise SystemExit(0)
    sys.stderr.write(
        f"{prog}: unexpected argument {args[0]!r}: this process is configured by environment "
        f"variables only; run '{prog} --help' to list them\n"
    )
    raise SystemExit(USAGE_STATUS)


def handle_service_command_line(spec: ServiceSpec, argv: Sequence[str] | None = None) -> None:
    """:func:`handle_command_line` for a service of ``muster up``."""
    handle_command_line(
        f"python -m {spec.module}", f"Muster {spec.description}", spec.settings, argv
    )
