"""The chart's alerts and dashboards against the real thing: ``promtool check rules`` on the
rules exactly as the chart renders them into its PrometheusRule, and a real Prometheus
(Debian's package) that loads those rules and parses every alert expression and every
dashboard query through its HTTP API. (Whether panels return data on a running stack is the
observability tier's job.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from muster_dev.process import free_port
from muster_dev.prometheus import PrometheusConfig, PrometheusServer, instant_query
from muster_runtime.polling import wait_until
from tests.chart.support import CHART, render
from tests.dashboards import panel_queries
from tests.kube.support import Run

pytestmark = pytest.mark.chart

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
if PROMETHEUS is None or PROMTOOL is None:  # pragma: no cover - make test installs them
    pytest.fail("prometheus/promtool missing: run `make prometheus`", pytrace=False)


@pytest.fixture(scope="module")
def rules_file(helm: Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rule groups of the rendered PrometheusRule, as a Prometheus rule file."""
    manifests = render(helm, "production")
    (rule,) = [m for m in manifests if m["kind"] == "PrometheusRule"]
    path = tmp_path_factory.mktemp("rules") / "muster-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_promtool_accepts_the_rendered_rules(rules_file: Path) -> None:
    assert PROMTOOL is not None
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_is_not_vacuous(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"alert": "Broken", "expr": "sum(rate(x[5m])"}]}]}))  # fmt: skip
    result = subprocess.run([PROMTOOL, "check", "rules", str(bad)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode != 0


@pytest.fixture(scope="module")
def prometheus(rules_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on loopback with the chart's rules loaded (scraping only itself)."""
    port = free_port()
    server = PrometheusServer(
        PrometheusConfig(
            port=port,
            data_dir=tmp_path_factory.mktemp("prometheus"),
            targets={"prometheus": [f"127.0.0.1:{port}"]},
            rule_files=[rules_file],
        )
    )
    server.start()
    yield server.config.url
    server.stop()


def alert_expressions(rules_file: Path) -> list[tuple[str, str]]:
    groups: list[dict[str, Any]] = yaml.safe_load(rules_file.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def test_prometheus_loaded_every_rule(prometheus: str, rules_file: Path) -> None:
    expected = {name for name, _ in alert_expressions(rules_file)}

    def loaded() -> set[str] | None:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
        names = {r["name"] for g in groups for r in g["rules"] if r["health"] != "err"}
        return names if names >= expected else None

    wait_until(loaded, what="the rules to be evaluated without errors", timeout=30)


def test_every_alert_and_panel_query_parses(prometheus: str, rules_file: Path) -> None:
    queries = [*alert_expressions(rules_file), *panel_queries()]
    assert len(queries) > 10
    problems = []
    for where, expr in queries:
        body = instant_query(prometheus, expr)
        if body.get("status") != "success":
            problems.append(f"{where}: {body.get('error')}\n    {expr}")
    assert not problems, "\n".join(problems)
    broken = instant_query(prometheus, "sum(rate(x[1m])")
    assert broken["status"] == "error", "a broken query must not pass"


def test_every_alert_has_a_runbook_section(rules_file: Path) -> None:
    runbooks = (CHART.parents[1] / "docs" / "runbooks.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in runbooks.splitlines()
        if line.startswith("## ")
    }
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    for rule in [r for g in groups for r in g["rules"] if "alert" in r]:
        link = rule["annotations"]["runbook"]
        assert link.startswith("docs/runbooks.md#"), rule["alert"]
        assert link.split("#", 1)[1] in anchors, f"{rule['alert']}: no section {link}"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}


# As scraped with honorLabels: the SDK's series carry the Temporal namespace ("default"),
# muster_service_info the pod's Kubernetes namespace ("shop").
NDE = (
    'temporal_workflow_task_execution_failed{namespace="default",instance="%s:9090",pod="%s",'
    'workflow_type="Approval",failure_reason="%s"}'
)
INFO = (
    'muster_service_info{namespace="shop",instance="%s:9090",pod="%s",service="approval",'
    'version="1",build_id="%s",worker_deployment="muster-approval"}'
)


def test_the_non_determinism_alert_fires_for_the_build_that_fails(
    rules_file: Path, tmp_path: Path
) -> None:
    """``promtool test rules`` on the rendered rules: a non-determinism error on the pod of
    build v2 fires MusterNonDeterminismError for v2 only; other task failures, and build
    v1 without errors, fire nothing."""
    assert PROMTOOL is not None
    series = [
        {"series": INFO % ("10.0.0.1", "approval-v1", "v1"), "values": "1x20"},
        {"series": INFO % ("10.0.0.2", "approval-v2", "v2"), "values": "1x20"},
        {"series": NDE % ("10.0.0.1", "approval-v1", "Workflow"), "values": "0 1 2 3 4 5 6 7 8"},
        {
            "series": NDE % ("10.0.0.2", "approval-v2", "NonDeterminismError"),
            "values": "_ _ _ 1 2 3 4",
        },
    ]
    alert = {"alertname": "MusterNonDeterminismError"}
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "2m", **alert, "exp_alerts": []},
                {"eval_time": "5m", **alert, "exp_alerts": [{
                    "exp_labels": {"severity": "critical", "namespace": "default",
                                   "workflow_type": "Approval", "build_id": "v2",
                                   "worker_deployment": "muster-approval"},
                    "exp_annotations": {
                        "summary": "Approval workflows do not replay on build v2: a code "
                        "change breaks running workflows, which are stuck until it is undone",
                        "runbook": "docs/runbooks.md#musternondeterminismerror",
                    },
                }]},
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run([PROMTOOL, "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_other_workflow_task_failures_fire_for_their_build_after_two_minutes(
    rules_file: Path, tmp_path: Path
) -> None:
    """MusterWorkflowTaskFailures: workflow tasks of build v1 failing for another reason
    than non-determinism fire it for v1 (and its Worker Deployment) once they went on for
    two minutes; v2's non-determinism errors are MusterNonDeterminismError's, not its."""
    assert PROMTOOL is not None
    series = [
        {"series": INFO % ("10.0.0.1", "approval-v1", "v1"), "values": "1x20"},
        {"series": INFO % ("10.0.0.2", "approval-v2", "v2"), "values": "1x20"},
        {"series": NDE % ("10.0.0.1", "approval-v1", "Workflow"), "values": "_ _ 1 2 3 4 5 6"},
        {"series": NDE % ("10.0.0.2", "approval-v2", "NonDeterminismError"),
         "values": "_ _ 1 2 3 4 5 6"},
    ]  # fmt: skip
    alert = {"alertname": "MusterWorkflowTaskFailures"}
    fired = {
        "exp_labels": {"severity": "warning", "namespace": "default",
                       "workflow_type": "Approval", "build_id": "v1",
                       "worker_deployment": "muster-approval"},
        "exp_annotations": {
            "summary": "Approval workflow tasks fail on build v1: the workflow code raises, and "
            "Temporal retries the task until the code changes",
            "runbook": "docs/runbooks.md#musterworkflowtaskfailures",
        },
    }  # fmt: skip
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "3m", **alert, "exp_alerts": []},
                {"eval_time": "6m", **alert, "exp_alerts": [fired]},
            ],
        }],
    }  # fmt: skip
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run([PROMTOOL, "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
