"""Building and running Muster's images with buildah (vfs storage, chroot isolation, no
daemon), on the local Debian bookworm base that ``make image-base`` makes with debootstrap."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from muster_dev import images
from tests.chart.support import ROOT

STORAGE = Path(os.environ.get("MUSTER_CONTAINERS_ROOT") or ROOT / ".cache" / "containers")
BASE_IMAGE = "localhost/muster-base:bookworm"
# The base image's ID, on every image built on it (as infra/images/skaffold-build.sh labels
# its builds): an image is reused only on the base it was built on.
BASE_LABEL = "io.muster.base-image"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DOCKERFILE = ROOT / "infra" / "images" / "Dockerfile"


@dataclass(frozen=True)
class ImageSpec:
    """One row of infra/images/services.tsv: what a component's image carries."""

    component: str
    package: str
    module: str
    ports: tuple[str, ...]

    def build_args(self) -> dict[str, str]:
        """The Dockerfile's build arguments for this image."""
        return {"PACKAGE": self.package, "MODULE": self.module, "PORTS": " ".join(self.ports)}


def image_table() -> dict[str, ImageSpec]:
    """infra/images/services.tsv, by component."""
    specs = {}
    for line in (ROOT / "infra" / "images" / "services.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            component, package, module, *ports = line.split()
            specs[component] = ImageSpec(component, package, module, tuple(ports))
    return specs


COMPONENTS = image_table()
WORKERS = ("approval", "scheduling", "fulfillment")


def context_tag() -> str:
    """The content tag of the checkout's build context (``muster cluster context-tag``):
    an image with it was built from exactly these files, by this run, an earlier one or
    ``skaffold -p local``, so a rerun on unchanged sources reuses it instead of building."""
    return images.context_tag(ROOT)


def buildah_command() -> list[str]:
    """buildah with Muster's test storage (vfs under .cache/containers)."""
    binary = shutil.which("buildah")
    if binary is None:
        raise RuntimeError("buildah is not installed: run `make image-tools`")
    return [binary, "--root", str(STORAGE), "--storage-driver", "vfs"]


def buildah(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run buildah to completion; a failure (with ``check``) raises with its stderr."""
    result = subprocess.run(
        [*buildah_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"buildah {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    return result


@dataclass
class BuiltImage:
    component: str
    reference: str
    seconds: float
    size: str
    config: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


def image_exists(reference: str) -> bool:
    return buildah("inspect", "--type", "image", reference, check=False).returncode == 0


def image_id(reference: str) -> str:
    """The image's ID; the base image missing says how to make it."""
    result = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", reference,
                     check=False)  # fmt: skip
    if result.returncode != 0:
        hint = "run `make image-base` (debootstrap)" if reference == BASE_IMAGE else "build it"
        raise RuntimeError(f"{reference} is missing: {hint}")
    return result.stdout.strip()


def built_on_base(reference: str) -> bool:
    """Whether ``reference`` exists and was built on today's base image."""
    result = buildah("inspect", "--type", "image", "--format",
                     f'{{{{index .OCIv1.Config.Labels "{BASE_LABEL}"}}}}', reference,
                     check=False)  # fmt: skip
    return result.returncode == 0 and result.stdout.strip() == image_id(BASE_IMAGE)


DEV_SERVER = "temporal"
"""The Dockerfile's target for the Temporal dev server image (``localhost/muster-temporal``)."""


def build(component: str, tag: str) -> BuiltImage:
    """Build one component's image (or the dev server's, ``DEV_SERVER``) from the repository
    root on the local base."""
    reference = f"localhost/muster-{component}:{tag}"
    base_id = image_id(BASE_IMAGE)
    started = time.monotonic()
    if component == DEV_SERVER:
        args = ["--target", DEV_SERVER]
    else:
        args = [
            f"--build-arg={key}={value}"
            for key, value in COMPONENTS[component].build_args().items()
        ]
    buildah(
        # No --layers: with vfs storage every cached layer is a full copy of the root
        # filesystem (a build takes 3x as long); the uv cache mount keeps downloads shared.
        "build", "--isolation", "chroot", "--quiet",
        "--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
        "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", *args, "--label", f"{BASE_LABEL}={base_id}",
        "-f", str(DOCKERFILE), "-t", reference, str(ROOT),
        timeout=900,
    )  # fmt: skip
    seconds = time.monotonic() - started
    inspected = json.loads(buildah("inspect", "--type", "image", reference).stdout)
    return BuiltImage(
        component, reference, seconds, image_size(reference), inspected["OCIv1"]["config"]
    )


@contextmanager
def build_lock() -> Iterator[None]:
    """Held while one process checks for an image and builds it. The chart and cluster tiers
    need the same images, and ``make test TEST_PARALLEL=1`` runs them side by side: the
    first builds each one, the other waits and reuses it instead of building it again."""
    STORAGE.mkdir(parents=True, exist_ok=True)
    with (STORAGE / "muster-build.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(component: str, tag: str) -> BuiltImage:
    """``component``'s image under ``tag`` (a ``context_tag``): built unless the storage
    already holds it, built on today's base from exactly these files by this run's other
    tier, an earlier run or skaffold (then ``reused``)."""
    reference = f"localhost/muster-{component}:{tag}"
    with build_lock():
        if not built_on_base(reference):
            return build(component, tag)
    inspected = json.loads(buildah("inspect", "--type", "image", reference).stdout)
    config = inspected["OCIv1"]["config"]
    return BuiltImage(component, reference, 0.0, image_size(reference), config, reused=True)


def image_size(reference: str) -> str:
    """Size of the image's layers, uncompressed, as buildah reports it ("261 MB")."""
    (image,) = json.loads(buildah("images", "--json", reference).stdout)
    return str(image["size"])


class Container:
    """A working container of an image, removed on close."""

    def __init__(self, reference: str) -> None:
        self.name = buildah("from", "--pull-never", reference).stdout.strip()

    def _run_args(
        self, argv: tuple[str, ...], env: dict[str, str] | None, volumes: list[str] | None
    ) -> list[str]:
        """``buildah run`` arguments: chroot isolation, the host's network, env and volumes."""
        options = ["run", "--isolation", "chroot"]
        for key, value in (env or {}).items():
            options += ["--env", f"{key}={value}"]
        for volume in volumes or []:
            options += ["--volume", volume]
        return [*options, self.name, "--", *argv]

    def run(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        volumes: list[str] | None = None,
        timeout: float = 60,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the container and wait for it."""
        return buildah(*self._run_args(argv, env, volumes), timeout=timeout, check=check)

    def popen(
        self, *argv: str, env: dict[str, str], volumes: list[str], log: Path
    ) -> subprocess.Popen[bytes]:
        """Start a command in the container (its own session), output to ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                [*buildah_command(), *self._run_args(argv, env, volumes)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def close(self) -> None:
        buildah("rm", self.name, check=False)
