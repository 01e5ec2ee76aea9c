"""The local stack's commands say what is wrong and what to do: ``muster up
--prometheus-port`` without Prometheus stops at once with the command that installs it,
``muster ping`` without a reachable Temporal says which address it tried and how to set
one, and ``muster apply`` publishes policies where a running ``muster up`` reads them (or
says who reads what it published)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from muster_operator.apply import (
    DEFAULT_POLICIES_DIR,
    RunningStack,
    policies_target,
    running_stack,
    who_reads,
)
from tests.helpers import free_port

MUSTER = Path(sys.executable).parent / "muster"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("MUSTER_", "TEMPORAL_", "OTEL_"))
    }
    return {**env, **extra}


def test_up_without_prometheus_stops_at_once_with_the_install_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(MUSTER), "up", "--state-dir", str(tmp_path / "state"), "--prometheus-port",
         str(free_port()), "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
         "--base-port", str(free_port())],
        capture_output=True, text=True, timeout=60, check=False,
        env=clean_env(PATH=str(MUSTER.parent)),  # the venv only: no prometheus on the PATH
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--prometheus-port needs Prometheus" in result.stdout
    assert "make prometheus" in result.stdout
    assert "sudo apt-get install prometheus" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert "starting Temporal" not in result.stdout  # nothing was started
    # Nothing was started before the refusal (before, the stack started everything first
    # and failed after about 50 s): the state folder holds the lock and nothing a started
    # part writes (Temporal's database, logs, pid files).
    made = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert made == ["muster-up.lock"], made


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ping_without_temporal_address_names_the_address_and_the_fix() -> None:
    if listening(7233):
        pytest.skip("a Temporal answers on the default port 7233 here; nothing to refuse")
    result = subprocess.run(
        [str(MUSTER), "ping"], capture_output=True, text=True, timeout=60, check=False,
        env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(
        "muster ping: no Temporal answers at localhost:7233, the default: TEMPORAL_ADDRESS is "
        "not set (connection refused)"
    ), result.stderr
    assert "export TEMPORAL_ADDRESS=127.0.0.1:7233" in result.stderr
    assert "tonic" not in result.stderr  # no raw transport error


def test_ping_at_a_set_address_names_it() -> None:
    port = free_port()
    result = subprocess.run(
        [str(MUSTER), "ping"], capture_output=True, text=True, timeout=60, check=False,
        env=clean_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"),
    )  # fmt: skip
    assert result.returncode == 1
    assert f"no Temporal answers at TEMPORAL_ADDRESS=127.0.0.1:{port}" in result.stderr


def state_file(folder: Path, pid: int, policies: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "muster-up.json").write_text(
        json.dumps({"pid": pid, "policies": {"dir": str(policies),
                                             "read_by": ["approval", "gateway"]}})
    )  # fmt: skip


def test_apply_publishes_where_a_running_stack_reads(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state_file(state, os.getpid(), state / "policies")  # this process stands in for it
    stack = running_stack({"MUSTER_UP_STATE_DIR": str(state)})
    assert stack == RunningStack(os.getpid(), state / "policies", ["approval", "gateway"])
    target, chosen = policies_target(None, stack, env={})
    assert (target, chosen) == (state / "policies", False)
    said = who_reads(target, chosen, stack)
    assert said is not None
    assert f"reads {state / 'policies'}: its approval and gateway use these policies" in said


def test_apply_elsewhere_says_the_running_stack_will_not_see_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state_file(state, os.getpid(), state / "policies")
    stack = running_stack({"MUSTER_UP_STATE_DIR": str(state)})
    target, chosen = policies_target(tmp_path / "elsewhere", stack, env={})
    said = who_reads(target, chosen, stack)
    assert said is not None
    assert said.startswith("note: the running muster up")
    assert "will not see these" in said


def test_apply_without_a_stack_says_nobody_reads_the_default(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    state = tmp_path / "state"
    state_file(state, int(dead.stdout), state / "policies")  # left behind by a killed stack
    assert running_stack({"MUSTER_UP_STATE_DIR": str(state)}) is None
    assert running_stack({"MUSTER_UP_STATE_DIR": str(tmp_path / "none")}) is None
    target, chosen = policies_target(None, None, env={})
    assert (target, chosen) == (DEFAULT_POLICIES_DIR, False)
    said = who_reads(target, chosen, None)
    assert said is not None
    assert said.startswith(f"no running muster up reads {DEFAULT_POLICIES_DIR}")
    assert who_reads(tmp_path, True, None) is None  # chosen by the caller: nothing to add
