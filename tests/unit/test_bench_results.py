"""The benchmarks' results machinery on a small real measurement: conditions and CPU read from
/proc around real work, the JSON report written and read back, targets judged met, missed or
too noisy, and ``bench.plots`` drawing the PNG and rewriting the results part of a page
between its markers. (The benches themselves are not run by the test suite: ``make bench``.)"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import machine, plots, results


def busy(cpu_seconds: float) -> int:
    """Real work until this process has used ``cpu_seconds`` of CPU (however long that takes
    on a busy host); how many hashes it took."""
    end, count, data = time.process_time() + cpu_seconds, 0, b"x" * 4096
    while time.process_time() < end:
        data = hashlib.sha256(data).digest() * 128
        count += 1
    return count


def test_conditions_and_cpu_come_from_proc() -> None:
    meter = machine.CpuMeter({"bench": os.getpid()}, own="bench")
    with machine.measured(quiet_timeout=0) as conditions, meter.split(10) as split:
        busy(0.3)
    assert conditions.seconds >= 0.3
    assert len(conditions.load_before) == 3
    assert len(conditions.load_after) == 3
    # The bench's own work shows as its cores and as its part's CPU (clock ticks of 10 ms).
    assert conditions.bench_cores > 0
    assert split.seconds["bench"] >= 0.28
    assert split.per_unit_ms()["bench"] == pytest.approx(split.seconds["bench"] * 100)
    assert "ms CPU per workflow" in "\n".join(split.lines())
    assert machine.facts()["cores"] == machine.cores() >= 1


def test_noise_is_judged_before_met_or_missed() -> None:
    calm = machine.Conditions(load_before=(0.5, 0.5, 0.5), load_after=(1.2, 1, 1), bench_cores=1)
    assert calm.noise() is None
    assert results.judge("p99", 120, 250, "ms", size=1, conditions=calm).verdict == results.MET
    assert results.judge("p99", 300, 250, "ms", size=1, conditions=calm).verdict == results.MISSED
    ratio = results.judge("r", 0.9, 0.9, "", better="higher", size=5, conditions=calm)
    assert ratio.verdict == results.MET
    assert "(target ≥ 0.9)" in ratio.line
    none_wanted = results.Target("5xx answers", 0, 0, "", "lower", 1, results.MET)
    assert none_wanted.line == "target 5xx answers: 0.00 (target 0): met"
    busy_host = machine.Conditions(load_before=(6.0, 3, 2), foreign_cores=1.5)
    noisy = results.judge("p99", 120, 250, "ms", size=1, conditions=busy_host)
    assert noisy.verdict == results.NOISY
    assert noisy.noise is not None
    assert "load 6.0 before" in noisy.noise
    assert "other processes used 1.50 cores" in noisy.noise
    # The load before and after a point counts without the bench's own share of it (the
    # previous point of the series, Temporal starting, the point itself): only other work
    # makes it noisy.
    after_own_work = machine.Conditions(
        load_before=(4.0, 2, 1), bench_load_before=3.2, load_after=(4.4, 3, 2), bench_load_after=3.9
    )
    assert after_own_work.noise() is None
    others_too = machine.Conditions(load_before=(5.0, 2, 1), bench_load_before=1.8)
    assert "5.0 before, 3.2 without the bench's own 1.8 load" in str(others_too.noise())
    # A bench that saturated both cores until its end has more runnable threads than cores:
    # taking off its cores would count the rest of its own load as other work's.
    saturated = machine.Conditions(
        load_before=(0.3, 1, 1), load_after=(4.5, 3, 2), bench_cores=1.8, bench_load_after=3.6
    )
    assert saturated.noise() is None
    # Reports written before the share was sampled are judged by the bench's cores, as then.
    older = machine.Conditions(load_before=(3.0, 2, 1), bench_cores_before=1.8)
    assert older.noise() is None
    assert "5.0 before, 3.2 without the bench's own 1.8 cores" in str(
        machine.Conditions(load_before=(5.0, 2, 1), bench_cores_before=1.8).noise()
    )


def test_the_benchs_own_cpu_in_the_minute_before_a_point_is_sampled() -> None:
    # Scripted readings (seconds, CPU seconds, runnable threads): busy at 1.5 cores for 60 s,
    # then idle.
    readings = iter(
        [(0.0, 0.0, 0), (30.0, 45.0, 2), (60.0, 90.0, 2), (90.0, 90.0, 0), (120.0, 90.0, 0)]
    )
    history = machine.OwnCpuHistory(every=30.0, read=lambda: next(readings))
    history._sample()
    history._sample()
    assert history.cores_over(window=60.0) == 1.5  # 0 → 60 s: 90 CPU s in 60 s
    assert history.cores_over(window=60.0) == 0.75  # 30 → 90 s: 45 CPU s in 60 s
    assert history.cores_over(window=60.0) == 0.0  # 60 → 120 s: idle
    # Live: the thread samples this process, whose work shows as cores.
    live = machine.OwnCpuHistory(every=0.05)
    live.start()
    busy(0.3)
    assert live.cores_over() > 0
    assert len(live.samples) >= 3


def test_the_benchs_share_of_the_load_average_decays_as_the_kernels() -> None:
    # Three runnable threads for 120 s, sampled every 2 s, then none for 60 s.
    times = [2.0 * i for i in range(91)]
    readings = iter([(t, 0.0, 3 if t < 120 else 0) for t in times])
    history = machine.OwnCpuHistory(every=2.0, read=lambda: next(readings))
    for _ in times[:-1]:
        history._sample()
    # After 120 s at 3 the share is 3 * (1 - e^-2); 60 s idle later it decayed by e^-1.
    assert history.own_load() == pytest.approx(3 * (1 - math.exp(-2)) * math.exp(-1), abs=0.01)


def test_a_point_waits_for_the_wake_of_other_work_to_decay() -> None:
    # The bench before left the load at 3.5; it decays, and the point starts below 2.5.
    loads = iter([3.5, 3.1, 2.7, 2.4, 2.0])
    waited = machine.wait_for_quiet(
        2.5, timeout=5, every=0.01, load=lambda: next(loads), own_load=lambda: 0.0
    )
    assert waited < 5
    assert next(loads) == 2.0  # it stopped asking once the load was low enough
    # A host that stays busy delays the point by the timeout, no longer.
    began = time.monotonic()
    waited = machine.wait_for_quiet(
        2.5, timeout=0.2, every=0.01, load=lambda: 9.0, own_load=lambda: 0.0
    )
    assert waited >= 0.2
    assert time.monotonic() - began < 2


def test_the_benchs_runnable_threads_are_counted_from_proc() -> None:
    # A child process that spins is runnable (or running) whenever the kernel looks; the
    # asking thread is not counted.
    idle = machine._own_tree_runnable()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 10
        while machine._own_tree_runnable() < idle + 1:
            assert time.monotonic() < deadline, "the spinning child never showed as runnable"
            time.sleep(0.05)
    finally:
        spinner.kill()
        spinner.wait()


def test_sizes_are_parsed_or_refused_with_the_reason() -> None:
    assert results.sizes("10k, 1k,500,1k") == [500, 1000, 10000]
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        results.sizes("1k,lots")
    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        results.sizes("0")


def test_a_report_is_written_read_and_drawn(tmp_path: Path) -> None:
    folder, docs = tmp_path / "results", tmp_path / "docs"
    report = results.Report("approval", "Parked approvals", {"sizes": [1, 2]})
    run = report.server("dev", "dev server", "Temporal server x")
    for size in (1, 2):
        with machine.measured(quiet_timeout=0) as conditions:
            busy(0.05)
        metrics = {
            "rss_growth_mb": 10.0 * size, "decide_p50_ms": 50, "decide_p99_ms": 90 + size,
            "list_p50_ms": 20, "list_p99_ms": 40, "park_rate": 100,
        }  # fmt: skip
        run.points.append(results.Point(size, metrics, conditions.as_json()))
        run.targets.append(
            results.judge("worker RSS growth", 10.0 * size, 150, "MB", size=size,
                          conditions=conditions, max_load=1e9, max_foreign=1e9)
        )  # fmt: skip
        saved = report.save(folder)
    assert saved is not None
    assert saved.parent == folder
    loaded = results.load(saved)
    assert [p["size"] for p in loaded["servers"]["dev"]["points"]] == [1, 2]
    assert loaded["facts"]["temporalio"]
    assert loaded["facts"]["calibration_ms"] > 0

    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\nkept\n\n{plots.BEGIN}\nold\n{plots.END}\n\nkept too\n")
    written = plots.render(folder, docs, page)
    assert docs / "approval.png" in written
    assert docs / "approval.json" in written
    assert (docs / "approval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "old" not in text
    assert "kept\n" in text
    assert "kept too" in text
    assert "![approval](benchmarks/approval.png)" in text
    assert "| dev server | - | 2 | 20 | 50 / 92 |" in text
    assert "worker RSS growth 20.00 MB (target < 150): **met**" in text
    assert f"a fixed Python loop in {loaded['facts']['calibration_ms']} ms" in text

    # A later run of sizes 2 and 4 adds to the earlier one: size 1 stays from the first.
    later = results.Report("approval", "Parked approvals", {"sizes": [2, 4]})
    later.started = "9999-01-01T00:00:00+00:00"
    again = later.server("dev", "dev server")
    for size in (2, 4):
        again.points.append(results.Point(size, {"rss_growth_mb": 1.0}, conditions.as_json()))
    later.save(folder)
    shown = plots.newest(folder)["approval"]
    assert [[p["size"] for p in r["servers"]["dev"]["points"]] for r in shown] == [[1], [2, 4]]
    assert [t["size"] for t in shown[0]["servers"]["dev"]["targets"]] == [1]


def test_bad_reports_and_pages_are_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"bench": "approval"}')
    with pytest.raises(ValueError, match="not a bench report: it lacks facts"):
        results.load(tmp_path / "x.json")
    with pytest.raises(SystemExit, match="no bench reports"):
        plots.render(tmp_path / "empty-does-not-exist", tmp_path / "no-docs-either", None)
    with pytest.raises(SystemExit, match=r"x\.json is not a list of bench reports: delete it"):
        plots.render(tmp_path / "empty-does-not-exist", tmp_path, None)
    (tmp_path / "x.json").write_text('[{"bench": "approval", "started": "2026"}]')
    with pytest.raises(SystemExit, match="holds a report without facts, servers: delete it"):
        plots.render(tmp_path / "empty-does-not-exist", tmp_path, None)
    page = tmp_path / "page.md"
    page.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="lacks the markers"):
        plots.write_page([], page)


def _report(started: str, sizes: tuple[int, ...]) -> results.Report:
    report = results.Report("approval", "Parked approvals", {"sizes": list(sizes)})
    report.started = started
    run = report.server("dev", "dev server")
    with machine.measured(quiet_timeout=0) as conditions:
        pass
    for size in sizes:
        metrics = {
            "rss_growth_mb": float(size), "decide_p50_ms": 50, "decide_p99_ms": 90,
            "list_p50_ms": 20, "list_p99_ms": 40, "park_rate": 100,
        }  # fmt: skip
        run.points.append(results.Point(size, metrics, conditions.as_json()))
    return report


def test_a_new_run_adds_to_the_published_series_unless_drawn_fresh(tmp_path: Path) -> None:
    docs, page = tmp_path / "docs", tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\n{plots.BEGIN}\n{plots.END}\n")
    first = tmp_path / "first-checkout"
    _report("2026-01-01T00:00:00+00:00", (1, 2)).save(first)
    plots.render(first, docs, page)

    def drawn() -> list[tuple[str, list[int]]]:
        shown = json.loads((docs / "approval.json").read_text())
        return [(r["started"][:4], [p["size"] for p in r["servers"]["dev"]["points"]])
                for r in shown]  # fmt: skip

    # A new checkout has only its own run: the published sizes 1 stays, 2 is measured again.
    second = tmp_path / "second-checkout"
    _report("2027-01-01T00:00:00+00:00", (2, 4)).save(second)
    plots.render(second, docs, page)
    assert drawn() == [("2026", [1]), ("2027", [2, 4])]
    assert "| dev server | - | 1 |" in page.read_text()

    # A report both in the results and published (trimmed) is taken once, from the results.
    _report("2026-01-01T00:00:00+00:00", (1, 2)).save(second)
    plots.render(second, docs, page)
    assert drawn() == [("2026", [1]), ("2027", [2, 4])]

    # --fresh drops what is only published.
    plots.main(["--results", str(tmp_path / "first-checkout"), "--docs", str(docs),
                "--page", str(page), "--fresh"])  # fmt: skip
    assert drawn() == [("2026", [1, 2])]


def test_rows_and_targets_go_by_size_whichever_report_measured_them(tmp_path: Path) -> None:
    # The bigger sizes were measured first, the smaller ones again later: the table and the
    # targets still read 1, 2, 3, 4.
    folder, docs = tmp_path / "results", tmp_path / "docs"
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Benchmarks\n\n{plots.BEGIN}\n{plots.END}\n")
    bigger, smaller = (
        _report("2026-01-01T00:00:00+00:00", (3, 4)),
        _report("2026-01-02T00:00:00+00:00", (1, 2)),
    )
    for report in (bigger, smaller):
        with machine.measured(quiet_timeout=0) as conditions:
            pass
        run = report.servers["dev"]
        run.targets += [
            results.judge("worker RSS growth", float(p.size), 150, "MB", size=p.size,
                          conditions=conditions, max_load=1e9, max_foreign=1e9)
            for p in run.points
        ]  # fmt: skip
        report.save(folder)
    plots.render(folder, docs, page)
    text = page.read_text()
    rows = [line.split(" | ")[2] for line in text.splitlines() if line.startswith("| dev server")]
    assert rows == ["1", "2", "3", "4"]
    targets = [line.split("size ")[1].split(":")[0] for line in text.splitlines()
               if line.startswith("- dev server, size")]  # fmt: skip
    assert targets == ["1", "2", "3", "4"]
