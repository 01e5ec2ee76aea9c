"""The chart tier's image fixture, and the image-size table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chart.images import (
    COMPONENTS,
    DEV_SERVER,
    BuiltImage,
    Container,
    build,
    buildah,
    context_tag,
)

_BUILT: dict[str, BuiltImage] = {}


def _build(component: str, tag: str) -> BuiltImage:
    """Build, and also name the image by the build context's content, so that the cluster
    tier, which installs the chart from images of that name, finds it built."""
    built = build(component)
    buildah("tag", built.reference, f"localhost/muster-{component}:{tag}")
    return built


@pytest.fixture(scope="session")
def images() -> Iterator[dict[str, BuiltImage]]:
    """Every component's image, built once per session; images the rebuild replaced are
    pruned afterwards (with vfs storage each one is a full copy of its root filesystem)."""
    tag = context_tag()
    for component in COMPONENTS:
        if component not in _BUILT:
            _BUILT[component] = _build(component, tag)
    yield _BUILT
    buildah("rmi", "--prune", check=False)


@pytest.fixture(scope="session")
def dev_server_image() -> BuiltImage:
    """The Temporal dev server's image (the Dockerfile's ``temporal`` target), built once."""
    if DEV_SERVER not in _BUILT:
        _BUILT[DEV_SERVER] = _build(DEV_SERVER, context_tag())
    return _BUILT[DEV_SERVER]


@pytest.fixture(scope="session")
def containers(images: dict[str, BuiltImage]) -> Iterator[dict[str, Container]]:
    """One working container per image, shared by the tests (creating one copies the
    image's root filesystem), removed at the end."""
    made = {component: Container(image.reference) for component, image in images.items()}
    yield made
    for container in made.values():
        container.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _BUILT:
        return
    terminalreporter.section("Muster images (buildah, local bookworm base)")
    for image in _BUILT.values():
        terminalreporter.write_line(
            f"{image.reference:40} {image.size:>10}   built in {image.seconds:5.1f} s"
        )
