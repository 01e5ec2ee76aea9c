"""Generates the chart's Grafana dashboards (``charts/muster/dashboards/*.json``).

The panels below are the one source of truth: ``make generate`` writes every dashboard in
full, as Grafana's own schema spells it (the Grafana Foundation SDK decodes each one strictly
in the tests), and ``make verify`` fails when a JSON file has drifted from this module.
Conventions, checked by the tests: every panel reads the ``${datasource}`` variable, rates
use ``$__rate_interval``, totals over a fixed window use ``$__range`` with the panel's
``timeFrom``, and every panel says what it shows in its description.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 42
"""The dashboard schema version of the Grafana Foundation SDK types the tests decode with."""

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
ALL = ".*"
TAG = "muster"

PanelKind = Literal["timeseries", "stat", "table"]


@dataclass(frozen=True)
class Query:
    """One PromQL target; ``legend`` is Grafana's legend format (``{{label}}``)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One panel. Stats and tables ask for an instant value; ``time_from`` pins the window
    of a total (``increase(x[$__range])`` over the last hour, say) whatever the dashboard's
    time range."""

    kind: PanelKind
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    time_from: str | None = None
    red_from: float | None = None
    """Stats: the value from which the number turns red (green below)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Tables: header of each column, by label name (``Value`` is the number)."""


@dataclass(frozen=True)
class Variable:
    """A query variable filled from ``label_values(selector, label)``, multi-valued with All."""

    name: str
    label: str
    selector: str

    @property
    def query(self) -> str:
        return f"label_values({self.selector}, {self.name})"


@dataclass(frozen=True)
class Dashboard:
    """One dashboard file: ``<stem>.json`` with a uid that never changes (links use it)."""

    stem: str
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    panels: tuple[Panel, ...]


def _timeseries(title: str, description: str, unit: str, *queries: Query, width: int = 12) -> Panel:
    return Panel("timeseries", title, description, unit, queries, width=width)


def _stat(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    time_from: str | None = None,
    red_from: float | None = None,
) -> Panel:
    return Panel(
        "stat", title, description, unit, (query,), 6, 4, time_from=time_from, red_from=red_from
    )


def _table(
    title: str, description: str, query: Query, columns: dict[str, str], *, time_from: str | None
) -> Panel:
    return Panel("table", title, description, "short", (query,), 24, 6, time_from, columns=columns)


NAMESPACE = Variable("namespace", "Namespace", "muster_service_info")
NS = 'namespace=~"$namespace"'


def _rate(metric: str, matchers: str = NS) -> str:
    return f"rate({metric}{{{matchers}}}[$__rate_interval])"


def _p(quantile: float, metric: str, by: str, matchers: str = NS) -> str:
    inner = _rate(f"{metric}_bucket", matchers)
    return f"histogram_quantile({quantile}, sum by (le, {by}) ({inner}))"


OVERVIEW = Dashboard(
    "overview",
    "muster-overview",
    "Muster / Overview",
    "Every pattern at a glance: orders, approvals, schedules, and whether each service is ready.",
    (NAMESPACE,),
    (
        _stat(
            "Orders fulfilled (1h)",
            "Orders that completed every step in the last hour.",
            "short",
            Query(
                f'sum(increase(muster_orders_completed{{{NS},outcome="fulfilled"}}[$__range]))',
                "fulfilled",
            ),
            time_from="1h",
        ),
        _stat(
            "Orders needing attention",
            "Orders parked for a person after a compensation kept failing; "
            "resolve them with `muster-orders resolve`.",
            "short",
            Query(f"max(muster_orders_needing_attention{{{NS}}})", "needs attention"),
            red_from=1,
        ),
        _stat(
            "Approvals pending",
            "Approval requests waiting for a decision, as the operator last counted them.",
            "short",
            Query(f"sum(muster_approvals_pending{{{NS}}})", "pending"),
        ),
        _stat(
            "Operator reconcile errors (1h)",
            "Reconciles of Schedule and ApprovalPolicy resources that failed in the last hour.",
            "short",
            Query(
                f"sum(increase(controller_runtime_reconcile_errors_total{{{NS}}}[$__range]))",
                "errors",
            ),
            time_from="1h",
            red_from=1,
        ),
        _timeseries(
            "Orders by outcome",
            "Orders finished per second: fulfilled, compensated (rolled back) or failed.",
            "ops",
            Query(f"sum by (outcome) ({_rate('muster_orders_completed')})", "{{outcome}}"),
        ),
        _timeseries(
            "Approvals by outcome",
            "Approval requests decided per second, by how they ended "
            "(approved, rejected, or by timeout).",
            "ops",
            Query(f"sum by (outcome) ({_rate('muster_approvals_completed')})", "{{outcome}}"),
        ),
        _timeseries(
            "Schedule syncs by outcome",
            "Writes of Temporal schedules by the operator: created, updated, corrected, recreated.",
            "ops",
            Query(
                f"sum by (outcome) ({_rate('muster_operator_schedule_syncs_total')})",
                "{{outcome}}",
            ),
        ),
        _timeseries(
            "Readiness checks failing",
            "1 while a service's readiness check fails (muster_ready), by pod and check.",
            "short",
            Query(f"sum by (pod, check) (1 - muster_ready{{{NS}}})", "{{pod}} {{check}}"),
        ),
        _table(
            "Running services",
            "Muster processes reporting in, by service, version and the build id their "
            "worker runs as (muster_service_info; unversioned: no build id).",
            Query(
                f"count by (service, version, build_id) (muster_service_info{{{NS}}})",
                "{{service}} {{version}} {{build_id}}",
            ),
            {
                "service": "Service",
                "version": "Version",
                "build_id": "Build",
                "Value": "Processes",
            },
            time_from=None,
        ),
    ),
)

FULFILLMENT = Dashboard(
    "fulfillment",
    "muster-fulfillment",
    "Muster / Order fulfillment",
    "The order saga: outcomes, compensations by step, orders waiting for a person, and the "
    "backends' answers.",
    (NAMESPACE,),
    (
        _timeseries(
            "Orders by outcome",
            "Orders finished per second: fulfilled, compensated (rolled back) or failed.",
            "ops",
            Query(f"sum by (outcome) ({_rate('muster_orders_completed')})", "{{outcome}}"),
        ),
        _timeseries(
            "Compensations by step and outcome",
            "Undo steps run per second (release stock, refund, cancel shipment), "
            "by step and whether they succeeded.",
            "ops",
            Query(
                f"sum by (step, outcome) ({_rate('muster_order_compensations')})",
                "{{step}} {{outcome}}",
            ),
        ),
        _timeseries(
            "Orders needing attention",
            "Orders parked for a person right now, counted from Temporal's visibility by the "
            "fulfillment worker.",
            "short",
            Query(f"max(muster_orders_needing_attention{{{NS}}})", "needs attention"),
        ),
        _timeseries(
            "Orders parked for a person",
            "How often an order was parked because a compensation kept failing (per second).",
            "ops",
            Query(f"sum({_rate('muster_order_attention_events')})", "parked"),
        ),
        _timeseries(
            "Backend calls by outcome",
            "Requests the reference backends answered per second, by backend and outcome "
            "(ok, replayed, business, conflict, invalid, fault, lost_response).",
            "reqps",
            Query(
                f"sum by (backend, outcome) ({_rate('muster_backend_requests_total')})",
                "{{backend}} {{outcome}}",
            ),
        ),
        _timeseries(
            "Backend latency p99",
            "99th percentile of the time the backends took to answer, by backend.",
            "s",
            Query(_p(0.99, "muster_backend_request_duration_seconds", "backend"), "{{backend}}"),
        ),
        _timeseries(
            "Saga activity latency p99",
            "99th percentile of one attempt of each saga step (an activity), as the "
            "fulfillment worker measured it.",
            "ms",
            Query(
                _p(
                    0.99,
                    "temporal_activity_execution_latency",
                    "activity_type",
                    f'{NS},task_queue=~"muster-fulfillment.*"',
                ),
                "{{activity_type}}",
            ),
        ),
        _timeseries(
            "Activity failures by type",
            "Failed attempts of saga steps per second (Temporal retries transient ones; a "
            "declined card fails once and compensates).",
            "ops",
            Query(
                "sum by (activity_type) ("
                + _rate(
                    "temporal_activity_execution_failed", f'{NS},task_queue=~"muster-fulfillment.*"'
                )
                + ")",
                "{{activity_type}}",
            ),
        ),
    ),
)

POLICY = Variable("policy", "Policy", 'muster_approvals_pending{namespace=~"$namespace"}')
NS_POLICY = f'{NS}, policy=~"$policy"'

APPROVALS = Dashboard(
    "approvals",
    "muster-approvals",
    "Muster / Approvals",
    "Human-in-the-loop approvals: what waits, how requests end, how long people take, escalations.",
    (NAMESPACE, POLICY),
    (
        _timeseries(
            "Pending by policy",
            "Approval requests waiting for a decision, by policy (the operator counts them at "
            "every resync).",
            "short",
            Query(f"sum by (policy) (muster_approvals_pending{{{NS_POLICY}}})", "{{policy}}"),
        ),
        _timeseries(
            "Outcomes by policy",
            "Requests decided per second, by policy and outcome.",
            "ops",
            Query(
                f"sum by (policy, outcome) ({_rate('muster_approvals_completed', NS_POLICY)})",
                "{{policy}} {{outcome}}",
            ),
        ),
        _timeseries(
            "Decision latency p50 / p90",
            "From request to outcome: the median and 90th percentile, by policy.",
            "s",
            Query(
                _p(0.5, "muster_approval_decision_seconds", "policy", NS_POLICY), "p50 {{policy}}"
            ),
            Query(
                _p(0.9, "muster_approval_decision_seconds", "policy", NS_POLICY), "p90 {{policy}}"
            ),
        ),
        _timeseries(
            "Escalations",
            "Deadlines that passed a request up its policy's escalation chain, per second.",
            "ops",
            Query(
                f"sum by (policy) ({_rate('muster_approval_escalations', NS_POLICY)})",
                "{{policy}}",
            ),
        ),
        _table(
            "Decided by timeout (24h)",
            "Requests nobody decided in time in the last 24 hours: the policy's onTimeout "
            "approved or rejected them.",
            Query(
                "sum by (policy) (increase(muster_approvals_completed{"
                f'{NS_POLICY},outcome=~".+_on_timeout"}}[$__range]))',
                "{{policy}}",
            ),
            {"policy": "Policy", "Value": "Requests"},
            time_from="24h",
        ),
    ),
)

SCHEDULES = Dashboard(
    "schedules",
    "muster-schedules",
    "Muster / Schedules",
    "Schedule resources in Temporal: syncs, drift the operator corrected, workers on the "
    "schedules' task queues, and the scheduled runs.",
    (NAMESPACE,),
    (
        _timeseries(
            "Schedule syncs by outcome",
            "Writes of Temporal schedules by the operator: created, updated, corrected, recreated.",
            "ops",
            Query(
                f"sum by (outcome) ({_rate('muster_operator_schedule_syncs_total')})",
                "{{outcome}}",
            ),
        ),
        _timeseries(
            "Drift corrections",
            "Temporal schedules changed outside the operator and put back, per second.",
            "ops",
            Query(
                f"sum by (controller) ({_rate('muster_operator_drift_corrections_total')})",
                "{{controller}}",
            ),
        ),
        _timeseries(
            "Workers polling each schedule's task queue",
            "Workers polling the task queue of each Schedule's workflow, as Temporal last "
            "reported; 0 means scheduled runs start but nothing runs them.",
            "short",
            Query(f"max by (task_queue) (muster_task_queue_pollers{{{NS}}})", "{{task_queue}}"),
        ),
        _timeseries(
            "Scheduled workflows completed",
            "Runs of scheduled workflows that completed per second, by workflow type.",
            "ops",
            Query(
                "sum by (workflow_type) ("
                + _rate("temporal_workflow_completed", f'{NS},task_queue=~"muster-scheduling.*"')
                + ")",
                "{{workflow_type}}",
            ),
        ),
        _timeseries(
            "Scheduled workflows failed",
            "Runs of scheduled workflows that failed per second, by workflow type (a health "
            "check that found a backend unhealthy, say).",
            "ops",
            Query(
                "sum by (workflow_type) ("
                + _rate("temporal_workflow_failed", f'{NS},task_queue=~"muster-scheduling.*"')
                + ")",
                "{{workflow_type}}",
            ),
        ),
        _timeseries(
            "Reconcile errors (schedules)",
            "Reconciles of Schedule resources that failed per second.",
            "ops",
            Query(
                "sum("
                + _rate("controller_runtime_reconcile_errors_total", f'{NS},controller="schedule"')
                + ")",
                "errors",
            ),
        ),
    ),
)

OPERATOR_SCOPE = f'{NS}, pod=~"$pod"'

OPERATOR = Dashboard(
    "operator",
    "muster-operator",
    "Muster / Operator",
    "The Muster operator: reconciles of Schedule and ApprovalPolicy resources into Temporal.",
    (
        Variable("namespace", "Namespace", "controller_runtime_reconcile_total"),
        Variable("pod", "Pod", 'controller_runtime_reconcile_total{namespace=~"$namespace"}'),
    ),
    (
        _stat(
            "Temporal reachable",
            "1 when the operator's last call to Temporal worked, 0 when it failed.",
            "bool",
            Query(f"min(muster_operator_temporal_up{{{OPERATOR_SCOPE}}})", "up"),
        ),
        _stat(
            "Reconciles in flight",
            "Reconciles running right now, by controller.",
            "short",
            Query(
                f"sum by (controller) (controller_runtime_active_workers{{{OPERATOR_SCOPE}}})",
                "{{controller}}",
            ),
        ),
        _stat(
            "Reconcile errors (rate)",
            "Reconciles that failed per second, over all controllers.",
            "reqps",
            Query(
                f"sum({_rate('controller_runtime_reconcile_errors_total', OPERATOR_SCOPE)})",
                "errors",
            ),
        ),
        _stat(
            "Drift corrections (1h)",
            "Temporal schedules changed outside the operator and put back in the last hour.",
            "short",
            Query(
                "sum(increase(muster_operator_drift_corrections_total"
                f"{{{OPERATOR_SCOPE}}}[$__range]))",
                "corrections",
            ),
            time_from="1h",
        ),
        _timeseries(
            "Reconciles by result",
            "Reconciles per second by controller and result: success, error, requeue "
            "(controller_runtime_reconcile_total).",
            "reqps",
            Query(
                "sum by (controller, result) ("
                + _rate("controller_runtime_reconcile_total", OPERATOR_SCOPE)
                + ")",
                "{{controller}} {{result}}",
            ),
        ),
        _timeseries(
            "Reconcile time p50 / p99",
            "How long one reconcile takes: the median and 99th percentile, by controller.",
            "s",
            Query(
                _p(0.5, "controller_runtime_reconcile_time_seconds", "controller", OPERATOR_SCOPE),
                "p50 {{controller}}",
            ),
            Query(
                _p(0.99, "controller_runtime_reconcile_time_seconds", "controller", OPERATOR_SCOPE),
                "p99 {{controller}}",
            ),
        ),
        _timeseries(
            "Wait in line (p99)",
            "Time a reconcile waited for a free slot (max concurrent reconciles), 99th "
            "percentile by queue.",
            "s",
            Query(_p(0.99, "workqueue_queue_duration_seconds", "name", OPERATOR_SCOPE), "{{name}}"),
        ),
        _timeseries(
            "Schedule syncs by outcome",
            "Writes of Temporal schedules per second: created, updated, corrected, recreated.",
            "reqps",
            Query(
                "sum by (outcome) ("
                + _rate("muster_operator_schedule_syncs_total", OPERATOR_SCOPE)
                + ")",
                "{{outcome}}",
            ),
        ),
        _timeseries(
            "Drift corrections",
            "Temporal schedules changed outside the operator and put back, per second.",
            "reqps",
            Query(
                "sum by (controller) ("
                + _rate("muster_operator_drift_corrections_total", OPERATOR_SCOPE)
                + ")",
                "{{controller}}",
            ),
        ),
        _timeseries(
            "Reconcile errors by controller",
            "Reconciles that failed per second, by controller.",
            "reqps",
            Query(
                "sum by (controller) ("
                + _rate("controller_runtime_reconcile_errors_total", OPERATOR_SCOPE)
                + ")",
                "{{controller}}",
            ),
        ),
    ),
)

TASK_QUEUE_SCOPE = f'{NS}, task_queue=~"$task_queue"'

TEMPORAL_WORKERS = Dashboard(
    "temporal-workers",
    "muster-temporal-workers",
    "Muster / Temporal worker health",
    "Temporal SDK metrics of every Muster worker: task slots, schedule-to-start latency, "
    "sticky cache, pollers and failed requests.",
    (
        NAMESPACE,
        Variable(
            "task_queue",
            "Task queue",
            'temporal_worker_task_slots_available{namespace=~"$namespace"}',
        ),
    ),
    (
        _timeseries(
            "Free task slots",
            "Task slots each worker has free, by task queue and slot type; 0 means the worker "
            "is full and tasks wait.",
            "short",
            Query(
                "min by (task_queue, worker_type) ("
                f"temporal_worker_task_slots_available{{{TASK_QUEUE_SCOPE}}})",
                "{{task_queue}} {{worker_type}}",
            ),
        ),
        _timeseries(
            "Workflow task schedule-to-start p99",
            "How long workflow tasks wait for a worker to pick them up, 99th percentile; "
            "growing means too few workers.",
            "ms",
            Query(
                _p(
                    0.99,
                    "temporal_workflow_task_schedule_to_start_latency",
                    "task_queue",
                    TASK_QUEUE_SCOPE,
                ),
                "{{task_queue}}",
            ),
        ),
        _timeseries(
            "Activity schedule-to-start p99",
            "How long activity tasks wait for a worker to pick them up, 99th percentile.",
            "ms",
            Query(
                _p(
                    0.99,
                    "temporal_activity_schedule_to_start_latency",
                    "task_queue",
                    TASK_QUEUE_SCOPE,
                ),
                "{{task_queue}}",
            ),
        ),
        _timeseries(
            "Sticky cache size",
            "Workflows each worker keeps in memory (its sticky cache), by pod.",
            "short",
            Query(f"max by (pod) (temporal_sticky_cache_size{{{NS}}})", "{{pod}}"),
        ),
        _timeseries(
            "Sticky cache hits and misses",
            "Workflow tasks that found their workflow in the worker's cache (hit) or had to "
            "replay its history (miss), per second.",
            "ops",
            Query(f"sum({_rate('temporal_sticky_cache_hit')})", "hit"),
            Query(f"sum({_rate('temporal_sticky_cache_miss')})", "miss"),
        ),
        _timeseries(
            "Pollers",
            "Pollers each worker keeps open, by task queue and poller type.",
            "short",
            Query(
                f"sum by (task_queue, poller_type) (temporal_num_pollers{{{TASK_QUEUE_SCOPE}}})",
                "{{task_queue}} {{poller_type}}",
            ),
        ),
        _timeseries(
            "Failed requests to Temporal",
            "Calls to the Temporal frontend that failed per second, by operation "
            "(a workflow that is not found counts too).",
            "reqps",
            Query(f"sum by (operation) ({_rate('temporal_request_failure')})", "{{operation}}"),
        ),
        _timeseries(
            "Workers by build",
            "Worker processes per service and build id (Worker Versioning): during a rollout "
            "the old build stays until its pinned workflows are done.",
            "short",
            Query(
                f"count by (service, build_id) (muster_service_info{{{NS}}})",
                "{{service}} {{build_id}}",
            ),
        ),
        _timeseries(
            "Workflow task failures",
            "Workflow tasks that failed per second, by workflow type, the SDK's failure "
            "reason and the build of the worker that ran them. NonDeterminismError is code "
            "that no longer replays its workflows' histories (alert MusterNonDeterminismError); "
            "unknown workflow types and bugs in workflow code show up here too.",
            "ops",
            Query(
                "sum by (task_queue, workflow_type, failure_reason, build_id) ("
                + _rate("temporal_workflow_task_execution_failed", TASK_QUEUE_SCOPE)
                + " * on (instance, pod) group_left (build_id) muster_service_info)",
                "{{workflow_type}} {{failure_reason}} {{build_id}}",
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (
    APPROVALS,
    FULFILLMENT,
    OPERATOR,
    OVERVIEW,
    SCHEDULES,
    TEMPORAL_WORKERS,
)


# --- rendering ------------------------------------------------------------------------


def _layout(panels: Sequence[Panel]) -> list[dict[str, int]]:
    """Panels flow left to right in rows of Grafana's 24 columns."""
    positions = []
    x = y = row_height = 0
    for panel in panels:
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        positions.append({"x": x, "y": y, "w": panel.width, "h": panel.height})
        x += panel.width
        row_height = max(row_height, panel.height)
    return positions


