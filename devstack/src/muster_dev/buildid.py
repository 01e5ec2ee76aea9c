"""The build id ``muster up`` runs its workers as (Worker Versioning).

In a git checkout it is the revision, ``git-<12 hex>``, with ``-dirty-<8 hex>`` (a hash
of the uncommitted changes) when tracked files differ from it: a changed working tree is
different code, so it is a different build. Outside a checkout (an installed wheel, an
exported tree, no git) it is ``src-<12 hex>``, a hash of the Muster packages' Python
sources, so the same code gets the same id and changed code a new one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
from pathlib import Path

PACKAGES = (
    "muster_api",
    "muster_runtime",
    "muster_approval",
    "muster_fulfillment",
    "muster_scheduling",
)
"""The packages whose code the workers run."""


def _git(folder: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run([git, "-C", str(folder), *args], capture_output=True,
                              timeout=30, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="replace") if done.returncode == 0 else None


def git_build_id(folder: Path) -> str | None:
    """``git-<revision>[-dirty-<hash of the diff>]`` of the checkout holding ``folder``."""
    revision = _git(folder, "rev-parse", "--verify", "HEAD")
    if not revision:
        return None
    build = f"git-{revision.strip()[:12]}"
    diff = _git(folder, "diff", "HEAD", "--no-ext-diff", "--binary")
    if diff:
        build += "-dirty-" + hashlib.sha256(diff.encode()).hexdigest()[:8]
    return build


def source_build_id(packages: tuple[str, ...] = PACKAGES) -> str:
    """``src-<hash>`` of the installed packages' ``*.py`` files (by path and content)."""
    digest = hashlib.sha256()
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            for path in sorted(Path(root).rglob("*.py")):
                digest.update(f"{name}/{path.relative_to(root).as_posix()}\0".encode())
                digest.update(path.read_bytes())
    return f"src-{digest.hexdigest()[:12]}"


def local_build_id(folder: Path | None = None) -> tuple[str, str]:
    """The build id for this code, and where it came from (for the start-up message)."""
    here = folder or Path(__file__).resolve().parent
    found = git_build_id(here)
    if found:
        return found, "the git revision"
    return source_build_id(), "a hash of the Python sources (not a git checkout)"
