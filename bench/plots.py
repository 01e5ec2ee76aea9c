"""Draws the benchmarks' series as PNG plots and writes their tables into
``docs/benchmarks.md``, from the JSON reports the benches wrote (``bench/results``).

For each bench and each Temporal it ran on, the newest report that measured it is taken, so
a dev-server run and a real-server run made one after the other show side by side. The
reports already published in ``docs/benchmarks/<bench>.json`` take part too, so a run on a
new checkout adds its points to the documented series instead of replacing them
(``--fresh`` draws only what the results folder holds). The
reports used are copied to ``docs/benchmarks/<bench>.json`` and drawn as
``docs/benchmarks/<bench>.png``; the text between the ``results`` markers of
``docs/benchmarks.md`` is replaced by one section per bench: its plot, the conditions
(host, versions, load before and after each point), one table of the series, and each
target as met, missed or not judged.

Run: ``make bench`` (after the benches) or ``python -m bench.plots [--results DIR]``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from bench import results
from bench.machine import REPO

DOCS = REPO / "docs" / "benchmarks"
PAGE = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- results: written by python -m bench.plots; edit bench/plots.py instead -->"
END = "<!-- end of results -->"
DPI = 90
COLORS = ["#1f78c1", "#e24d42", "#7eb26d", "#eab839", "#ba43a9", "#6ed0e0", "#ef843c", "#705da0"]
MARKERS = {"dev": "o", "server": "s"}
STYLES = {"dev": "-", "server": "--"}


@dataclass(frozen=True)
class Line:
    """One metric drawn against the size."""

    metric: str
    label: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    lines: tuple[Line, ...]
    target: float | None = None
    log_y: bool = False


@dataclass(frozen=True)
class Column:
    header: str
    metric: str
    digits: int = 0


@dataclass(frozen=True)
class Layout:
    """How one bench's report is drawn and tabulated."""

    x_label: str
    panels: tuple[Panel, ...]
    columns: tuple[Column, ...]
    log_x: bool = True
    keep: Callable[[dict[str, Any]], bool] = lambda point: True


def _sized(point: dict[str, Any]) -> bool:
    # The saga's paced runs (80% of peak) have size 0: they go in their own table.
    return bool(point["size"] > 0)


LAYOUTS: dict[str, Layout] = {
    "approval": Layout(
        "waiting requests",
        (
            Panel("worker RSS growth", "MB", (Line("rss_growth_mb"),), 150),
            Panel("decision → completion", "ms",
                  (Line("decide_p99_ms", "p99"), Line("decide_p50_ms", "p50")), 250),
            Panel("waiting-for-me list (gateway)", "ms",
                  (Line("list_p99_ms", "p99"), Line("list_p50_ms", "p50")), 300),
            Panel("parking rate", "requests/s", (Line("park_rate"),)),
        ),
        (
            Column("RSS growth MB", "rss_growth_mb"),
            Column("decide p50 / p99 ms", "decide_p50_ms|decide_p99_ms"),
            Column("list p50 / p99 ms", "list_p50_ms|list_p99_ms"),
            Column("parked /s", "park_rate"),
            Column("CPU ms per parked request: worker / Temporal",
                   "split:parking:approval worker|split:parking:Temporal"),
        ),
    ),
    "operator": Layout(
        "Schedules applied at once",
        (
            Panel("all Ready / direct creates until Temporal idle", "x",
                  (Line("ratio_ready_to_direct_idle"),), 1.3),
            Panel("reconcile", "ms",
                  (Line("reconcile_p99_ms", "p99"), Line("reconcile_p50_ms", "p50")), 1000),
            Panel("operator RSS growth", "MB", (Line("operator_rss_growth_mb"),), 200),
            Panel("time", "s", (Line("operator_ready_seconds", "all Ready"),
                                Line("direct_idle_seconds", "direct, until idle"))),
        ),
        (
            Column("all Ready s", "operator_ready_seconds", 1),
            Column("direct until idle s", "direct_idle_seconds", 1),
            Column("ratio", "ratio_ready_to_direct_idle", 2),
            Column("reconcile p50 / p99 ms", "reconcile_p50_ms|reconcile_p99_ms"),
            Column("RSS growth MB", "operator_rss_growth_mb"),
            Column("idle writes /min", "idle_writes_per_minute", 1),
            Column("CPU ms per Schedule: operator / kube-apiserver",
                   "split:operator:operator|split:operator:kube-apiserver"),
        ),
    ),
    "fulfillment": Layout(
        "workflows in flight",
        (
            Panel("throughput", "workflows/s",
                  (Line("bare_wf_per_s", "(a)"), Line("stub_wf_per_s", "(b)"),
                   Line("full_wf_per_s", "(c)"))),
            Panel("(b)/(a), median of the rounds' ratios", "ratio",
                  (Line("stub_to_bare_median"),), 0.90),
            Panel("end to end p99", "ms",
                  (Line("bare_p99_ms", "(a)"), Line("stub_p99_ms", "(b)"))),
        ),
        (
            Column("(a) / (a') / (b) / (c) wf/s",
                   "bare_wf_per_s|machinery_wf_per_s|stub_wf_per_s|full_wf_per_s", 1),
            Column("(b)/(a) median", "stub_to_bare_median", 2),
            Column("(b)/(a) merged", "stub_to_bare_merged", 2),
            Column("(a')/(a)", "machinery_to_bare_median", 2),
            Column("(b) p50 / p99 ms", "stub_p50_ms|stub_p99_ms"),
            Column("CPU ms per workflow, (a) / (b): workers",
                   "split:bare:worker processes|split:stub:worker processes"),
            Column("(a) / (b): Temporal", "split:bare:Temporal|split:stub:Temporal"),
        ),
        log_x=False,
        keep=_sized,
    ),
    "gateway": Layout(
        "approval starts through the gateway",
        (
            Panel("gateway latency at 80 % of peak", "ms",
                  (Line("paced_p99_ms", "p99"), Line("paced_p50_ms", "p50")), 100),
            Panel("start rate", "starts/s",
                  (Line("peak_per_s", "peak (closed loop)"), Line("paced_per_s", "offered"))),
        ),
        (
            Column("peak /s", "peak_per_s", 1),
            Column("peak p50 / p99 ms", "peak_p50_ms|peak_p99_ms"),
            Column("offered /s", "paced_per_s", 1),
            Column("at 80 %: p50 / p99 ms", "paced_p50_ms|paced_p99_ms"),
            Column("5xx / 202", "errors_5xx|accepted_202"),
            Column("CPU ms per start at 80 %: gateway / worker",
                   "split:paced:gateway|split:paced:approval worker"),
        ),
    ),
}  # fmt: skip


