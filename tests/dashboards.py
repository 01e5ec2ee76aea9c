"""The chart's Grafana dashboards, read the way the tests check them: their Prometheus
queries (with Grafana's variables filled in), and the lint rules every dashboard must pass.

Each rule takes ``{file name: dashboard}`` and returns findings (``file: where: what``); an
empty list means the dashboards keep it. ``tests/chart/test_dashboards.py`` runs the rules
that need nothing running, each against a broken fixture too; the metric-name rule needs
the services' real ``/metrics`` and runs in the e2e and kube tiers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "charts" / "muster" / "dashboards"
FIXTURES = Path(__file__).resolve().parent / "chart" / "dashboard_fixtures"

Dashboards = Mapping[str, dict[str, Any]]

# Grafana's built-in ("global") variables, from Grafana's documentation page "Global
# variables" (grafana.com/docs/grafana/latest/visualizations/dashboards/variables/
# global-variables/); a dashboard may use them without defining them.
GRAFANA_BUILTINS = frozenset({
    "__all_variables", "__dashboard", "__from", "__interval", "__interval_ms", "__name",
    "__org", "__range", "__range_ms", "__range_s", "__rate_interval", "__rate_interval_ms",
    "__timeFilter", "__timezone", "__to", "__url_time_range", "__user", "timeFilter",
})  # fmt: skip

# $var, ${var}, ${var:format}, and the deprecated [[var]] / [[var:format]].
VARIABLE_USE = re.compile(r"\$(\w+)|\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]")

# Expected uids, by file: links and bookmarks point at these, so a change is deliberate.
STABLE_UIDS = {
    "approvals.json": "muster-approvals",
    "fulfillment.json": "muster-fulfillment",
    "operator.json": "muster-operator",
    "overview.json": "muster-overview",
    "schedules.json": "muster-schedules",
    "temporal-workers.json": "muster-temporal-workers",
}

# Metrics only the operator exposes; it needs Kubernetes, so the local stack of the e2e tier
# does not run it and tests/kube checks these names against the running operator instead.
OPERATOR_PREFIXES = ("controller_runtime_", "workqueue_", "muster_operator_")
OPERATOR_METRICS = frozenset({"muster_approvals_pending", "muster_task_queue_pollers"})


def operator_only(metric: str) -> bool:
    """Whether only the operator exposes ``metric``."""
    return metric.startswith(OPERATOR_PREFIXES) or metric in OPERATOR_METRICS


def checker() -> Path:
    """``grafana-dashboard-check``, built by ``make chart-tools`` (or ``make dashboard-check``)."""
    binary = Path(os.environ.get("MUSTER_BIN_DIR") or REPO / "bin") / "grafana-dashboard-check"
    assert binary.exists(), f"{binary} is missing: run `make dashboard-check`"
    return binary


# Labels a metric gets from where it is scraped rather than from the code that emits it:
# the Prometheus Operator's ServiceMonitor/PodMonitor targets (namespace, pod, container,
# service, endpoint), and job/instance from Prometheus itself.
TARGET_LABELS = frozenset({"namespace", "pod", "container", "service", "endpoint", "job",
                           "instance"})  # fmt: skip


def load(folder: Path = DASHBOARDS) -> dict[str, dict[str, Any]]:
    """Every dashboard in a folder, by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON path, panel) of every panel, rows' collapsed panels included."""
    for i, panel in enumerate(dashboard.get("panels", [])):
        yield f"$.panels[{i}]", panel
        for j, inner in enumerate(panel.get("panels", [])):
            yield f"$.panels[{i}].panels[{j}]", inner


def _where(file: str, path: str, panel: dict[str, Any] | None = None) -> str:
    title = f" ({panel.get('title')!r})" if panel and panel.get("title") else ""
    return f"{file}: {path}{title}"


