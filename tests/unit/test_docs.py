"""The documentation holds together: the README fits on a screen and opens with the two
commands; every relative link in the Markdown files points to a file that exists (and, for
a link into a Markdown file with an anchor, to a heading that exists); no tracked file
speaks of the machine the project was built on or points outside the repository; and
docs/architecture.md names every workspace package."""

from __future__ import annotations

import re
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 150

# Phrases about the environment the project happened to be built in, or pointers outside
# the repository. Documentation and comments state properties ("where no container engine
# runs"), never "here" or "this machine". Matched case-insensitively.
FORBIDDEN_PHRASES = (
    "../shared",
    "this machine",
    "these machines",
    "the machine's",
    "development machine",
    "build machine",
    "2-core machine",
    "shared 2-core",
    "no docker here",
    "docker runs here",
    "made here with",
    "builds here",
    "not reachable on these",
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@cache
def tracked_files() -> tuple[Path, ...]:
    """Every file of the repository: tracked, or new and not ignored (so a page is checked
    before it is committed), and present in the work tree."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"cannot list the repository's files with `git ls-files` in {ROOT}: {exc}")
    paths = (ROOT / name for name in listed.decode().split("\0") if name)
    return tuple(p for p in paths if p.is_file())


def markdown_files() -> list[Path]:
    return sorted(p for p in tracked_files() if p.suffix == ".md")


def prose(markdown: str) -> str:
    """The Markdown without code blocks and code spans, where link syntax means nothing."""
    return _INLINE_CODE.sub("", _FENCE.sub("", markdown))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """Every anchor GitHub makes for the headings of a Markdown file (duplicates numbered)."""
    seen: dict[str, int] = {}
    found = set()
    for match in _HEADING.finditer(_FENCE.sub("", path.read_text())):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def test_readme_fits_on_a_screen() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, at most {README_MAX_LINES} allowed: move the "
        "details into docs/ and link them"
    )


def test_readme_starts_with_the_two_commands() -> None:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[0].startswith("# "), "README.md must open with its title"
    assert lines[1].startswith("```"), "the first thing after the title must be a code block"
    assert lines[2].split()[:2] == ["make", "up"], f"first command is {lines[2]!r}"
    assert lines[3].split()[:2] == ["make", "test"], f"second command is {lines[3]!r}"
    assert lines[4].startswith("```"), "the opening code block holds just the two commands"


def test_markdown_files_are_found() -> None:
    # The link check below is only as good as its list of files.
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/architecture.md", "docs/configuration.md"} <= names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for match in _LINK.finditer(prose(path.read_text())):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: {linked} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading in {linked.name} has the anchor #{anchor}")
    assert not broken, f"{path.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


def test_link_check_is_not_vacuous(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A page\n\n## Two words\n\n[ok](page.md#two-words) [gone](missing.md) "
        "[bad anchor](page.md#nowhere) `[code](missing.md)` [web](https://example.com)\n"
        "```\n[fenced](missing.md)\n```\n"
    )
    targets = [m.group(1) for m in _LINK.finditer(prose(page.read_text()))]
    assert targets == ["page.md#two-words", "missing.md", "page.md#nowhere", "https://example.com"]
    assert anchors(page) == {"a-page", "two-words"}
    assert slug("The local stack (`make up`)") == "the-local-stack-make-up"
    assert slug("`operator`: How it works.") == "operator-how-it-works"


def test_no_file_speaks_of_the_build_machine_or_points_outside() -> None:
    this_file = Path(__file__).resolve()
    found = []
    for path in tracked_files():
        if path.resolve() == this_file:
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        try:
            text = data.decode().lower()
        except UnicodeDecodeError:
            continue
        for phrase in FORBIDDEN_PHRASES:
            if phrase in text:
                line = text[: text.index(phrase)].count("\n") + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {phrase!r}")
    assert not found, (
        "these files speak of the machine the project was built on, or point outside the "
        "repository; state a property instead (e.g. 'where no container engine runs'):\n"
        + "\n".join(found)
    )


def workspace_packages() -> dict[str, list[str]]:
    """Distribution name -> its import packages, for every member of the uv workspace."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages: dict[str, list[str]] = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for member in sorted(ROOT.glob(pattern)):
            pyproject = member / "pyproject.toml"
            if not pyproject.is_file():
                continue
            name = tomllib.loads(pyproject.read_text())["project"]["name"]
            packages[name] = sorted(
                p.name for p in (member / "src").iterdir() if (p / "__init__.py").is_file()
            )
    return packages


def test_workspace_is_read() -> None:
    packages = workspace_packages()
    assert packages["muster-dev"] == ["muster_dev"]
    assert packages["muster-api"] == ["muster_api"]
    assert len(packages) >= 9


def test_architecture_names_every_workspace_package() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [
        name
        for distribution, modules in workspace_packages().items()
        for name in (distribution, *modules)
        if f"`{name}`" not in text
    ]
    assert not missing, (
        f"docs/architecture.md does not name {missing}: add each package to its table, with "
        "what it may import and which image ships it"
    )