def _key(point: dict[str, Any]) -> tuple[str, int, str]:
    return point.get("series", ""), point["size"], point.get("extra", {}).get("variant", "")


def published(docs: Path) -> list[dict[str, Any]]:
    """The reports a previous render copied to ``docs/<bench>.json`` (only the points it
    showed)."""
    reports: list[dict[str, Any]] = []
    for path in sorted(docs.glob("*.json")) if docs.is_dir() else []:
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise SystemExit(f"{path} is not a list of bench reports: delete it or draw --fresh")
        for item in data:
            missing = [k for k in ("bench", "facts", "servers", "started") if k not in item]
            if missing:
                raise SystemExit(
                    f"{path} holds a report without {', '.join(missing)}: delete it or draw --fresh"
                )
            reports.append(item)
    return reports


def newest(folder: Path, earlier: Iterable[dict[str, Any]] = ()) -> dict[str, list[dict[str, Any]]]:
    """Per bench, the reports to show (oldest first): for each Temporal, series and size, the
    point of the newest report that measured it, so a run of the bigger sizes adds to an
    earlier run of the smaller ones instead of hiding it. Each report keeps only the points
    (and targets) no newer report measured again. ``earlier`` are reports published before
    (:func:`published`); a report in ``folder`` replaces its published copy."""
    found = [results.load(path) for path in folder.glob("*.json")] if folder.is_dir() else []
    ids = {(r["bench"], r["started"]) for r in found}
    found += [r for r in earlier if (r["bench"], r["started"]) not in ids]
    loaded = sorted(found, key=lambda r: r["started"], reverse=True)
    out: dict[str, list[dict[str, Any]]] = {}
    seen: dict[str, set[tuple[str, tuple[str, int, str]]]] = {}
    for report in loaded:
        taken = seen.setdefault(report["bench"], set())
        servers = {}
        for kind, run in report["servers"].items():
            points = [p for p in run["points"] if (kind, _key(p)) not in taken]
            if not points:
                continue
            sizes = {p["size"] for p in points}
            targets = [t for t in run["targets"] if t["size"] in sizes]
            servers[kind] = {**run, "points": points, "targets": targets}
        taken |= {(kind, _key(p)) for kind, run in servers.items() for p in run["points"]}
        if servers:
            out.setdefault(report["bench"], []).insert(0, {**report, "servers": servers})
    return out


def _runs(reports: list[dict[str, Any]]) -> Iterable[tuple[str, dict[str, Any], dict[str, Any]]]:
    for report in reports:
        for kind, run in report["servers"].items():
            yield kind, run, report


def _groups(run: dict[str, Any], layout: Layout) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for point in run["points"]:
        if layout.keep(point):
            groups.setdefault(point.get("series", ""), []).append(point)
    return groups


