"""The approval worker starts with an empty policy folder, as it finds the operator's
published ConfigMap on a fresh install (it once refused to start, and crash-looped until
someone applied an ApprovalPolicy), picks up a policy published later without a restart,
and still refuses a folder that does not exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from muster_approval.worker import ApprovalSettings, sources
from muster_runtime.service import StartupError
from tests.helpers import REPO

POLICY = (REPO / "examples" / "policies" / "large-orders.yaml").read_text()


def settings(policies: Path) -> ApprovalSettings:
    return ApprovalSettings(
        policies_dir=policies,
        directory_file=REPO / "examples" / "directory.yaml",
        public_url="http://127.0.0.1:8080/ui",
    )


def test_an_empty_folder_starts_and_a_policy_published_later_is_used(tmp_path: Path) -> None:
    policies, directory = sources(settings(tmp_path))
    assert policies() == {}
    assert "alice" in directory().users

    published = tmp_path / "default.large-orders.yaml"
    published.write_text(POLICY)
    # The loader re-reads on a changed mtime; make the change visible even on coarse clocks.
    later = tmp_path.stat().st_mtime + 2
    os.utime(tmp_path, (later, later))
    assert policies()["large-orders"].name == "large-orders"


def test_a_missing_folder_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="does not exist"):
        sources(settings(tmp_path / "nowhere"))
