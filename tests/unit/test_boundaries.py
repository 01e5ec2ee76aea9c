"""Package boundaries that import-linter cannot see: what each workspace package declares
against what its code imports, and what each production package pulls in from uv.lock.

- every dependency a package declares is imported by its code, and everything its code
  imports is installed with it (so an image holds what its service needs, and runs);
- no production package's locked dependency closure holds the development stack or a dev
  tool (``muster-dev``, ``aiosmtpd``, ``playwright``, ``pytest``, ``mypy``, ...);
- the gateway's installed dependency set holds no worker package: it talks to the
  patterns through ``muster-api`` only.

The import rules between Muster's own modules are import-linter contracts in
``pyproject.toml`` (``make lint``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "muster-api": ROOT / "services" / "api",
    "muster-runtime": ROOT / "services" / "runtime",
    "muster-approval": ROOT / "services" / "approval",
    "muster-fulfillment": ROOT / "services" / "fulfillment",
    "muster-scheduling": ROOT / "services" / "scheduling",
    "muster-backends": ROOT / "services" / "backends",
    "muster-gateway": ROOT / "services" / "gateway",
    "muster-operator": ROOT / "operator",
}
PACKAGES = {**PRODUCTION, "muster-dev": ROOT / "devstack"}
DEV_ONLY = {"muster-dev", "aiosmtpd", "playwright", "pytest", "mypy", "ruff", "import-linter"}
WORKERS = {"muster-approval", "muster-fulfillment", "muster-scheduling", "muster-backends"}

# Dependencies a package uses without importing them by name, and why.
USED_INDIRECTLY = {
    ("muster-gateway", "jinja2"): "FastAPI's Jinja2Templates renders the approver page",
    ("muster-gateway", "python-multipart"): "FastAPI parses the page's forms with it",
}


def normalise(name: str) -> str:
    """A distribution name as uv.lock spells it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(distribution: str) -> set[str]:
    """The names in a package's ``[project] dependencies``."""
    data = tomllib.loads((PACKAGES[distribution] / "pyproject.toml").read_text())
    return {
        normalise(re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0])
        for d in data["project"]["dependencies"]
    }


# Parsed in a child process: CPython 3.11's AST converter keeps its recursion depth in
# interpreter-wide state, and another thread of the test process that builds ASTs (or runs
# a finaliser mid-conversion) makes ``ast.parse`` fail with "AST constructor recursion
# depth mismatch" (python/cpython#106905).
_IMPORTS_SCRIPT = """
import ast, json, sys
from pathlib import Path
names = set()
for path in sorted(Path(sys.argv[1]).rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
print(json.dumps(sorted(names)))
"""


@cache
def imported_top_levels(distribution: str) -> set[str]:
    """Top-level modules the package's code imports (absolute imports only)."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_SCRIPT, str(PACKAGES[distribution] / "src")],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(result.stdout))


@cache
def module_owners() -> dict[str, set[str]]:
    """Top-level module -> the distributions that provide it (installed here; the
    workspace's own packages are editable installs, so they come from their folders)."""
    owners: dict[str, set[str]] = {}
    for module, dists in packages_distributions().items():
        owners[module] = {normalise(d) for d in dists}
    for distribution in PACKAGES:
        for module in own_modules(distribution):
            owners[module] = {distribution}
    return owners


def own_modules(distribution: str) -> set[str]:
    return {p.name for p in (PACKAGES[distribution] / "src").iterdir() if p.is_dir()}


@pytest.mark.parametrize("distribution", sorted(PACKAGES))
def test_every_declared_dependency_is_imported(distribution: str) -> None:
    modules = imported_top_levels(distribution)
    provided = {d for m in modules for d in module_owners().get(m, set())}
    unused = {
        d for d in declared(distribution) - provided if (distribution, d) not in USED_INDIRECTLY
    }
    assert not unused, (
        f"{distribution} declares {sorted(unused)} but its code never imports them: drop "
        "them from its pyproject (an image installs every declared dependency)"
    )


@pytest.mark.parametrize("distribution", sorted(PACKAGES))
def test_everything_imported_is_installed_with_the_package(distribution: str) -> None:
    modules = imported_top_levels(distribution) - own_modules(distribution)
    third_party = {m for m in modules if m not in sys.stdlib_module_names and m != "__future__"}
    installed = closure(distribution)
    missing = {
        m: sorted(module_owners().get(m, {m}))
        for m in third_party
        if not module_owners().get(m, {normalise(m)}) & installed
    }
    assert not missing, (
        f"{distribution} imports {missing}, which installing it does not install: declare "
        "them in its pyproject"
    )


@cache
def lock_packages() -> dict[str, list[str]]:
    """Package -> its runtime dependencies (no dev groups), from uv.lock."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {
        normalise(package["name"]): [normalise(d["name"]) for d in package.get("dependencies", [])]
        for package in lock["package"]
    }


def closure(distribution: str) -> set[str]:
    """Everything installing ``distribution`` installs, per uv.lock."""
    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += lock_packages()[name]
    return seen


@pytest.mark.parametrize("distribution", sorted(PRODUCTION))
def test_production_closure_holds_no_development_tool(distribution: str) -> None:
    assert not closure(distribution) & DEV_ONLY, (
        f"installing {distribution} pulls in {sorted(closure(distribution) & DEV_ONLY)}, "
        "which belong to the dev dependency group only"
    )


def test_the_gateway_installs_contracts_not_workers() -> None:
    installed = closure("muster-gateway")
    assert "muster-api" in installed
    assert not installed & WORKERS, (
        f"the gateway pulls in worker packages {sorted(installed & WORKERS)}; import their "
        "contracts from muster_api instead"
    )
    assert not installed & {"muster-operator", "muster-dev", "kopf", "cryptography"}


def test_the_lock_closure_is_what_uv_would_install() -> None:
    # The closure walk above is only as good as its reading of uv.lock: the runtime's
    # closure must hold its own direct dependencies and theirs (temporalio -> protobuf).
    runtime = closure("muster-runtime")
    assert {"temporalio", "protobuf", "pydantic-core", "muster-api"} <= runtime
    assert "fastapi" not in runtime
