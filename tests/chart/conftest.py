"""The chart tier's image fixture, and the image-size table printed at the end of a run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chart.images import (
    COMPONENTS,
    DEV_SERVER,
    BuiltImage,
    Container,
    context_tag,
    ensure_built,
)

_BUILT: dict[str, BuiltImage] = {}


@pytest.fixture(scope="session")
def images() -> dict[str, BuiltImage]:
    """Every component's image, named by the build context's content (``context_tag``) so
    that the cluster tier, which installs the chart from images of that name, finds them:
    built once per content, by whichever tier needs it first."""
    tag = context_tag()
    for component in COMPONENTS:
        if component not in _BUILT:
            _BUILT[component] = ensure_built(component, tag)
    return _BUILT


@pytest.fixture(scope="session")
def dev_server_image() -> BuiltImage:
    """The Temporal dev server's image (the Dockerfile's ``temporal`` target), built once."""
    if DEV_SERVER not in _BUILT:
        _BUILT[DEV_SERVER] = ensure_built(DEV_SERVER, context_tag())
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
            f"{image.reference:52} {image.size:>10}   "
            + (
                "reused (built earlier from the same files)"
                if image.reused
                else f"built in {image.seconds:5.1f} s"
            )
        )
