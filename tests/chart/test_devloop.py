"""The dev loop's files and every Dockerfile, checked by the tools that define them:
``skaffold.yaml`` (both profiles: ``kind`` with Docker, ``local`` with buildah on the local
node) against skaffold's published JSON schema (fetched from the skaffold module by ``make
chart-tools``) and against the chart it deploys and the images it builds, the kind cluster
config against kind's own v1alpha4 types, and the one Dockerfile by hadolint and by Muster's
image rules. ``tests/cluster/test_skaffold.py`` runs the local profile for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.images import COMPONENTS, DOCKERFILE
from tests.chart.support import BIN, CHART, ROOT, SCHEMAS, values_schema

pytestmark = pytest.mark.chart

SKAFFOLD_SCHEMA = "skaffold-v4beta14.json"


def skaffold_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    return config


def skaffold_validator() -> jsonschema.protocols.Validator:
    path = SCHEMAS / SKAFFOLD_SCHEMA
    assert path.exists(), f"{path} is missing: run `make chart-tools`"
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def test_skaffold_yaml_matches_the_published_schema() -> None:
    config = skaffold_config()
    assert config["apiVersion"] == "skaffold/v4beta14", "the schema version fetched"
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in skaffold_validator().iter_errors(config)
    ]
    assert not errors, "\n".join(errors)


def test_the_schema_check_is_not_vacuous() -> None:
    config = skaffold_config()
    config["build"]["artifacts"][0]["dockerr"] = {"dockerfile": "x"}
    assert list(skaffold_validator().iter_errors(config)), "a misspelt builder passed"
    config = skaffold_config()
    config["deploy"]["helm"]["releases"][0]["wait"] = "yes"
    assert list(skaffold_validator().iter_errors(config)), "a string for a boolean passed"
    config = skaffold_config()
    local = profile(config, "local")
    local["build"]["artifacts"][0]["custom"]["dependencies"]["path"] = ["x"]
    assert list(skaffold_validator().iter_errors(config)), "a misspelt field in a profile passed"


def profile(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in config["profiles"] if p["name"] == name)
    return found


def test_skaffold_builds_every_image_and_deploys_them_with_the_chart() -> None:
    config = skaffold_config()
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {f"localhost/muster-{c}" for c in COMPONENTS}
    for component, spec in COMPONENTS.items():
        artifact = artifacts[f"localhost/muster-{component}"]
        assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]) == DOCKERFILE
        # The same build arguments as `make images` and the image tests pass.
        assert artifact["docker"]["buildArgs"] == spec.build_args(), component
    (release,) = config["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    schema = values_schema()
    for key, template in release["setValueTemplates"].items():
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
        assert node["type"] == "string", key
        image = "localhost_muster_" + key.split(".")[0]
        assert re.fullmatch(r"\{\{\.IMAGE_(REPO|TAG)_" + image + r"\}\}", template), template
    # Every component's repository and tag are set from the build.
    assert {k.split(".")[0] for k in release["setValueTemplates"]} == set(COMPONENTS)
    kind = next(p for p in config["profiles"] if p["name"] == "kind")
    values_files = next(p["value"] for p in kind["patches"] if p["path"].endswith("valuesFiles"))
    assert all((ROOT / f).exists() for f in values_files)
    forwards = [config["portForward"][0], *(p["value"] for p in kind["patches"]
                                            if p["path"] == "/portForward/-")]  # fmt: skip
    assert {(f["resourceName"], f["localPort"]) for f in forwards} == {
        ("muster-gateway", 8080), ("muster-temporal", 8233)}  # fmt: skip


def kind_check(*files: Path) -> subprocess.CompletedProcess[str]:
    binary = BIN / "kind-config-check"
    assert binary.exists(), f"{binary} is missing: run `make chart-tools`"
    return subprocess.run([str(binary), *map(str, files)], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip


def test_kind_config_matches_kinds_types(tmp_path: Path) -> None:
    config = ROOT / "infra" / "kind" / "cluster.yaml"
    result = kind_check(config)
    assert result.returncode == 0, result.stderr
    assert "valid kind v1alpha4 Cluster" in result.stdout
    document = yaml.safe_load(config.read_text())
    document["nodes"][0]["rol"] = "worker"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    rejected = kind_check(bad)
    assert rejected.returncode == 1
    assert 'unknown field "nodes[0].rol"' in rejected.stderr or '"rol"' in rejected.stderr


def test_dockerfile_passes_hadolint() -> None:
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    result = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def test_there_is_one_dockerfile() -> None:
    found = sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("Dockerfile*")
        if not {".venv", ".cache", "bin", ".git"} & set(p.relative_to(ROOT).parts)
    )
    assert found == ["infra/images/Dockerfile"]


def test_dockerfile_follows_musters_image_rules() -> None:
    steps = instructions(DOCKERFILE)
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    assert all(f.startswith("${BASE_IMAGE}") for f in froms), "one base, chosen by BASE_IMAGE"
    (base,) = [
        rest for keyword, rest in steps if keyword == "ARG" and rest.startswith("BASE_IMAGE=")
    ]
    assert re.fullmatch(r"BASE_IMAGE=docker\.io/library/python:3\.11-slim-bookworm", base)
    runs = " ".join(rest for keyword, rest in steps if keyword == "RUN")
    assert 'infra/images/install.sh "${PACKAGE}" "${MODULE}"' in runs, (
        "installs through the locked install script"
    )
    assert "uv sync --locked" in (ROOT / "infra" / "images" / "install.sh").read_text()
    runtime = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage sets a user"
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", users[-1]), (
        f"USER {users[-1]} is not numeric non-root"
    )
    entrypoint = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert entrypoint, "an ENTRYPOINT"
    assert isinstance(json.loads(entrypoint[-1]), list), "exec form"
    assert not [rest for keyword, rest in runtime if keyword == "RUN"], (
        "no RUN in the runtime stage"
    )
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "no .pyc writes on a read-only root"
    assert "HOME=/tmp" in env


# What every image is built from besides its packages (.dockerignore admits these).
SHARED_INPUTS = {"pyproject.toml", "uv.lock", "devstack/pyproject.toml", "infra/images",
                 ".dockerignore"}  # fmt: skip


def workspace_closure(package: str) -> set[str]:
    """The folders of ``package`` and of every workspace package it needs, from uv.lock."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"] if "editable" in p.get("source", {})}
    folders: set[str] = set()
    todo = [package]
    while todo:
        entry = packages[todo.pop()]
        if entry["source"]["editable"] not in folders:
            folders.add(entry["source"]["editable"])
            todo += [d["name"] for d in entry.get("dependencies", []) if d["name"] in packages]
    return folders


