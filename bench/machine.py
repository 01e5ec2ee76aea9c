"""What a benchmark was measured on and under which conditions, from ``/proc``: the host's
facts, the load average before and after each measured point, the CPU that processes outside
the bench used meanwhile, and the CPU each part of the bench used (the split that says where
the time went when a target is missed).

CPU is counted per process tree, by pid: a part is a process the bench started, with every
process below it (PostgreSQL's backends, a worker's threads), never a name to look for, so
other work on a shared host is never counted as the bench's.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# When a measured point counts as too noisy to judge a target by (see Conditions.noise).
MAX_LOAD = 2.5
"""1-minute load average allowed before a point, and after it, once the bench's own share of
it is taken off: the bench's own processes are part of the load, and the points of a series
follow each other (see OwnCpuHistory.own_load)."""
LOAD_TAU = 60.0
"""Seconds: the kernel's 1-minute load average decays with this time constant."""
MAX_FOREIGN_CORES = 0.5
"""Cores that processes outside the bench may have used on average during a point."""


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: split after its end.
    return text.rsplit(")", 1)[1].split()


def _children() -> dict[int, list[int]]:
    """Each live process's children, by parent pid."""
    below: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            below.setdefault(int(fields[1]), []).append(int(entry.name))
    return below


def _ticks(fields: list[str], *, reaped: bool) -> int:
    # utime, stime; with ``reaped`` also cutime, cstime: children that ended and were waited
    # for, whose CPU the kernel adds to their parent (PostgreSQL's finished backends).
    used = int(fields[11]) + int(fields[12])
    if reaped:
        used += int(fields[13]) + int(fields[14])
    return used


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(
    roots: Mapping[str, int | None],
    *,
    own: str | None = None,
    below: Mapping[int, list[int]] | None = None,
) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process and everything below it.

    A subtree that belongs to another named root is not counted twice: it counts for its own
    name. ``own`` names the bench process itself, counted alone (its children are the parts
    it started, each named separately, or nobody's).
    """
    below = _children() if below is None else below
    named = {pid: name for name, pid in roots.items() if pid is not None}
    used = dict.fromkeys(roots, 0.0)
    for name, root in roots.items():
        if root is None:
            continue
        if name == own:
            fields = _stat_fields(root)
            used[name] = _ticks(fields, reaped=False) / TICK if fields else 0.0
            continue
        stack, ticks = [root], 0
        while stack:
            pid = stack.pop()
            fields = _stat_fields(pid)
            if fields is not None:
                ticks += _ticks(fields, reaped=True)
            stack += [child for child in below.get(pid, []) if child not in named]
        used[name] = ticks / TICK
    return used


def _own_tree_seconds(below: Mapping[int, list[int]] | None = None) -> float:
    """CPU seconds of this process and every process below it."""
    return tree_cpu_seconds({"bench": os.getpid()}, below=below)["bench"]


def _own_tree_runnable(below: Mapping[int, list[int]] | None = None) -> int:
    """Threads of this process and every process below it that are running or waiting for a
    core (state R) or in uninterruptible sleep (D): what the kernel's load average counts.
    The thread that asks is left out: it runs only to ask."""
    below = _children() if below is None else below
    stack, count = [os.getpid()], 0
    asking = f"{os.getpid()}/{threading.get_native_id()}"
    while stack:
        pid = stack.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            threads = []
        for tid in threads:
            if f"{pid}/{tid}" == asking:
                continue
            try:
                text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            if text[text.rindex(")") + 2] in "RD":
                count += 1
        stack += below.get(pid, [])
    return count


def _busy_seconds() -> float:
    """CPU seconds every core of the host spent busy so far (from /proc/stat)."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK


def _own_reading() -> tuple[float, float, int]:
    """(now, the bench tree's CPU seconds, its runnable threads), from one scan of /proc."""
    below = _children()
    return time.monotonic(), _own_tree_seconds(below), _own_tree_runnable(below)


class OwnCpuHistory:
    """The bench's own work (its process tree) sampled every few seconds in a daemon thread:
    the CPU it used, and how many of its threads were runnable, so a point's load average can
    be judged without the bench's own share of it (starting Temporal, the previous point of
    the series, the point itself)."""

    def __init__(
        self,
        every: float = 2.0,
        keep: float = 600.0,
        read: Callable[[], tuple[float, float, int]] | None = None,
    ) -> None:
        self.every = every
        self.samples: deque[tuple[float, float, int]] = deque(maxlen=int(keep / every) + 2)
        self._read = read or _own_reading
        self._lock = threading.Lock()  # guards the samples
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling (once per process; the benches call it when they begin)."""
        with self._starting:
            if self._thread is not None:
                return
            self._sample()
            self._thread = threading.Thread(target=self._run, name="own-cpu", daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        reading = self._read()
        with self._lock:
            self.samples.append(reading)

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            self._sample()

    def cores_over(self, window: float = 60.0) -> float:
        """Cores the bench kept busy on average over the last ``window`` seconds (or since
        sampling began, when that is shorter); 0 before two samples exist."""
        self._sample()
        with self._lock:
            samples = list(self.samples)
        now, used_now, _ = samples[-1]
        older = [(t, used) for t, used, _ in samples if now - t >= window]
        then, used_then = older[-1] if older else samples[0][:2]
        if now - then < 1e-3:
            return 0.0
        return round(max(used_now - used_then, 0.0) / (now - then), 2)

    def own_load(self, tau: float = LOAD_TAU) -> float:
        """The bench's share of the 1-minute load average now: its runnable threads, averaged
        the way the kernel averages every runnable thread (exponentially, time constant
        ``tau``), from when sampling began (the bench's processes did not run before).

        A bench that keeps both cores busy has more runnable threads than cores, so its share
        of the load is larger than its cores; taking its cores off instead would leave part of
        its own load counted as other work's."""
        self._sample()
        with self._lock:
            samples = list(self.samples)
        share, (then, _, runnable) = 0.0, samples[0]
        for now, _, count in samples[1:]:
            decay = math.exp(-(now - then) / tau)
            share = share * decay + runnable * (1 - decay)
            then, runnable = now, count
        return round(share, 2)


OWN_CPU = OwnCpuHistory()


@dataclass
class Conditions:
    """The conditions one measured point ran under."""

    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0
    bench_cores_before: float = 0.0
    """Cores the bench and the processes it started kept busy in the minute before."""
    bench_cores: float = 0.0
    """Cores the bench and the processes it started kept busy on average."""
    bench_load_before: float | None = None
    """The bench's own share of the 1-minute load average before (OwnCpuHistory.own_load)."""
    bench_load_after: float | None = None
    """... and after; None in reports written before it was sampled."""
    foreign_cores: float = 0.0
    """Cores everything else on the host kept busy on average."""

    def noise(
        self, max_load: float = MAX_LOAD, max_foreign: float = MAX_FOREIGN_CORES
    ) -> str | None:
        """Why this point is too noisy to judge a target by, or None when it is not."""
        reasons = []
        for when, load, own in (
            ("before", self.load_before[0], self._own("before")),
            ("after", self.load_after[0], self._own("after")),
        ):
            if load - own[0] > max_load:
                reasons.append(
                    f"1-min load {load:.1f} {when}, {load - own[0]:.1f} without the bench's "
                    f"own {own[0]:.1f} {own[1]} (limit {max_load:g})"
                )
        if self.foreign_cores > max_foreign:
            reasons.append(
                f"other processes used {self.foreign_cores:.2f} cores (limit {max_foreign:g})"
            )
        return "; ".join(reasons) or None

    def _own(self, when: str) -> tuple[float, str]:
        """The bench's own share of the load before or after the point, and what it is."""
        load = self.bench_load_before if when == "before" else self.bench_load_after
        if load is not None:
            return load, "load"
        # Reports written before the share was sampled: the cores in the minute before, or
        # during the point.
        return (self.bench_cores_before if when == "before" else self.bench_cores), "cores"

    def describe(self) -> str:
        """One line for a table's footnote."""
        return (
            f"load {self.load_before[0]:.1f} → {self.load_after[0]:.1f}, "
            f"other processes {self.foreign_cores:.2f} cores, bench {self.bench_cores:.2f} cores"
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


QUIET_WAIT_SECONDS = 180.0
"""Longest wait before a point for the host's load (without the bench's own share) to drop."""


def wait_for_quiet(
    max_load: float = MAX_LOAD,
    timeout: float = QUIET_WAIT_SECONDS,
    every: float = 2.0,
    load: Callable[[], float] = lambda: load_average()[0],
    own_load: Callable[[], float] = OWN_CPU.own_load,
) -> float:
    """Wait, up to ``timeout`` seconds, until the 1-minute load without the bench's own share
    is at most ``max_load``; the seconds waited. ``make bench`` runs the benches back to back,
    and the load of the one before decays for a minute or two: its wake is no reason to judge
    the next one's first point too noisy. Past the timeout the point runs anyway, and is
    judged by the load it had."""
    OWN_CPU.start()
    began = time.monotonic()
    while load() - own_load() > max_load and time.monotonic() - began < timeout:
        time.sleep(every)
    return round(time.monotonic() - began, 1)


@contextlib.contextmanager
def measured(quiet_timeout: float = QUIET_WAIT_SECONDS) -> Iterator[Conditions]:
    """Record the conditions of the block it wraps (load, and whose CPU was busy), once the
    host is quiet enough (:func:`wait_for_quiet`, at most ``quiet_timeout`` seconds)."""
    wait_for_quiet(timeout=quiet_timeout)
    conditions = Conditions(
        load_before=load_average(),
        bench_cores_before=OWN_CPU.cores_over(),
        bench_load_before=OWN_CPU.own_load(),
    )
    began, busy, ours = time.perf_counter(), _busy_seconds(), _own_tree_seconds()
    try:
        yield conditions
    finally:
        elapsed = max(time.perf_counter() - began, 1e-9)
        own = _own_tree_seconds() - ours
        conditions.seconds = round(elapsed, 2)
        conditions.load_after = load_average()
        conditions.bench_load_after = OWN_CPU.own_load()
        conditions.bench_cores = round(own / elapsed, 2)
        conditions.foreign_cores = round(max(_busy_seconds() - busy - own, 0.0) / elapsed, 2)


@dataclass
class CpuSplit:
    """CPU seconds used by each part between two readings, per unit of work."""

    seconds: dict[str, float]
    units: int
    unit: str = "workflow"
    wall: float = 0.0

    def per_unit_ms(self) -> dict[str, float]:
        return {name: 1000 * used / max(self.units, 1) for name, used in self.seconds.items()}

    def lines(self) -> list[str]:
        """Where the time went, one part per line."""
        total = sum(self.seconds.values())
        out = [f"where the time went ({self.units} {self.unit}s, {self.wall:.1f} s wall):"]
        for name, per in self.per_unit_ms().items():
            share = self.seconds[name] / total if total else 0.0
            out.append(f"  {name:<28} {per:>8.2f} ms CPU per {self.unit} ({share:>4.0%})")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "unit": self.unit,
            "wall_seconds": round(self.wall, 2),
            "cpu_seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "cpu_ms_per_unit": {k: round(v, 3) for k, v in self.per_unit_ms().items()},
        }


@dataclass
class CpuMeter:
    """Reads the CPU of named process trees (``name → pid``); ``own`` is the bench process."""

    parts: dict[str, int | None] = field(default_factory=dict)
    own: str | None = None

    def read(self) -> dict[str, float]:
        return tree_cpu_seconds(self.parts, own=self.own)

    @contextlib.contextmanager
    def split(self, units: int, unit: str = "workflow") -> Iterator[CpuSplit]:
        """The CPU each part used in the block; set ``units`` on the result if it changes."""
        before, began = self.read(), time.perf_counter()
        result = CpuSplit({}, units, unit)
        try:
            yield result
        finally:
            after = self.read()
            result.seconds = {name: after[name] - before[name] for name in self.parts}
            result.wall = time.perf_counter() - began


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def revision() -> str:
    """Muster's git revision, with ``+changes`` when tracked files differ from it."""
    head = _git("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("+changes" if changed else "")


def _memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it ("" where it does not)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


CALIBRATION_LOOP = 2_000_000


def calibration_ms(repeats: int = 3) -> float:
    """Milliseconds one core takes for a fixed pure-Python loop, the best of ``repeats``:
    the host's speed on the day. Virtual machines of the same size differ from day to day
    (a neighbour's load, another host), so absolute figures of runs on different days
    compare only through it; ratios measured within one run need no such help."""
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        total = 0
        for i in range(CALIBRATION_LOOP):
            total += i * i
        best = min(best, time.perf_counter() - began)
    return round(best * 1000, 1)


def facts() -> dict[str, Any]:
    """The host and the software a result was measured with."""
    return {
        "cores": cores(),
        "cpu": cpu_model(),
        "calibration_ms": calibration_ms(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "temporalio": metadata.version("temporalio"),
        "muster_revision": revision(),
    }