def _lines(
    reports: list[dict[str, Any]], layout: Layout
) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The points of each line of a plot (Temporal, series), across reports, by size."""
    lines: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for kind, run, _ in _runs(reports):
        for series, points in _groups(run, layout).items():
            lines.setdefault((kind, run["label"], series), []).extend(points)
    return {key: sorted(points, key=lambda p: p["size"]) for key, points in lines.items()}


def draw(bench: str, reports: list[dict[str, Any]], out: Path) -> None:
    """One PNG: a panel per measure, a line per Temporal (and series), target dashed."""
    layout = LAYOUTS[bench]
    columns = min(len(layout.panels), 2)
    rows = (len(layout.panels) + columns - 1) // columns
    figure = Figure(figsize=(6.4 * columns, 3.9 * rows + 0.5), dpi=DPI)
    facts = reports[-1]["facts"]
    figure.suptitle(
        f"{reports[-1]['title']}: {facts['cores']} cores (load and other processes' CPU per "
        f"point in the table), Muster {facts['muster_revision']}",
        fontsize=10,
    )
    for n, panel in enumerate(layout.panels):
        axes = figure.add_subplot(rows, columns, n + 1)
        color = 0
        drawn = []
        for (kind, label, series), points in _lines(reports, layout).items():
            drawn.append(points)
            for line in panel.lines:
                xs = [p["size"] for p in points if line.metric in p["metrics"]]
                ys = [p["metrics"][line.metric] for p in points if line.metric in p["metrics"]]
                if not xs:
                    continue
                name = ", ".join(x for x in (label, series, line.label) if x)
                axes.plot(
                    xs, ys, marker=MARKERS.get(kind, "^"), linestyle=STYLES.get(kind, ":"),
                    color=COLORS[color % len(COLORS)], label=name,
                )  # fmt: skip
                color += 1
        if panel.target is not None:
            axes.axhline(panel.target, color="#888888", linestyle=":", label="target")
        if layout.log_x:
            axes.set_xscale("log")
            axes.xaxis.set_minor_locator(NullLocator())
        # The measured sizes themselves, written out (not 2x10^2).
        axes.set_xticks(sorted({p["size"] for points in drawn for p in points}))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        if panel.log_y:
            axes.set_yscale("log")
        axes.set_title(panel.title, fontsize=10)
        axes.set_xlabel(layout.x_label, fontsize=9)
        axes.set_ylabel(panel.unit, fontsize=9)
        low, high = axes.get_ylim()
        axes.set_ylim(min(low, 0), high * 1.08)
        axes.grid(alpha=0.3)
        axes.tick_params(labelsize=8)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out)


def _value(point: dict[str, Any], key: str) -> float | None:
    """A metric, or ``split:<part of the run>:<process>``: CPU ms per unit from the split
    (``Temporal`` is the dev server, or the real server with PostgreSQL)."""
    if key.startswith("split:"):
        _, part, process = key.split(":", 2)
        per_unit = (point.get("split") or {}).get(part, {}).get("cpu_ms_per_unit", {})
        value: float | None = per_unit.get(process)
        if value is None and process == "Temporal" and "Temporal server" in per_unit:
            # The real server's share is its own process and PostgreSQL's.
            value = per_unit["Temporal server"] + per_unit.get("PostgreSQL", 0.0)
        return value
    found: float | None = point["metrics"].get(key)
    return found


def _cell(point: dict[str, Any], column: Column) -> str:
    values = [_value(point, key) for key in column.metric.split("|")]
    return " / ".join("-" if v is None else f"{v:.{column.digits}f}" for v in values)


def _conditions(point: dict[str, Any]) -> str:
    c = point["conditions"]
    return f"{c['load_before'][0]:.1f} → {c['load_after'][0]:.1f}; {c['foreign_cores']:.2f}"


def _speed(facts: dict[str, Any]) -> str:
    """The host's measured speed, for reports that recorded it."""
    if "calibration_ms" not in facts:
        return ""
    return f"; {facts.get('cpu') or 'CPU'}, a fixed Python loop in {facts['calibration_ms']} ms"


