"""The build id of ``muster up``: the git revision of a real checkout (a new id once a
tracked file changes), and a hash of the sources outside one; and the setting that
overrides it or turns versioning off."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from muster_dev.buildid import git_build_id, local_build_id, source_build_id
from muster_dev.stack import worker_build_id

GIT = shutil.which("git")


def _git(folder: Path, *args: str) -> str:
    assert GIT is not None
    done = subprocess.run([GIT, "-C", str(folder), *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip()


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_a_checkout_is_named_by_its_revision_and_its_changes(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "workflow.py").write_text("one\n")
    _git(tmp_path, "add", "workflow.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    revision = _git(tmp_path, "rev-parse", "HEAD")
    assert git_build_id(tmp_path) == f"git-{revision[:12]}"
    (tmp_path / "workflow.py").write_text("two\n")
    dirty = git_build_id(tmp_path)
    assert dirty is not None
    assert dirty.startswith(f"git-{revision[:12]}-dirty-")
    (tmp_path / "workflow.py").write_text("three\n")
    assert git_build_id(tmp_path) not in (dirty, f"git-{revision[:12]}")
    assert local_build_id(tmp_path)[1] == "the git revision"


def test_outside_a_checkout_the_sources_name_the_build(tmp_path: Path) -> None:
    assert git_build_id(tmp_path) is None
    build, source = local_build_id(tmp_path)
    assert build == source_build_id()
    assert build.startswith("src-")
    assert len(build) == len("src-") + 12
    assert "not a git checkout" in source


def test_the_setting_overrides_or_turns_versioning_off() -> None:
    said: list[str] = []
    assert worker_build_id("none", said.append) is None
    assert worker_build_id("release-7", said.append) == "release-7"
    assert said == ["workers run unversioned (MUSTER_UP_BUILD_ID=none)",
                    "workers run as build release-7"]  # fmt: skip
