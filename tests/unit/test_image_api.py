"""The pieces of the local node that serve skaffold, with no root and no node: an image
archive renamed for containerd under several names (one import gives the image every
name, as ``muster cluster import --tag`` does), the build context's content tag that lets
skaffold reuse an image built from the same files (``muster cluster context-tag``), the
image API's command line and socket path, and its ping over a real Unix socket. The
cluster tier runs them for real (``tests/cluster/test_skaffold.py``)."""

from __future__ import annotations

import http.server
import json
import socketserver
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from muster_dev import cluster, imageapi
from muster_dev.images import (
    BUILD_CONTEXT,
    CONTAINERD_NAME,
    BinaryImage,
    ImageError,
    _name_for_containerd,
    binary_image_archive,
    context_tag,
)
from tests.helpers import REPO, copy_from_checkout


def test_one_archive_carries_the_image_under_every_name(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF pretend static binary")
    archive = binary_image_archive(
        BinaryImage("localhost/a:1", binary, ["/tool"]), tmp_path / "a.tar"
    )
    names = ["localhost/muster-gateway:digest", "localhost/muster-gateway:0123abcd"]
    _name_for_containerd(archive, names)

    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        members = tar.getnames()
    entries = index["manifests"]
    assert [e["annotations"][CONTAINERD_NAME] for e in entries] == names
    # One image: the same manifest under both names, and its blobs stored once.
    assert len({e["digest"] for e in entries}) == 1
    assert len(members) == len(set(members))


def test_more_names_are_for_one_image_at_a_time() -> None:
    with pytest.raises(ImageError, match="one image at a time"):
        cluster.import_images(["ctr"], ["a:1", "b:1"], Path("/nowhere"), also=["c:1"])


def test_the_service_serves_buildahs_storage_and_keeps_out_of_run(tmp_path: Path) -> None:
    sock = imageapi.socket_path(tmp_path)
    (tmp_path / "store").mkdir()
    # podman refuses its storage under a second path: the root is the link's target.
    (tmp_path / "linked").symlink_to(tmp_path / "store")
    argv = imageapi.service_argv(
        Path("/usr/bin/podman"), tmp_path / "linked", sock, tmp_path / "tmp"
    )
    assert argv[0] == "/usr/bin/podman"
    options = dict(zip(argv[1:9:2], argv[2:9:2], strict=True))
    assert options == {
        "--root": str((tmp_path / "store").resolve()),
        "--storage-driver": "vfs",
        "--tmpdir": str(tmp_path / "tmp"),
        "--events-backend": "none",
    }
    assert argv[9:] == ["system", "service", "--time=0", f"unix://{sock}"]
    assert imageapi.skaffold_env(sock) == {
        "DOCKER_HOST": f"unix://{tmp_path}/docker.sock",
        # skaffold's memory of built images lives and dies with the node's folder.
        "SKAFFOLD_CACHE_FILE": f"{tmp_path}/skaffold-cache.yaml",
    }


def test_a_socket_path_too_long_for_unix_sockets_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(imageapi.ImageApiError, match="shorter work folder"):
        imageapi.socket_path(deep)


class _Ping(http.server.BaseHTTPRequestHandler):
    body = b"OK"

    def do_GET(self) -> None:
        status = 200 if self.path == "/_ping" else 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def address_string(self) -> str:  # a Unix socket's peer has no host and port
        return "unix"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def ping_server(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "api.sock"
    server = _UnixHTTPServer(str(sock), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sock
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_api_answers_its_ping_over_a_unix_socket(ping_server: Path, tmp_path: Path) -> None:
    assert imageapi.answers(ping_server)
    assert imageapi.get(ping_server, "/elsewhere")[0] == 404
    assert not imageapi.answers(tmp_path / "nobody.sock")


def test_the_content_tag_follows_the_files_an_image_is_built_from(tmp_path: Path) -> None:
    copy = copy_from_checkout(tmp_path / "copy", BUILD_CONTEXT)
    tag = context_tag(REPO)
    assert tag.startswith("ctx-")
    assert len(tag) == len("ctx-") + 12
    # A copy of the same files is the same context, wherever it lies.
    assert context_tag(copy) == tag
    # What the build never reads changes nothing: caches, READMEs, files outside it.
    cache = copy / "services" / "gateway" / "src" / "muster_gateway" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "app.cpython-311.pyc").write_bytes(b"\0compiled")
    (copy / "services" / "gateway" / "README.md").write_text("notes\n")
    (copy / "charts").mkdir()
    (copy / "charts" / "values.yaml").write_text("a: 1\n")
    assert context_tag(copy) == tag
    # One changed byte of a source file, the Dockerfile or a new file is another image.
    source = copy / "services" / "gateway" / "src" / "muster_gateway" / "app.py"
    source.write_text(source.read_text() + "\n")
    edited = context_tag(copy)
    assert edited != tag
    (copy / "infra" / "images" / "extra.sh").write_text("true\n")
    assert context_tag(copy) not in (tag, edited)


def test_the_content_tag_command_prints_it_and_refuses_what_is_no_context(
    tmp_path: Path,
) -> None:
    muster = [sys.executable, "-m", "muster_runtime.cli"]
    printed = subprocess.run([*muster, "cluster", "context-tag", str(REPO)], capture_output=True,
                             text=True, timeout=60, check=True)  # fmt: skip
    assert printed.stdout.strip() == context_tag(REPO)
    refused = subprocess.run([*muster, "cluster", "context-tag", str(tmp_path)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 1
    assert "is not a build context of Muster's images" in refused.stderr, refused.stderr
    with pytest.raises(ImageError, match=r"\.dockerignore is missing"):
        context_tag(tmp_path)