def section(bench: str, reports: list[dict[str, Any]]) -> list[str]:
    """The markdown for one bench: plot, conditions, table, targets."""
    layout = LAYOUTS[bench]
    lines = [f"### {reports[-1]['title']}", "", f"![{bench}](benchmarks/{bench}.png)", ""]
    for kind, run, report in _runs(reports):
        facts = report["facts"]
        lines.append(
            f"- {run['label']}: {run.get('version') or kind}; measured {report['started']} "
            f"at Muster {facts['muster_revision']} on {facts['cores']} cores "
            f"({facts['memory_gib']} GiB memory{_speed(facts)}), Python {facts['python']}, "
            f"temporalio {facts['temporalio']}; options "
            + ", ".join(
                f"`{k}={v}`"
                for k, v in report["options"].items()
                if k not in ("temporal", "no_results")
            )
        )
        lines += [f"  - {note}" for note in run.get("notes", [])]
    lines += ["", "| Temporal | series | size | "
              + " | ".join(c.header for c in layout.columns)
              + " | load before → after; other processes' cores |"]  # fmt: skip
    lines.append("|" + "---|" * (len(layout.columns) + 4))
    # Rows by Temporal and series in the order first met, then by size, whichever report
    # measured them (a run of the bigger sizes may be older or newer than the smaller ones).
    order: dict[tuple[str, str], int] = {}
    rows = []
    for kind, run, _ in _runs(reports):
        for series, points in _groups(run, layout).items():
            rank = order.setdefault((kind, series), len(order))
            for point in points:
                cells = [_cell(point, c) for c in layout.columns]
                rows.append((rank, point["size"], f"| {run['label']} | {series or '-'} | "
                             f"{point['size']:,} | " + " | ".join(cells)
                             + f" | {_conditions(point)} |"))  # fmt: skip
    lines += [row for _, _, row in sorted(rows, key=lambda r: (r[0], r[1]))]
    kinds = {kind: rank for rank, (kind, _) in reversed(list(enumerate(order)))}
    paced = [(run, p) for _, run, _ in _runs(reports) for p in run["points"] if not layout.keep(p)]
    if paced:
        lines += [
            "",
            "At 80 % of each variant's peak throughput (open loop):",
            "",
            "| Temporal | series | variant | peak wf/s | offered wf/s | p50 ms | p99 ms | "
            "load before → after; other processes' cores |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run, point in paced:
            m = point["metrics"]
            lines.append(
                f"| {run['label']} | {point['series']} | {point['extra'].get('variant', '')} | "
                f"{m['peak_wf_per_s']:.1f} | {m['offered_wf_per_s']:.1f} | {m['p50_ms']:.0f} | "
                f"{m['p99_ms']:.0f} | {_conditions(point)} |"
            )
    targets = sorted(
        ((kind, run, t) for kind, run, _ in _runs(reports) for t in run["targets"]),
        key=lambda found: (kinds.get(found[0], len(kinds)), found[2]["size"]),
    )
    if targets:
        lines += ["", "Targets:", ""]
        for _, run, target in targets:
            wanted = results.Target(**target).wanted
            unit = f" {target['unit']}" if target["unit"] else ""
            note = f" ({target['noise']})" if target.get("noise") else ""
            lines.append(
                f"- {run['label']}, size {target['size']:,}: {target['name']} "
                f"{target['value']:.2f}{unit} (target {wanted}): "
                f"**{target['verdict']}**{note}"
            )
    return [*lines, ""]


def write_page(sections: list[str], page: Path) -> None:
    """Replace the results part of the page (between the markers) with ``sections``."""
    text = page.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(
            f"{page} lacks the markers the results go between; put these two lines where "
            f"they belong:\n{BEGIN}\n{END}"
        )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(head + BEGIN + "\n\n" + "\n".join(sections) + END + tail)


def render(folder: Path, docs: Path, page: Path | None, *, fresh: bool = False) -> list[Path]:
    """Draw every bench found in ``folder`` and, unless ``fresh``, published in ``docs``;
    the files written."""
    found = newest(folder, () if fresh else published(docs))
    unknown = sorted(set(found) - set(LAYOUTS))
    if unknown:
        raise SystemExit(f"no layout for bench(es) {', '.join(unknown)}: add them to LAYOUTS")
    if not found:
        raise SystemExit(
            f"no bench reports in {folder}"
            + ("" if fresh else f" or {docs}")
            + ": run the benches first (make bench)"
        )
    docs.mkdir(parents=True, exist_ok=True)
    written, sections = [], []
    for bench in (b for b in LAYOUTS if b in found):
        reports = found[bench]
        data = docs / f"{bench}.json"
        data.write_text(json.dumps(reports, indent=1, ensure_ascii=False) + "\n")
        picture = docs / f"{bench}.png"
        draw(bench, reports, picture)
        sections += section(bench, reports)
        written += [data, picture]
    if page is not None:
        write_page(sections, page)
        written.append(page)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=results.RESULTS)
    parser.add_argument("--docs", type=Path, default=DOCS, help="folder for JSON and PNGs")
    parser.add_argument(
        "--page", type=Path, default=PAGE, help="markdown page whose results part is rewritten"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="draw only the reports in --results, dropping the series published in --docs",
    )
    args = parser.parse_args(argv)
    for path in render(args.results, args.docs, args.page, fresh=args.fresh):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
