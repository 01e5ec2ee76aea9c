"""The chart's Grafana dashboards as Grafana reads them: each one decoded strictly with the
Grafana Foundation SDK's types (``grafana-dashboard-check``, built by ``make chart-tools``)
with zero findings, and the dashboard lint rules of ``tests/dashboards.py``. Every check is
also run on a deliberately broken fixture (``tests/chart/dashboard_fixtures``) that it must
catch, so none of them can pass by checking nothing. (The metric-name rule needs the
services' real ``/metrics``: it runs in tests/e2e and tests/kube.)"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from muster_dev import dashgen
from tests.chart.support import BIN, SCHEMAS
from tests.dashboards import (
    DASHBOARDS,
    FIXTURES,
    STABLE_UIDS,
    fixed_datasources,
    fixed_rate_windows,
    load,
    missing_titles_and_descriptions,
    undefined_variables,
    unknown_types_and_units,
    unstable_uids,
    vocabulary,
)

pytestmark = pytest.mark.chart

CHECKER = BIN / "grafana-dashboard-check"


def check(*files: Path) -> subprocess.CompletedProcess[str]:
    assert CHECKER.exists(), f"{CHECKER} is missing: run `make chart-tools`"
    return subprocess.run([str(CHECKER), *map(str, files)],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def fixture(name: str) -> dict[str, dict[str, Any]]:
    return {name: load(FIXTURES)[name]}


# -- strict decode with Grafana's own types ---------------------------------------------------


def test_grafana_reads_every_dashboard_as_written() -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert len(files) == len(dashgen.DASHBOARDS)
    result = check(*files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert f"0 finding(s) in {len(files)} dashboard(s)" in result.stderr


def test_the_strict_decode_names_file_and_path_of_what_grafana_misreads() -> None:
    broken = FIXTURES / "grafana-misreads.json"
    result = check(broken)
    assert result.returncode == 1
    findings = result.stdout.splitlines()
    expected = [
        "$.panels[0].options.legend.displayMod: unknown field",
        "$.panels[0].options.tooltip: required field is missing",
        "$.panels[1].options.legend.showLegend: json: cannot unmarshal string",
        '$.panels[2].type: panel type "timeseriez" is not one Grafana ships',
        "$.refresh: json: cannot unmarshal number",
    ]
    for want in expected:
        assert any(line.startswith(f"{broken}: {want}") for line in findings), (want, findings)
    assert len(findings) == len(expected), findings


def test_the_checker_refuses_what_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"uid": "x",\n  "panels": [}\n')
    result = check(bad)
    assert result.returncode == 1
    assert "not valid JSON at line 2" in result.stdout
    missing = check(tmp_path / "nowhere.json")
    assert missing.returncode == 2
    assert "nowhere.json" in missing.stderr


def test_the_committed_dashboards_are_what_dashgen_writes() -> None:
    assert dashgen.main([str(DASHBOARDS), "--check"]) == 0


# -- lint rules: the chart's dashboards keep them, each broken fixture is caught ----------------


def test_every_variable_used_is_defined() -> None:
    assert undefined_variables(load()) == []
    (finding,) = undefined_variables(fixture("undefined-variable.json"))
    assert "$.panels[0].targets[0].expr: uses $service" in finding


def test_grafanas_builtin_variables_need_no_definition() -> None:
    dashboards = fixture("undefined-variable.json")
    target = dashboards["undefined-variable.json"]["panels"][0]["targets"][0]
    target["expr"] = "sum(increase(x[$__range])) / $__interval_ms * ${__rate_interval}"
    assert undefined_variables(dashboards) == []


def test_every_panel_reads_the_datasource_variable() -> None:
    assert fixed_datasources(load()) == []
    findings = fixed_datasources(fixture("fixed-datasource.json"))
    assert len(findings) == 2, findings
    assert all("'P1809F7CD0C75ACF3': use the ${datasource} variable" in f for f in findings)


def test_rates_use_the_rate_interval() -> None:
    assert fixed_rate_windows(load()) == []
    (finding,) = fixed_rate_windows(fixture("fixed-rate-window.json"))
    assert "rate() over [5m]: use [$__rate_interval]" in finding


def test_a_total_over_the_panels_range_is_only_for_instant_stats() -> None:
    dashboards = fixture("fixed-rate-window.json")
    panel = dashboards["fixed-rate-window.json"]["panels"][0]
    panel["targets"][0]["expr"] = "sum(increase(x[$__range]))"
    assert len(fixed_rate_windows(dashboards)) == 1  # a time series: not a total
    panel["type"] = "stat"
    panel["targets"][0]["instant"] = True
    assert fixed_rate_windows(dashboards) == []


def test_panel_types_and_units_are_ones_grafana_ships() -> None:
    panel_types, units = vocabulary(SCHEMAS)
    # Where the lists come from is the SDK module; a few we rely on, and one Grafana 12 dropped.
    assert {"timeseries", "stat", "table"} <= panel_types
    assert "graph" not in panel_types
    assert {"short", "ops", "reqps", "s", "ms", "bool"} <= units
    assert unknown_types_and_units(load(), panel_types, units) == []
    findings = unknown_types_and_units(fixture("unknown-type-and-unit.json"), panel_types, units)
    assert len(findings) == 2, findings
    assert "'graph' is not a panel type Grafana ships" in findings[0]
    assert "'requests/s' is not a unit Grafana knows" in findings[1]


def test_uids_are_stable_and_unique() -> None:
    dashboards = load()
    assert {f: d["uid"] for f, d in dashboards.items()} == STABLE_UIDS
    assert unstable_uids(dashboards) == []
    findings = unstable_uids(load(FIXTURES / "uids"))
    assert any("overview.json: $.uid: is 'muster-overview-v2', was 'muster-overview'" in f
               for f in findings), findings  # fmt: skip
    assert any("schedules.json: $.uid: is 'muster-overview-v2', was 'muster-schedules'" in f
               for f in findings), findings  # fmt: skip
    assert any("overview.json, schedules.json: $.uid: 'muster-overview-v2' is used by 2" in f
               for f in findings), findings  # fmt: skip


def test_every_panel_has_a_title_and_a_description() -> None:
    assert missing_titles_and_descriptions(load()) == []
    findings = missing_titles_and_descriptions(fixture("no-description.json"))
    assert len(findings) == 2, findings
    no_description = "$.panels[0] ('Orders by outcome').description: the panel has no description"
    assert no_description in findings[0]
    assert "$.panels[1].title: the panel has no title" in findings[1]
