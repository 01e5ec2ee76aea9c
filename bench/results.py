"""A benchmark series as JSON: the host's facts and versions, each server's points (one per
size, with the conditions it ran under and where the CPU went), and each target judged as
met, missed, or not judged because the conditions were too noisy.

A report is written after every point (``bench/results/<bench>-<date>.json``), so a long
series that stops halfway keeps what it measured; ``python -m bench.plots`` draws the plots
and the tables of ``docs/benchmarks.md`` from these files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import machine

RESULTS = machine.REPO / "bench" / "results"

MET, MISSED, NOISY = "met", "missed", "conditions too noisy to judge"


@dataclass
class Target:
    """One target judged on one point."""

    name: str
    value: float
    limit: float
    unit: str
    better: Literal["lower", "higher"]
    size: int
    verdict: str
    noise: str | None = None

    @property
    def wanted(self) -> str:
        """The target as written: ``< 250``, ``≥ 0.9``, or ``0`` for a count that must be none."""
        if self.better == "lower" and self.limit == 0:
            return "0"
        return f"{'<' if self.better == 'lower' else '≥'} {self.limit:g}"

    @property
    def line(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        text = (
            f"target {self.name}: {self.value:.2f}{unit} (target {self.wanted}{unit}): "
            f"{self.verdict}"
        )
        return text + (f" ({self.noise})" if self.noise else "")


def judge(
    name: str,
    value: float,
    limit: float,
    unit: str,
    *,
    better: Literal["lower", "higher"] = "lower",
    size: int,
    conditions: machine.Conditions,
    max_load: float = machine.MAX_LOAD,
    max_foreign: float = machine.MAX_FOREIGN_CORES,
) -> Target:
    """Met or missed, unless the point's conditions were too noisy to say."""
    noise = conditions.noise(max_load, max_foreign)
    if noise is not None:
        return Target(name, value, limit, unit, better, size, NOISY, noise)
    ok = value < limit if better == "lower" else value >= limit
    return Target(name, value, limit, unit, better, size, MET if ok else MISSED)


@dataclass
class Point:
    """One size of a series on one server."""

    size: int
    metrics: dict[str, float]
    conditions: dict[str, Any]
    split: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    series: str = ""
    """Which line of a plot the point belongs to, when a bench draws more than one."""


@dataclass
class ServerRun:
    """A series on one Temporal."""

    kind: str
    label: str
    version: str = ""
    points: list[Point] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """A bench's series on every server it ran on, with the host's facts."""

    bench: str
    title: str
    options: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=machine.facts)
    started: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    servers: dict[str, ServerRun] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        # From here on the bench's own CPU is sampled, so a point's load before is judged
        # without the bench's own work (Temporal starting, the previous point).
        machine.OWN_CPU.start()

    def server(self, kind: str, label: str, version: str = "") -> ServerRun:
        run = self.servers.get(kind)
        if run is None:
            run = self.servers[kind] = ServerRun(kind, label, version)
        return run

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        data["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return data

    def save(self, folder: Path | None) -> Path | None:
        """Write the report (again) as ``<folder>/<bench>-<start time>.json``."""
        if folder is None:
            return None
        if self.path is None:
            stamp = self.started.replace(":", "").replace("+0000", "Z")
            self.path = folder / f"{self.bench}-{stamp}.json"
        folder.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.as_json(), indent=1, ensure_ascii=False) + "\n")
        return self.path

    def summary(self) -> list[str]:
        """Every target's verdict, server by server."""
        lines = []
        for run in self.servers.values():
            for target in run.targets:
                lines.append(f"{run.label}, size {target.size}: {target.line}")
        if self.path is not None:
            lines.append(f"results: {self.path}")
        return lines


def load(path: Path) -> dict[str, Any]:
    """A report as written by :meth:`Report.save`, checked for the keys the plots read."""
    data: dict[str, Any] = json.loads(path.read_text())
    missing = [key for key in ("bench", "facts", "servers", "started") if key not in data]
    if missing:
        raise ValueError(f"{path} is not a bench report: it lacks {', '.join(missing)}")
    return data


def sizes(text: str) -> list[int]:
    """``--sizes 1k,10k,50000``: sizes in ascending order (k = thousand)."""
    values = []
    for part in text.split(","):
        word = part.strip().lower().replace("_", "")
        factor = 1000 if word.endswith("k") else 1
        try:
            value = int(float(word.removesuffix("k")) * factor)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r} is not a size: give whole numbers separated by commas, "
                "like 100,500 or 1k,10k"
            ) from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"sizes must be positive, not {part.strip()!r}")
        values.append(value)
    return sorted(set(values))


def add_series_options(parser: argparse.ArgumentParser, default_sizes: str) -> None:
    """``--sizes``, ``--results``, ``--no-results`` and the noise limits every series takes."""
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=sizes(default_sizes),
        help=f"the series, comma-separated, k = thousand (default {default_sizes})",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="folder for the JSON report (default bench/results)",
    )
    parser.add_argument(
        "--no-results", action="store_true", help="print only; write no JSON report"
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=machine.MAX_LOAD,
        help="a point whose 1-min load average was above this before (or after, less the "
        "bench's own cores) is too noisy to judge targets by (default %(default)s)",
    )
    parser.add_argument(
        "--max-foreign-cores",
        type=float,
        default=machine.MAX_FOREIGN_CORES,
        help="... as is one during which other processes used more cores than this "
        "(default %(default)s)",
    )


def results_folder(args: argparse.Namespace) -> Path | None:
    return None if args.no_results else Path(args.results)
