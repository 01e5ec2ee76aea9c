"""The replay tier's summary line: how many histories replayed and how long it took."""

from __future__ import annotations

from typing import Any

from tests.replay.test_replay import TIMES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMES:
        terminalreporter.write_line(
            f"replay gate: {len(TIMES)} histories replayed in {sum(TIMES):.1f}s"
        )