def substitute(expr: str, panel: dict[str, Any]) -> str:
    """A query as Grafana sends it with every variable at "All" (``.*``): a one-minute rate
    interval, and ``$__range`` the panel's ``timeFrom`` (or the dashboards' six hours)."""
    expr = expr.replace("$__rate_interval", "1m")
    expr = expr.replace("$__range", panel.get("timeFrom") or "6h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, ready to send to Prometheus."""

    file: str
    panel: dict[str, Any]
    target: dict[str, Any]
    where: str
    expr: str = field(compare=False)


def queries(dashboards: Dashboards | None = None) -> list[PanelQuery]:
    """Every panel target of every dashboard, variables filled in."""
    found = []
    for file, dashboard in (dashboards or load()).items():
        for _, panel in panels(dashboard):
            for target in panel.get("targets", []):
                where = f"{Path(file).stem}: {panel.get('title')}"
                expr = substitute(target["expr"], panel)
                found.append(PanelQuery(file, panel, target, where, expr))
    return found


def panel_queries() -> list[tuple[str, str]]:
    """(where, expression) of every panel target of every dashboard."""
    return [(q.where, q.expr) for q in queries()]


# --- rules ------------------------------------------------------------------------------


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")


def undefined_variables(dashboards: Dashboards) -> list[str]:
    """Every ``$var``/``${var}``/``[[var]]`` names a template variable of its dashboard or
    one of Grafana's built-ins. A variable's ``current`` and ``options`` hold values (like
    ``$__all``), not references, and are not read."""
    findings = []
    for file, dashboard in dashboards.items():
        defined = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
        readable = {k: v for k, v in dashboard.items() if k != "templating"}
        texts = list(_strings(readable, "$"))
        for i, variable in enumerate(dashboard.get("templating", {}).get("list", [])):
            kept = {k: v for k, v in variable.items() if k not in ("current", "options")}
            texts.extend(_strings(kept, f"$.templating.list[{i}]"))
        for path, text in texts:
            for match in VARIABLE_USE.finditer(text):
                name = next(g for g in match.groups() if g)
                if name not in defined and name not in GRAFANA_BUILTINS:
                    findings.append(
                        f"{file}: {path}: uses ${name}, which is neither a variable of this "
                        f"dashboard ({', '.join(sorted(n for n in defined if n))}) nor one of "
                        "Grafana's built-ins"
                    )
    return findings


def _datasource_problem(ref: Any) -> str | None:
    if not isinstance(ref, dict):
        return f"datasource is {ref!r}, not {{type: prometheus, uid: ${{datasource}}}}"
    if ref.get("uid") != "${datasource}":
        return (
            f"datasource uid is {ref.get('uid')!r}: use the ${{datasource}} variable, never a "
            "fixed uid (it differs in every Grafana)"
        )
    if ref.get("type") != "prometheus":
        return f"datasource type is {ref.get('type')!r}, not prometheus"
    return None


def fixed_datasources(dashboards: Dashboards) -> list[str]:
    """Every panel, target and query variable reads the ``${datasource}`` variable, which
    must exist as a Prometheus datasource variable."""
    findings = []
    for file, dashboard in dashboards.items():
        variables = dashboard.get("templating", {}).get("list", [])
        source = [v for v in variables if v.get("name") == "datasource"]
        if (
            not source
            or source[0].get("type") != "datasource"
            or (source[0].get("query") != "prometheus")
        ):
            findings.append(f"{file}: $.templating: no `datasource` variable of Prometheus sources")
        for path, panel in panels(dashboard):
            if panel.get("type") == "row":
                continue
            if problem := _datasource_problem(panel.get("datasource")):
                findings.append(f"{_where(file, path, panel)}: {problem}")
            for j, target in enumerate(panel.get("targets", [])):
                if problem := _datasource_problem(target.get("datasource")):
                    findings.append(f"{_where(file, path, panel)}.targets[{j}]: {problem}")
        for i, variable in enumerate(variables):
            if variable.get("type") == "query" and (
                problem := _datasource_problem(variable.get("datasource"))
            ):
                findings.append(f"{file}: $.templating.list[{i}]: {problem}")
    return findings


RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase)\s*\(")


def _ranges(expr: str, start: int) -> list[str]:
    """The ``[...]`` ranges directly inside the call whose ``(`` is at ``start``."""
    depth, found, i = 0, [], start
    while i < len(expr):
        char = expr[i]
        if char == '"':
            i = expr.index('"', i + 1)
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                break
        elif char == "[" and depth == 1:
            end = expr.index("]", i)
            found.append(expr[i + 1 : end])
            i = end
        i += 1
    return found


def fixed_rate_windows(dashboards: Dashboards) -> list[str]:
    """rate(), irate() and increase() use ``$__rate_interval``, which Grafana keeps at least
    four scrape intervals wide whatever the zoom. The one exception is a total over the
    panel's whole window, ``increase(x[$__range])``, in an instant stat or table."""
    findings = []
    for file, dashboard in dashboards.items():
        for path, panel in panels(dashboard):
            for j, target in enumerate(panel.get("targets", [])):
                expr = target.get("expr", "")
                for match in RANGE_FUNCTIONS.finditer(expr):
                    for window in _ranges(expr, match.end() - 1):
                        if window == "$__rate_interval":
                            continue
                        total = (
                            match.group(1) == "increase"
                            and window == "$__range"
                            and panel.get("type") in ("stat", "table")
                            and target.get("instant") is True
                        )
                        if not total:
                            findings.append(
                                f"{_where(file, path, panel)}.targets[{j}]: {match.group(1)}() "
                                f"over [{window}]: use [$__rate_interval] (or "
                                "increase(...[$__range]) for a total in an instant stat or table)"
                            )
    return findings


def _units(panel: dict[str, Any]) -> Iterator[tuple[str, str]]:
    config = panel.get("fieldConfig", {})
    if "unit" in config.get("defaults", {}):
        yield ".fieldConfig.defaults.unit", config["defaults"]["unit"]
    for i, override in enumerate(config.get("overrides", [])):
        for j, prop in enumerate(override.get("properties", [])):
            if prop.get("id") == "unit":
                yield f".fieldConfig.overrides[{i}].properties[{j}]", prop.get("value")


def unknown_types_and_units(
    dashboards: Dashboards, panel_types: frozenset[str], units: frozenset[str]
) -> list[str]:
    """Every panel type and unit is one Grafana ships (``vocabulary()`` lists them), and
    every panel has a unit."""
    findings = []
    for file, dashboard in dashboards.items():
        for path, panel in panels(dashboard):
            kind = panel.get("type")
            if kind not in panel_types and kind != "row":
                findings.append(
                    f"{_where(file, path, panel)}.type: {kind!r} is not a panel type Grafana ships"
                )
            if kind == "row":
                continue
            found = list(_units(panel))
            if not found:
                findings.append(f"{_where(file, path, panel)}: no unit (fieldConfig.defaults.unit)")
            for where, unit in found:
                if unit not in units:
                    findings.append(
                        f"{_where(file, path, panel)}{where}: {unit!r} is not a unit Grafana knows"
                    )
    return findings


UID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def unstable_uids(dashboards: Dashboards, expected: Mapping[str, str] = STABLE_UIDS) -> list[str]:
    """Each dashboard keeps the uid it shipped with (links and bookmarks use it); uids are
    unique across the chart and valid for Grafana (at most 40 of ``A-Za-z0-9_-``); panel ids
    are unique within each dashboard."""
    findings = []
    owners: dict[str, list[str]] = {}
    for file, dashboard in dashboards.items():
        uid = dashboard.get("uid")
        owners.setdefault(str(uid), []).append(file)
        if file not in expected:
            findings.append(f"{file}: $.uid: a new dashboard: add its uid to STABLE_UIDS")
        elif uid != expected[file]:
            findings.append(
                f"{file}: $.uid: is {uid!r}, was {expected[file]!r}: a changed uid breaks every "
                "link and bookmark to the dashboard"
            )
        if not isinstance(uid, str) or not UID_SHAPE.match(uid):
            findings.append(f"{file}: $.uid: {uid!r} is not 1-40 characters of A-Za-z0-9_-")
        ids: dict[Any, str] = {}
        for path, panel in panels(dashboard):
            if panel.get("id") in ids:
                findings.append(
                    f"{file}: {path}.id: {panel.get('id')} is also the id of {ids[panel['id']]}"
                )
            ids.setdefault(panel.get("id"), path)
    for uid, files in owners.items():
        if len(files) > 1:
            findings.append(
                f"{', '.join(files)}: $.uid: {uid!r} is used by {len(files)} dashboards"
            )
    return findings


def missing_titles_and_descriptions(dashboards: Dashboards) -> list[str]:
    """Every dashboard and every panel has a title and a description (Grafana shows the
    description as the panel's tooltip: what it shows and what to do about it)."""
    findings = []
    for file, dashboard in dashboards.items():
        for key in ("title", "description"):
            if not str(dashboard.get(key) or "").strip():
                findings.append(f"{file}: $.{key}: the dashboard has no {key}")
        for path, panel in panels(dashboard):
            for key in ("title", "description"):
                if panel.get("type") == "row" and key == "description":
                    continue
                if not str(panel.get(key) or "").strip():
                    findings.append(f"{_where(file, path, panel)}.{key}: the panel has no {key}")
    return findings


# --- metric names ------------------------------------------------------------------------

Catalogue = dict[str, set[str]]
"""Metric name -> the label names its series carry, as services expose them."""

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def catalogue(exposition: str, into: Catalogue | None = None) -> Catalogue:
    """Fold one ``/metrics`` body (Prometheus text format) into a catalogue. Only series
    count: a family that is declared but has no series yet is not there to read."""
    found: Catalogue = {} if into is None else into
    for line in exposition.splitlines():
        if line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if match:
            found.setdefault(match.group(1), set()).update(LABEL.findall(match.group(3) or ""))
    return found


LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.DOTALL)


