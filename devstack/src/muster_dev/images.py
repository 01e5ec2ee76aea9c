"""Container images for the local node, with no registry: written here or taken from buildah.

The node's own images (the pods' sandbox, CoreDNS, the NetworkPolicy agent) are one static
binary each, so :func:`binary_image_archive` writes them as OCI image archives directly.
Images Muster builds with buildah (``make image-base``, ``make images``) are exported with
``buildah push ... oci-archive:``. Either kind is loaded with ``ctr images import`` into
containerd's ``k8s.io`` namespace, where the kubelet finds them, so pods use them with
``imagePullPolicy: Never`` or ``IfNotPresent``.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
# containerd names an imported image after this annotation of the archive's index.
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
CRI_NAMESPACE = "k8s.io"

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


class ImageError(RuntimeError):
    """An image could not be written, exported or imported; the message says why."""


@dataclass(frozen=True)
class BinaryImage:
    """An image of one static binary at ``/<name>``."""

    reference: str
    """Full name with tag, e.g. ``localhost/muster-node/coredns:v1.15.0``."""
    binary: Path
    entrypoint: Sequence[str]
    user: str | None = None


def oci_architecture() -> str:
    """The host's architecture as OCI names it."""
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


class _Blobs:
    """The ``blobs/sha256`` of an archive being written, each added once."""

    def __init__(self, archive: tarfile.TarFile) -> None:
        self.archive = archive
        self.seen: set[str] = set()

    def add_bytes(self, data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self.seen:
            self.seen.add(digest)
            _add_file(self.archive, f"blobs/sha256/{digest}", io.BytesIO(data), len(data))
        return f"sha256:{digest}", len(data)

    def add_file(self, path: Path) -> tuple[str, int]:
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
        digest, size = sha.hexdigest(), path.stat().st_size
        if digest not in self.seen:
            self.seen.add(digest)
            with path.open("rb") as handle:
                _add_file(self.archive, f"blobs/sha256/{digest}", handle, size)
        return f"sha256:{digest}", size


def _add_file(
    archive: tarfile.TarFile, name: str, data: IO[bytes], size: int, mode: int = 0o644
) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0  # reproducible: the same binary gives the same digests
    archive.addfile(info, data)


def binary_image_archive(image: BinaryImage, dest: Path) -> Path:
    """Write ``image`` as an OCI image archive (a tar of an OCI layout) at ``dest``."""
    if not image.binary.is_file():
        raise ImageError(f"{image.binary} not found: run `make node-tools`")
    dest.parent.mkdir(parents=True, exist_ok=True)
    layer = dest.with_suffix(".layer.tar")
    name = image.binary.name
    try:
        with (
            tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar,
            image.binary.open("rb") as f,
        ):
            _add_file(tar, name, f, image.binary.stat().st_size, mode=0o755)
        with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as archive:
            blobs = _Blobs(archive)
            layer_digest, layer_size = blobs.add_file(layer)
            config: dict[str, Any] = {
                "architecture": oci_architecture(),
                "os": "linux",
                "config": {"Entrypoint": list(image.entrypoint), "WorkingDir": "/"},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                "history": [{"created_by": f"muster: /{name} from {image.binary.resolve().name}"}],
            }
            if image.user:
                config["config"]["User"] = image.user
            config_digest, config_size = blobs.add_bytes(_json(config))
            manifest = {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
                "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer_size}],
            }
            manifest_digest, manifest_size = blobs.add_bytes(_json(manifest))
            index = {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": MANIFEST_TYPE,
                        "digest": manifest_digest,
                        "size": manifest_size,
                        "annotations": {
                            CONTAINERD_NAME: image.reference,
                            OCI_REF_NAME: image.reference.rpartition(":")[2],
                        },
                    }
                ],
            }
            layout = _json({"imageLayoutVersion": "1.0.0"})
            _add_file(archive, "oci-layout", io.BytesIO(layout), len(layout))
            data = _json(index)
            _add_file(archive, "index.json", io.BytesIO(data), len(data))
    finally:
        layer.unlink(missing_ok=True)
    return dest


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def buildah_archive(
    reference: str, dest: Path, containers_root: Path, also: Sequence[str] = ()
) -> Path:
    """Export ``reference`` from buildah's vfs storage at ``containers_root`` to an OCI
    archive at ``dest``, named so that ``ctr images import`` keeps the name (and gives the
    image the names in ``also`` too)."""
    buildah = shutil.which("buildah")
    if buildah is None:
        raise ImageError("buildah not found: run `make image-tools`")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    result = subprocess.run(
        [
            buildah,
            "--root",
            str(containers_root),
            "--storage-driver",
            "vfs",
            "push",
            "--quiet",
            reference,
            f"oci-archive:{dest}:{reference}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ImageError(
            f"could not export {reference} from {containers_root}: {result.stderr.strip()} "
            "(build it first, e.g. `make image-base`)"
        )
    _name_for_containerd(dest, [reference, *(n for n in also if n != reference)])
    return dest


def _name_for_containerd(archive: Path, names: Sequence[str]) -> None:
    """Add containerd's name annotation to the archive's index, one entry per name.

    An OCI index names an image by tag only (``org.opencontainers.image.ref.name``);
    ``ctr images import`` wants the full name in ``io.containerd.image.name``, and makes
    one image of each entry of the index, so listing the same manifest under several names
    imports it once with all of them.
    """
    rewritten = archive.with_suffix(".named.tar")
    with (
        tarfile.open(archive) as source,
        tarfile.open(rewritten, "w", format=tarfile.PAX_FORMAT) as out,
    ):
        for member in source:
            data = source.extractfile(member) if member.isfile() else None
            if member.name in ("index.json", "./index.json") and data is not None:
                index = json.loads(data.read())
                named = []
                for manifest in index.get("manifests", []):
                    for name in names:
                        annotations = {**manifest.get("annotations", {}), CONTAINERD_NAME: name}
                        named.append({**manifest, "annotations": annotations})
                index["manifests"] = named
                body = _json(index)
                member.size = len(body)
                out.addfile(member, io.BytesIO(body))
            else:
                out.addfile(member, data)
    rewritten.replace(archive)


def import_archive(ctr: Sequence[str], archive: Path) -> list[str]:
    """Import an OCI archive with ``ctr`` (the command prefix, namespace and address
    included) and return the names of the images it brought in."""
    with archive.open("rb") as handle:
        result = subprocess.run(
            [*ctr, "images", "import", "-"],
            stdin=handle,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise ImageError(f"ctr could not import {archive.name}: {result.stderr.strip()}")
    names = []
    for line in result.stdout.splitlines():
        # "unpacking localhost/x:tag (sha256:...)...done"
        if line.startswith("unpacking "):
            names.append(line.split()[1])
    return names
