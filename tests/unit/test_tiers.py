"""``make test-all``'s runner (tests/tiers.py): which pytest processes it starts for which
arguments, how their exit statuses combine, and, with real pytest processes on small test
files, that a logged group's output is printed whole and that a SIGTERM lets every pytest
run its teardown."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from muster_runtime.polling import wait_until
from tests.tiers import BESIDE, CLUSTER, REPO, Group, combined, names_a_path, plan, run

PASSING = "def test_passes():\n    assert True\n"
FAILING = "def test_fails():\n    assert 1 == 2, 'one is not two'\n"


@pytest.mark.parametrize(
    ("args", "groups"),
    [
        ([], 2),
        (["--durations=60"], 2),
        (["-k", "gateway and not slow"], 2),
        (["-m", "unit"], 2),
        (["-x", "-q"], 2),
        (["tests/unit"], 1),
        (["tests/unit/test_tiers.py::test_plan"], 1),
        (["-q", "tests/temporal/test_gateway.py"], 1),
    ],
)
def test_plan(args: list[str], groups: int) -> None:
    planned = plan(args)
    assert len(planned) == groups
    if groups == 2:
        cluster, others = planned
        assert cluster.args == (CLUSTER, "tests/e2e", *args)
        assert cluster.log is not None
        assert others.args == ("--ignore=tests/cluster", "--ignore=tests/e2e", *args)
        assert others.log is None
        # The first process's tiers are tier folders, and not all of them.
        tiers = {p.relative_to(REPO).as_posix() for p in (REPO / "tests").iterdir()
                 if p.is_dir() and any(p.glob("test_*.py"))}  # fmt: skip
        assert set(BESIDE) < tiers
    else:
        assert planned[0].args == tuple(args)


def test_serial_is_one_pytest() -> None:
    assert plan(["--durations=5"], serial=True) == [Group("tests", ("--durations=5",))]


def test_an_option_value_is_not_a_path() -> None:
    assert not names_a_path(["-k", "unit"])
    assert names_a_path(["tests/unit"])
    assert names_a_path([str(REPO / "tests" / "unit")])


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [([0, 0], 0), ([0, 5], 0), ([5, 5], 5), ([1, 0], 1), ([0, 2], 2), ([5, 1], 1), ([4], 4)],
)
def test_combined_status(statuses: list[int], expected: int) -> None:
    assert combined(statuses) == expected


def test_a_logged_group_is_printed_whole_and_a_failure_wins(tmp_path: Path) -> None:
    (tmp_path / "test_a.py").write_text(PASSING)
    (tmp_path / "test_b.py").write_text(FAILING)
    log = tmp_path / "logs" / "b.log"
    out = io.StringIO()
    status = run(
        [
            Group("b group", (str(tmp_path / "test_b.py"), "-p", "no:cacheprovider"), log),
            Group("a group", (str(tmp_path / "test_a.py"), "-p", "no:cacheprovider", "-q")),
        ],
        out=out,
    )
    assert status == 1
    printed = out.getvalue()
    assert f"b group in a pytest of their own; its output is in {log}" in printed
    assert "one is not two" in printed
    assert "1 failed" in printed
    assert "b group: exit 1, a group: exit 0" in printed
    assert log.read_text() in printed


def test_sigterm_stops_every_pytest_after_its_teardown(tmp_path: Path) -> None:
    started, torn_down = tmp_path / "started", tmp_path / "torn-down"
    (tmp_path / "test_slow.py").write_text(
        "import pathlib, time\nimport pytest\n\n"
        "@pytest.fixture\n"
        "def resource():\n"
        f"    pathlib.Path({str(started)!r}).touch()\n"
        "    yield\n"
        f"    pathlib.Path({str(torn_down)!r}).touch()\n\n"
        "def test_waits(resource):\n"
        "    time.sleep(120)\n"
    )
    script = (
        "import sys; from pathlib import Path; from tests.tiers import Group, run; "
        f"sys.exit(run([Group('slow', ({str(tmp_path / 'test_slow.py')!r}, "
        f"'-p', 'no:cacheprovider'), Path({str(tmp_path / 'slow.log')!r}))]))"
    )
    # Started as a shell's background job (CI's) starts it: with SIGINT ignored.
    runner = subprocess.Popen(
        ["sh", "-c", 'trap "" INT; exec "$0" -c "$1"', sys.executable, script],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert wait_until(started.exists, what="the slow test to start", timeout=60)
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert torn_down.exists(), output
    assert runner.returncode == 2, output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output