def analyse(binary: Path, expressions: list[str]) -> list[dict[str, Any]]:
    """What each expression selects, from Prometheus' PromQL parser in the dashboard checker
    (``grafana-dashboard-check -promql``)."""
    result = subprocess.run([str(binary), "-promql"], input=json.dumps(expressions),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    analyses: list[dict[str, Any]] = json.loads(result.stdout)
    return analyses


LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def unknown_metrics(
    dashboards: Dashboards,
    emitted: Catalogue,
    *,
    only: Callable[[str], bool] | None = None,
) -> list[str]:
    """Every metric a query (or a ``label_values`` variable) reads is one the services emit,
    with the label names it relies on (matchers, ``by``/``on`` lists, ``{{label}}`` in the
    legend), apart from the labels scraping adds. ``only(metric)`` limits the check to the
    metrics one tier can see."""
    checked: list[tuple[str, str, str | None]] = []  # (where, expression, legend)
    for file, dashboard in dashboards.items():
        for i, variable in enumerate(dashboard.get("templating", {}).get("list", [])):
            if variable.get("type") != "query":
                continue
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query)
            match = LABEL_VALUES.match(text.strip())
            if match is None:
                continue
            selector, label = match.groups()
            expr = f"count by ({label}) ({substitute(selector, {})})"
            checked.append((f"{file}: $.templating.list[{i}] ({variable.get('name')})", expr, None))
        for path, panel in panels(dashboard):
            for j, target in enumerate(panel.get("targets", [])):
                where = f"{_where(file, path, panel)}.targets[{j}]"
                checked.append(
                    (where, substitute(target["expr"], panel), target.get("legendFormat"))
                )
    findings = []
    analyses = analyse(checker(), [expr for _, expr, _ in checked])
    for (where, _expr, legend), analysis in zip(checked, analyses, strict=True):
        if analysis.get("error"):
            findings.append(f"{where}: PromQL does not parse: {analysis['error']}")
            continue
        metrics = [m for m in analysis["metrics"] if only is None or only(m)]
        for metric in metrics:
            if metric not in emitted:
                findings.append(f"{where}: metric {metric} is not exposed by any service")
        for use in analysis["uses"]:
            users = [m for m in use["metrics"] if m in emitted and (only is None or only(m))]
            if not users:
                continue
            have = set().union(*(emitted[m] for m in users)) | TARGET_LABELS
            for label in use["labels"]:
                if label not in have:
                    findings.append(
                        f"{where}: label {label!r} ({use['clause']}) is on no series of "
                        f"{', '.join(users)} (they have: {', '.join(sorted(have - TARGET_LABELS))})"
                    )
        if legend and metrics and all(m in emitted for m in metrics):
            result = analysis["resultLabels"]
            have = (
                set(result)
                if result is not None
                else (set().union(*(emitted[m] for m in metrics)) | TARGET_LABELS)
            )
            for label in LEGEND_LABEL.findall(legend):
                if label not in have:
                    findings.append(
                        f"{where}: the legend shows {{{{{label}}}}}, which the query's series "
                        f"do not carry (they have: {', '.join(sorted(have)) or 'none'})"
                    )
    return findings