def test_the_local_profile_builds_every_image_with_buildah_from_its_own_inputs() -> None:
    local = profile(skaffold_config(), "local")
    assert local["build"]["local"]["push"] is False, "the node's images are imported, never pushed"
    assert "inputDigest" in local["build"]["tagPolicy"], "unchanged inputs, unchanged tag"
    artifacts = {a["image"]: a for a in local["build"]["artifacts"]}
    assert set(artifacts) == {f"localhost/muster-{c}" for c in (*COMPONENTS, "temporal")}
    script = ROOT / "infra" / "images" / "skaffold-build.sh"
    assert os.access(script, os.X_OK), f"{script} is not executable"
    for image, artifact in artifacts.items():
        component = image.removeprefix("localhost/muster-")
        assert artifact["context"] == "."
        assert artifact["custom"]["buildCommand"] == f"infra/images/skaffold-build.sh {component}"
        paths = set(artifact["custom"]["dependencies"]["paths"])
        if component == "temporal":
            # uv checks the lock against every workspace member's pyproject.
            members = {str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/pyproject.toml")}
            globbed = {str(p.relative_to(ROOT)) for pattern in paths for p in ROOT.glob(pattern)}
            assert members | {"operator/pyproject.toml", "uv.lock"} <= globbed
        else:
            # A change to a package rebuilds exactly the images that install it.
            assert paths == workspace_closure(COMPONENTS[component].package) | SHARED_INPUTS, image


def test_the_local_profile_deploys_what_it_built_with_the_local_values() -> None:
    local = profile(skaffold_config(), "local")
    (release,) = local["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    # The kind demo's values, with images that are imported and never pulled.
    demo_values = "charts/muster/ci/kind-values.yaml"
    assert (ROOT / demo_values).exists()
    # MUSTER_VALUES adds a file of one's own; without it the demo values count twice.
    assert release["valuesFiles"] == [
        demo_values,
        f'{{{{env "MUSTER_VALUES" | default "{demo_values}"}}}}',
    ]
    assert release["setValues"] == {"image.pullPolicy": "Never"}
    templates = release["setValueTemplates"]
    for component in COMPONENTS:
        image = f"localhost_muster_{component}"
        assert templates[f"{component}.image.repository"] == f"{{{{.IMAGE_REPO_{image}}}}}"
        assert templates[f"{component}.image.tag"] == f"{{{{.IMAGE_TAG_{image}}}}}"
    assert templates["temporal.devServer.image"].split() == [
        "{{.IMAGE_REPO_localhost_muster_temporal}}:{{.IMAGE_TAG_localhost_muster_temporal}}"
    ]
    schema = values_schema()
    for key in [*templates, *release.get("setValues", {})]:
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
    forwards = {f["resourceName"]: f for f in local["portForward"]}
    assert set(forwards) == {'{{env "MUSTER_RELEASE" | default "muster"}}-gateway',
                             '{{env "MUSTER_RELEASE" | default "muster"}}-temporal'}  # fmt: skip
    # The forwards follow the release into MUSTER_NAMESPACE: skaffold fills in no namespace
    # of its own when it tracks more than one, and skips such a forward.
    namespace = '{{env "MUSTER_NAMESPACE" | default "muster-system"}}'
    assert release["namespace"] == namespace
    assert all(f["namespace"] == namespace for f in forwards.values())
