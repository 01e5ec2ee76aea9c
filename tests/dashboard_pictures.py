"""Draws each of the chart's Grafana dashboards as a PNG (``docs/dashboards/<uid>.png``) from
its own panel queries run against a real Prometheus, since no Grafana can run here. Panels
keep their place on Grafana's 24-column grid, their title, unit and legend; a time series
is a range query over the run, a stat or table an instant query at its end. Used by the
observability tier when ``make docs-dashboards`` asks for pictures."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tests.dashboards import panels, substitute

GRID_COLUMNS = 24
# Sizes in inches: the figure, a Grafana grid row, the header, room for a panel's title,
# its y axis labels, its time axis labels, one row of legend, and the gap between panels.
FIGURE_WIDTH = 18.0
ROW_HEIGHT = 0.36
HEADER = 0.85
MARGIN = 0.2
TITLE = 0.3
AXIS = 0.62
TICKS = 0.3
LEGEND_ROW = 0.16
GAP = 0.18
DPI = 80
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval is with Prometheus' default scrape

# What a Grafana unit id means on an axis or next to a number.
UNIT_LABELS = {
    "ops": "ops/s",
    "reqps": "req/s",
    "s": "seconds",
    "ms": "milliseconds",
    "short": "",
    "none": "",
    "bool": "0 = false, 1 = true",
    "percent": "%",
    "percentunit": "ratio",
    "bytes": "bytes",
}
COLORS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9",
          "#705da0", "#508642", "#cca300"]  # fmt: skip
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _get(prometheus: str, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    url = f"{prometheus}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"{params.get('query')}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _expr(target: dict[str, Any], panel: dict[str, Any]) -> str:
    return substitute(target["expr"], panel).replace("[1m]", f"[{RATE_INTERVAL}]")


def _legend(target: dict[str, Any], labels: dict[str, str]) -> str:
    """The legend as Grafana fills it in; says which labels the series lack (``pod`` has no
    value outside Kubernetes) rather than showing nothing."""
    template = target.get("legendFormat") or ""
    text = " ".join(LEGEND.sub(lambda m: labels.get(m.group(1), ""), template).split())
    if text:
        return text
    missing = [name for name in LEGEND.findall(template) if name not in labels]
    return f"(no {', '.join(missing)} label here)" if missing else "value"


def _clock(seconds: float, _position: int | None = None) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%H:%M:%S")


def _format(value: float, unit: str, decimals: int | None = None) -> str:
    if unit == "bool":
        return "true" if value >= 0.5 else "false"
    if unit == "s" and value >= 60:
        return f"{value / 60:.1f} min"
    if decimals is not None:
        number = f"{value:.{decimals}f}"
    else:
        number = f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"
    suffix = {"ops": " ops/s", "reqps": " req/s", "s": " s", "ms": " ms"}.get(unit, "")
    return number + suffix


def _no_data(ax: Axes, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", color="#8e8e8e", fontsize=9,
            transform=ax.transAxes)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


@dataclass
class Box:
    """A panel's place on the picture, in inches from the top left."""

    left: float
    top: float
    width: float
    height: float


class Canvas:
    """A figure laid out like Grafana's grid: 24 columns, rows of ``ROW_HEIGHT`` inches."""

    def __init__(self, rows: int) -> None:
        self.width = FIGURE_WIDTH
        self.height = HEADER + rows * ROW_HEIGHT + 0.1
        # A bare Figure renders with Agg: no pyplot, no display.
        self.figure = Figure(figsize=(self.width, self.height), dpi=DPI)
        self.column = (self.width - 2 * MARGIN) / GRID_COLUMNS

    def box(self, grid: dict[str, int]) -> Box:
        return Box(MARGIN + grid["x"] * self.column, HEADER + grid["y"] * ROW_HEIGHT,
                   grid["w"] * self.column - GAP, grid["h"] * ROW_HEIGHT - GAP)  # fmt: skip

    def axes(self, left: float, top: float, width: float, height: float) -> Axes:
        """Axes at a rectangle given in inches from the top left."""
        return self.figure.add_axes((left / self.width, 1 - (top + height) / self.height,
                                     width / self.width, height / self.height))  # fmt: skip

    def text(self, left: float, top: float, text: str, **style: Any) -> None:
        self.figure.text(left / self.width, 1 - top / self.height, text, va="top", **style)


Series = tuple[str, list[float], list[float]]


def _series(panel: dict[str, Any], prometheus: str, start: float, end: float) -> list[Series]:
    step = max(1, int((end - start) / 240))
    found: list[Series] = []
    for target in panel.get("targets", []):
        answer = _get(prometheus, "/api/v1/query_range", {
            "query": _expr(target, panel), "start": str(start), "end": str(end),
            "step": f"{step}s"})  # fmt: skip
        for one in answer:
            points = [(float(t), float(v)) for t, v in one["values"] if not math.isnan(float(v))]
            if points:
                times, values = zip(*points, strict=True)
                found.append((_legend(target, one["metric"]), list(times), list(values)))
    return found


