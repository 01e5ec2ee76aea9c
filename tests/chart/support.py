"""Helpers of the chart tier: the chart, its scenarios, rendering and schema lookups."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.kube.support import Run

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "muster"
SCENARIOS = sorted(path.name.removesuffix("-values.yaml") for path in (CHART / "ci").glob("*.yaml"))
BIN = Path(os.environ.get("MUSTER_BIN_DIR") or ROOT / "bin")
SCHEMAS = BIN / "schemas"

Manifest = dict[str, Any]


def values_file(scenario: str) -> Path:
    return CHART / "ci" / f"{scenario}-values.yaml"


def render(helm: Run, scenario: str, *extra: str, release: str = "muster") -> list[Manifest]:
    """``helm template`` of one scenario: every rendered object (hooks included)."""
    result = helm(
        "template", release, str(CHART),
        "--namespace", "muster-system",
        "--values", str(values_file(scenario)),
        *extra,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def containers(manifest: Manifest) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(pod spec, container) of every container and init container of a workload or Pod."""
    spec = manifest.get("spec", {})
    pod = spec if manifest["kind"] == "Pod" else spec.get("template", {}).get("spec")
    if not pod:
        return
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        yield pod, container


def _python_patterns(node: Any) -> Any:
    """The schema with Go regular expressions made Python ones (``^(?i)x`` -> ``(?i)^x``),
    so jsonschema can apply a CRD's patterns as the API server does."""
    if isinstance(node, dict):
        out = {k: _python_patterns(v) for k, v in node.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str):
            try:
                re.compile(pattern)
            except re.error:
                flags = "".join(re.findall(r"\(\?([a-z]+)\)", pattern))
                out["pattern"] = f"(?{flags})" + re.sub(r"\(\?[a-z]+\)", "", pattern)
                re.compile(out["pattern"])
        return out
    if isinstance(node, list):
        return [_python_patterns(item) for item in node]
    return node


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of Muster's CRDs, the monitoring CRDs and
    cert-manager's."""
    files = [*(CHART / "files" / "crds").glob("*.yaml")]
    files += [*SCHEMAS.glob("monitoring-crds-*/*.yaml")]
    files += [*SCHEMAS.glob("cert-manager-crds-*/*.yaml")]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in files:
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _python_patterns(version["schema"]["openAPIV3Schema"])
            found[(f"{group}/{version['name']}", kind)] = schema
    return found


def values_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema
