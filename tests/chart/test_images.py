"""Every Muster image really builds here with buildah (no daemon, vfs storage, chroot
isolation, the host's CA bundle mounted read-only for PyPI) on a Debian bookworm base made
with debootstrap; each runs as a numeric non-root user that cannot write outside /tmp, its
entrypoint starts (``--help``), and the worker images reach their health endpoint against
the real Temporal dev server. Sizes are printed at the end of the run."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from muster_runtime.localstack.process import free_port
from muster_runtime.polling import wait_until
from muster_runtime.settings import TemporalSettings
from tests.chart.images import COMPONENTS, WORKERS, BuiltImage, Container
from tests.chart.support import ROOT
from tests.helpers import http_get

pytestmark = [pytest.mark.chart, pytest.mark.slow, pytest.mark.timeout(1800)]

if os.geteuid() != 0:  # pragma: no cover - CI runs as root
    pytest.skip("buildah with vfs storage needs root here", allow_module_level=True)

MODULES = {
    "operator": "muster_operator",
    "approval": "muster_approval",
    "scheduling": "muster_scheduling",
    "fulfillment": "muster_fulfillment",
    "gateway": "muster_gateway",
    "backends": "muster_backends",
}


@pytest.mark.parametrize("component", sorted(COMPONENTS))
def test_image_config(images: dict[str, BuiltImage], component: str) -> None:
    config = images[component].config
    user = config.get("User", "")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), f"User {user!r} is not numeric"
    assert int(uid) > 0, f"User {user!r} is root"
    assert gid.isdigit(), f"User {user!r} has no numeric group"
    assert int(gid) > 0, f"User {user!r} runs in group root"
    assert config["Entrypoint"] == ["/opt/muster/bin/python", "-m", MODULES[component]]
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
    result = container.run(*entrypoint, "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m {MODULES[component]}"), result.stdout
    assert "TEMPORAL_ADDRESS" in result.stdout
    bad = container.run(*entrypoint, "--bogus", timeout=60)
    assert bad.returncode == 2
    assert "unexpected argument '--bogus'" in bad.stderr


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