def _timeseries(
    canvas: Canvas, box: Box, panel: dict[str, Any], prometheus: str, start: float, end: float
) -> None:
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    series = _series(panel, prometheus, start, end)
    columns = max(1, min(4, int(box.width / 2.6)))
    legend = math.ceil(len(series) / columns) * LEGEND_ROW
    height = box.height - TITLE - TICKS - legend
    ax = canvas.axes(box.left + AXIS, box.top + TITLE, box.width - AXIS - 0.1, height)
    if not series:
        _no_data(ax, "no data in this run")
        return
    for i, (label, times, values) in enumerate(series):
        ax.plot(times, values, label=label, linewidth=1.4, color=COLORS[i % len(COLORS)])
    ax.set_xlim(start, end)
    ax.set_ylim(bottom=0, top=max(max(v) for _, _, v in series) * 1.1 or 1)
    ax.set_ylabel(UNIT_LABELS.get(unit, unit), fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(_clock))
    ax.tick_params(labelsize=7)
    ax.grid(color="#e4e4e4", linewidth=0.6)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -TICKS / height), ncols=columns,
              fontsize=7, frameon=False, borderaxespad=0, handlelength=1.5)  # fmt: skip


def _instant(panel: dict[str, Any], prometheus: str, end: float) -> list[dict[str, Any]]:
    found = []
    for target in panel.get("targets", []):
        for one in _get(prometheus, "/api/v1/query",
                        {"query": _expr(target, panel), "time": str(end)}):  # fmt: skip
            found.append({"target": target, **one})
    return found


def _stat(canvas: Canvas, box: Box, panel: dict[str, Any], prometheus: str, end: float) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    steps = defaults.get("thresholds", {}).get("steps", [])
    ax = canvas.axes(box.left, box.top + TITLE, box.width, box.height - TITLE)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color("#d0d0d0")
    results = _instant(panel, prometheus, end)
    if not results:
        _no_data(ax, "no data in this run")
        return
    for i, one in enumerate(results):
        value = float(one["value"][1])
        color = "#56a64b"
        for step in steps:
            if step.get("value") is not None and value >= step["value"]:
                color = {"red": "#e02f44", "green": "#56a64b"}.get(step["color"], step["color"])
        x = (i + 0.5) / len(results)
        text = _format(value, defaults.get("unit", ""), defaults.get("decimals"))
        ax.text(x, 0.55, text, ha="center", va="center", fontsize=22, color=color,
                weight="bold", transform=ax.transAxes)  # fmt: skip
        if len(results) > 1:
            ax.text(x, 0.12, _legend(one["target"], one["metric"]), ha="center", fontsize=8,
                    transform=ax.transAxes)  # fmt: skip


def _table(canvas: Canvas, box: Box, panel: dict[str, Any], prometheus: str, end: float) -> None:
    ax = canvas.axes(box.left, box.top + TITLE, box.width, box.height - TITLE)
    ax.axis("off")
    results = _instant(panel, prometheus, end)
    if not results:
        _no_data(ax, "no data in this run")
        return
    rename: dict[str, str] = {}
    for transformation in panel.get("transformations", []):
        if transformation.get("id") == "organize":
            rename = transformation["options"].get("renameByName", {})
    decimals = panel["fieldConfig"]["defaults"].get("decimals")
    labels = sorted({k for one in results for k in one["metric"]} - {"__name__"})
    rows = [[one["metric"].get(k, "") for k in labels]
            + [_format(float(one["value"][1]), "short", decimals)] for one in results]  # fmt: skip
    table = ax.table(cellText=rows, colLabels=[rename.get(c, c) for c in [*labels, "Value"]],
                     loc="upper center", cellLoc="left")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor("#d0d0d0")
        if row == 0:
            cell.set_facecolor("#f0f0f0")
            cell.set_text_props(weight="bold")


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for _, panel in panels(dashboard):
        if panel.get("type") != "row":
            yield panel


def draw(
    dashboard: dict[str, Any],
    prometheus: str,
    start: float,
    end: float,
    out: Path,
    *,
    caption: str,
) -> Path:
    """One dashboard's picture, every panel at its grid position; the file's path."""
    canvas = Canvas(max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in _panels(dashboard)))
    canvas.text(MARGIN, 0.15, dashboard["title"], fontsize=15, weight="bold")
    canvas.text(MARGIN, 0.48, f"uid {dashboard['uid']} · {dashboard.get('description', '')}",
                fontsize=9, color="#505050")  # fmt: skip
    canvas.text(canvas.width - MARGIN, 0.2, caption, fontsize=8, color="#6e6e6e", ha="right")
    for panel in _panels(dashboard):
        box = canvas.box(panel["gridPos"])
        title = panel.get("title", "")
        if panel.get("timeFrom") and panel["timeFrom"] not in title:
            title += f"  (last {panel['timeFrom']})"
        canvas.text(box.left, box.top, title, fontsize=10, weight="bold")
        kind = panel.get("type")
        if kind == "timeseries":
            _timeseries(canvas, box, panel, prometheus, start, end)
        elif kind == "stat":
            _stat(canvas, box, panel, prometheus, end)
        elif kind == "table":
            _table(canvas, box, panel, prometheus, end)
        else:
            _no_data(canvas.axes(box.left, box.top + TITLE, box.width, box.height - TITLE),
                     f"panel type {kind} is not drawn")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dashboard['uid']}.png"
    canvas.figure.savefig(path, metadata={"Software": None})
    return path


def draw_all(
    dashboards: dict[str, dict[str, Any]],
    prometheus: str,
    start: float,
    end: float,
    out: Path,
    caption: str,
) -> Sequence[Path]:
    """Every dashboard's picture into ``out``."""
    return [draw(d, prometheus, start, end, out, caption=caption) for d in dashboards.values()]