def metrics_used(dashboards: Dashboards) -> set[str]:
    """Every metric name the dashboards' panels and variables read."""
    exprs = [q.expr for q in queries(dashboards)]
    for dashboard in dashboards.values():
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query)
            if match := LABEL_VALUES.match(text.strip()):
                exprs.append(substitute(match.group(1), {}))
    return {m for a in analyse(checker(), exprs) for m in a["metrics"]}


# --- the SDK's vocabulary ------------------------------------------------------------------


def sdk_version() -> str:
    """The Grafana Foundation SDK version pinned in ``infra/dashcheck/go.mod``."""
    for line in (REPO / "infra" / "dashcheck" / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "github.com/grafana/grafana-foundation-sdk/go":
            return parts[1]
    raise AssertionError("infra/dashcheck/go.mod does not require the Grafana Foundation SDK")


def vocabulary(schemas: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(panel types, units) as the Grafana Foundation SDK lists them: ``make chart-tools``
    extracts both from the SDK module pinned in ``infra/dashcheck/go.mod``."""
    folder = schemas / f"grafana-foundation-sdk-{sdk_version()}"
    assert folder.is_dir(), f"{folder} is missing: run `make chart-tools`"

    def read(name: str) -> frozenset[str]:
        lines = (folder / name).read_text().splitlines()
        return frozenset(
            line.strip() for line in lines if line.strip() and not line.startswith("#")
        )

    return read("panel-types.txt"), read("units.txt")
