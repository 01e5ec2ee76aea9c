"""``make histories``: record the workflow histories the replay gate replays.

``python -m tests.replay.record`` records every path that has no history file yet, for
every workflow type Muster registers (approval, order, scheduled runs, canary), and leaves
the files that exist alone: a history recorded by an older build is what proves that
today's code still runs the workflows that build started. ``NAME`` arguments
(``cancelled`` or ``Approval/cancelled``) record those paths again; ``--refresh`` records
every path again. A workflow type's name records all of its paths. Recording again is
right for a pinned type whose change ships as a new worker version (its running workflows
stay on the old build), or once no workflow of the old code can still be running (see
docs/development.md, "Changing a workflow").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from tests.replay import record_approval, record_fulfillment, record_scheduling
from tests.replay.recording import Recorder, Servers

RECORDERS: list[Recorder] = [
    record_approval.record,
    record_fulfillment.record,
    record_scheduling.record,
]


def known() -> set[str]:
    """Every path, as ``<workflow type>/<name>``."""
    names = {f"Approval/{n}" for n in [*record_approval.DEV_SERVER, *record_approval.TIME_SKIPPING]}
    names |= {f"OrderFulfillment/{n}" for n in record_fulfillment.DEV_SERVER}
    for workflow_type, paths in record_scheduling.PATHS.items():
        names |= {f"{workflow_type}/{n}" for n in paths}
    return names


async def main(names: list[str], refresh: bool) -> int:
    paths = known()
    short = {p.split("/", 1)[1] for p in paths} | {p.split("/", 1)[0] for p in paths}
    unknown = [n for n in names if n not in paths and n not in short]
    if unknown:
        print(
            f"unknown path(s) {', '.join(unknown)}; known: {', '.join(sorted(paths))}",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        servers = Servers(Path(tmp))
        try:
            for record in RECORDERS:
                await record(servers, set(names) if names else None, refresh)
        finally:
            await servers.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names",
        nargs="*",
        help="paths (name, Type/name or Type) to record again (default: missing ones)",
    )
    parser.add_argument("--refresh", action="store_true", help="record every path again")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.names, arguments.refresh)))
