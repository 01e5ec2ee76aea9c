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
import re
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

# What an image build reads (the files .dockerignore admits) and what it ignores in them.
BUILD_CONTEXT = (".dockerignore", "pyproject.toml", "uv.lock", "services", "operator",
                 "infra/images", "devstack/pyproject.toml")  # fmt: skip
_NOT_BUILT_FROM = re.compile(r"(^|/)(__pycache__|[^/]*\.py[cod]|[^/]*\.egg-info|README\.md)(/|$)")
CONTEXT_TAG_PREFIX = "ctx-"

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


def context_tag(root: Path) -> str:
    """A tag naming the content of the image build context at ``root`` (the repository, or
    a copy of its build inputs): images built from exactly these files share it, whoever
    built them, so a build of unchanged sources can reuse the image instead. Every image is
    built from the one Dockerfile with its component's row of ``infra/images/services.tsv``,
    both part of the context; the base image is not, so reuse also compares the base."""
    digest = hashlib.sha256()
    for entry in BUILD_CONTEXT:
        top = root / entry
        if not top.exists():
            raise ImageError(f"{top} is missing: {root} is not a build context of Muster's images")
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            relative = path.relative_to(root).as_posix()
            if _NOT_BUILT_FROM.search(relative):
                continue
            digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return CONTEXT_TAG_PREFIX + digest.hexdigest()[:12]


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


def buildah_image_id(reference: str, containers_root: Path) -> str:
    """The ID of ``reference`` in buildah's storage (``sha256:`` and the digest of its
    config, which an export keeps: containerd knows the image by the same config)."""
    buildah = shutil.which("buildah")
    if buildah is None:
        raise ImageError("buildah not found: run `make image-tools`")
    result = subprocess.run(
        [buildah, "--root", str(containers_root), "--storage-driver", "vfs", "inspect",
         "--type", "image", "--format", "{{.FromImageID}}", reference],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ImageError(
            f"{reference} is not in buildah's storage at {containers_root}: "
            f"{result.stderr.strip()} (build it first, e.g. `make image-base`)"
        )
    image_id = result.stdout.strip()
    return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"


def node_images_by_config(ctr: Sequence[str]) -> dict[str, list[str]]:
    """The images containerd holds, by the digest of their config: the names each image
    has. An image whose manifest cannot be read (an index of several platforms, content
    the node no longer has) is left out: it is imported again rather than trusted."""
    listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=False)
    if listed.returncode != 0:
        raise ImageError(f"ctr could not list the node's images: {listed.stderr.strip()}")
    by_manifest: dict[str, list[str]] = {}
    for line in listed.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[2].startswith("sha256:"):
            by_manifest.setdefault(fields[2], []).append(fields[0])
    by_config: dict[str, list[str]] = {}
    for digest, names in by_manifest.items():
        manifest = subprocess.run(
            [*ctr, "content", "get", digest], capture_output=True, check=False
        )
        if manifest.returncode != 0:
            continue
        try:
            config = json.loads(manifest.stdout)["config"]["digest"]
        except (ValueError, KeyError, TypeError):
            continue
        by_config.setdefault(str(config), []).extend(names)
    return by_config


def name_in_node(ctr: Sequence[str], source: str, names: Sequence[str]) -> list[str]:
    """Give the node's image ``source`` the further ``names`` (moving a name that another
    image had), without importing anything; the names it has now."""
    for name in names:
        if name == source:
            continue
        result = subprocess.run(
            [*ctr, "images", "tag", "--force", source, name],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ImageError(f"ctr could not name {source} {name}: {result.stderr.strip()}")
    return list(names)
