"""The chart's Grafana dashboards as Prometheus queries, for the tests that run them."""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARDS = Path(__file__).resolve().parents[1] / "charts" / "muster" / "dashboards"


def panel_queries() -> list[tuple[str, str]]:
    """(where, expression) of every panel target of every dashboard, with the variables
    filled in as Grafana would for "All" (``.*``) and a one-minute rate interval."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$__rate_interval", "1m")
                expr = re.sub(r"\$\{?\w+\}?", ".*", expr)
                found.append((f"{path.stem}: {panel['title']}", expr))
    return found