def _target(ref: str, query: Query, *, instant: bool, table: bool) -> dict[str, Any]:
    target: dict[str, Any] = {
        "refId": ref,
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend,
    }
    if instant:
        target["instant"] = True
        target["range"] = False
    if table:
        target["format"] = "table"
    return target


def _thresholds(red_from: float | None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if red_from is not None:
        steps.append({"color": "red", "value": red_from})
    return {"mode": "absolute", "steps": steps}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "timeseries":
        return {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto",
            "textMode": "auto",
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "wideLayout": True,
            "showPercentChange": False,
            "percentChangeColorMode": "standard",
        }
    return {"frameIndex": 0, "showHeader": True, "cellHeight": "sm"}


def render_panel(panel_id: int, panel: Panel, position: dict[str, int]) -> dict[str, Any]:
    """One panel as Grafana's dashboard JSON has it."""
    instant = panel.kind != "timeseries"
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["min"] = 0
    else:
        if panel.unit == "short":
            defaults["decimals"] = 0  # counts: 21 orders, not the 20.9 increase() estimates
        defaults["thresholds"] = _thresholds(panel.red_from)
        defaults["color"] = {"mode": "thresholds"}
    rendered: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": position,
    }
    if panel.time_from is not None:
        rendered["timeFrom"] = panel.time_from
    rendered["fieldConfig"] = {"defaults": defaults, "overrides": []}
    rendered["options"] = _options(panel)
    rendered["targets"] = [
        _target(chr(ord("A") + i), q, instant=instant, table=panel.kind == "table")
        for i, q in enumerate(panel.queries)
    ]
    if panel.kind == "table":
        rendered["transformations"] = [
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True}, "renameByName": panel.columns},
            }
        ]
    return rendered


