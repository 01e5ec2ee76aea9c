"""The node's image API: the Docker Engine API over buildah's image storage, for skaffold.

skaffold's local builder asks a Docker API for the ID of every image it built, and tags the
image with it, even when a custom step builds the image (``infra/images/skaffold-build.sh``
builds with buildah and imports into the node). ``podman system service`` serves that API
from the same storage buildah writes (``.cache/containers``, vfs), so skaffold sees exactly
the images buildah made; no Docker daemon runs. ``muster cluster up`` starts it beside the
node (on the host, not in the node's namespaces) and stops it with the node, and prints
what to export for skaffold (:func:`skaffold_env`).
"""

from __future__ import annotations

import http.client
import shutil
import socket
from pathlib import Path

from muster_dev.node import SYSTEM_PATH

SOCKET_NAME = "docker.sock"
"""The API's socket in the node's work folder."""
SKAFFOLD_CACHE_NAME = "skaffold-cache.yaml"
"""skaffold's artifact cache for this node, beside the socket."""
# A Unix socket's path must fit sun_path (108 bytes with the terminating NUL).
_MAX_SOCKET_PATH = 107


class ImageApiError(RuntimeError):
    """The image API cannot be started; the message says why and what to do."""


def find_podman() -> Path | None:
    """Debian's podman, if installed."""
    found = shutil.which("podman", path=SYSTEM_PATH)
    return Path(found) if found else None


def socket_path(workdir: Path) -> Path:
    """Where the API listens for a node whose work folder is ``workdir``."""
    path = workdir.absolute() / SOCKET_NAME
    if len(str(path).encode()) > _MAX_SOCKET_PATH:
        raise ImageApiError(
            f"{path} is too long for a Unix socket ({_MAX_SOCKET_PATH} bytes at most): "
            "give the node a shorter work folder (--workdir)"
        )
    return path


def docker_host(sock: Path) -> str:
    """The ``DOCKER_HOST`` value that points a Docker client (skaffold) at the API."""
    return f"unix://{sock}"


def skaffold_env(sock: Path) -> dict[str, str]:
    """What skaffold needs to build for the node whose image API listens at ``sock``.

    Besides the API, skaffold's artifact cache goes into the node's folder: it remembers
    images as built, and skips them, while only the node they were imported into has them.
    In the node's folder it lives exactly as long as that node (a new node starts with an
    empty folder), so a cached image is always one the node has.
    """
    return {
        "DOCKER_HOST": docker_host(sock),
        "SKAFFOLD_CACHE_FILE": str(sock.parent / SKAFFOLD_CACHE_NAME),
    }


def service_argv(podman: Path, containers_root: Path, sock: Path, tmpdir: Path) -> list[str]:
    """``podman system service`` on buildah's storage, serving until stopped.

    ``--tmpdir`` keeps podman's run-time files in the node's folder instead of
    ``/run/libpod``; no events are written (nothing reads them); buildah's own run root is
    kept, so that both lock the storage the same way. The root is given with symlinks
    resolved: podman records it in its database there and refuses the same storage reached
    through another path (a worktree's ``.cache`` linked to the main checkout's).
    """
    return [
        str(podman),
        "--root", str(containers_root.resolve()),
        "--storage-driver", "vfs",
        "--tmpdir", str(tmpdir),
        "--events-backend", "none",
        "system", "service", "--time=0", docker_host(sock),
    ]  # fmt: skip


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (the Docker API's transport)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def get(sock: Path, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """``GET path`` from the API: the status and the body."""
    connection = _UnixConnection(sock, timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def answers(sock: Path) -> bool:
    """Whether the API answers its ping (``GET /_ping`` is ``OK``)."""
    try:
        status, body = get(sock, "/_ping", timeout=2.0)
    except OSError:
        return False
    return status == 200 and body.strip() == b"OK"