def _variable(variable: Variable) -> dict[str, Any]:
    return {
        "name": variable.name,
        "label": variable.label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": variable.query, "refId": variable.name},
        "definition": variable.query,
        "includeAll": True,
        "multi": True,
        "allValue": ALL,
        "refresh": 2,
        "sort": 1,
        "current": {"text": ["All"], "value": ["$__all"]},
        "options": [],
    }


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The whole dashboard, every field Grafana's schema requires spelled out."""
    datasource_variable = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "default", "value": "default"},
        "options": [],
    }
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": [TAG],
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Muster",
                "type": "dashboards",
                "icon": "external link",
                "tooltip": "The other Muster dashboards",
                "tags": [TAG],
                "asDropdown": True,
                "targetBlank": False,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": [datasource_variable, *(_variable(v) for v in dashboard.variables)]},
        "panels": [
            render_panel(i, panel, position)
            for i, (panel, position) in enumerate(
                zip(dashboard.panels, _layout(dashboard.panels), strict=True), start=1
            )
        ],
    }


def render_text(dashboard: Dashboard) -> str:
    """The file's text: two-space indented JSON, as Grafana exports it."""
    return json.dumps(render(dashboard), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m muster_dev.dashgen [--check] FOLDER``."""
    parser = argparse.ArgumentParser(prog="python -m muster_dev.dashgen", description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    args = parser.parse_args(argv)
    wanted = {f"{d.stem}.json": render_text(d) for d in DASHBOARDS}
    stale = []
    for name, text in wanted.items():
        path = args.folder / name
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    strays = sorted(p.name for p in args.folder.glob("*.json") if p.name not in wanted)
    if strays:
        print(
            f"{args.folder} has dashboards this module does not define: {', '.join(strays)}; "
            "add them to muster_dev.dashgen or delete them",
            file=sys.stderr,
        )
        return 1
    if stale:
        print(
            f"dashboards are out of date with muster_dev.dashgen: {', '.join(stale)}; "
            "run `make generate`",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
