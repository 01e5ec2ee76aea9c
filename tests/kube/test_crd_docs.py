"""What ``kubectl explain`` shows for Muster's kinds, read from the real API server's
OpenAPI v3 document: every field of both kinds has a description, every optional spec
field says its default (or what unset means), and the cron dialect and daylight-saving
notes reach ``kubectl explain`` itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

from muster_runtime.polling import wait_until
from tests.kube.operator_support import CRD_DIR
from tests.kube.support import Run

pytestmark = pytest.mark.kube

KINDS = ("Schedule", "ApprovalPolicy")


@pytest.fixture(scope="module")
def openapi(kubectl: Run) -> dict[str, Any]:
    """The API server's OpenAPI v3 document of muster.io/v1alpha1, once it lists both kinds."""
    kubectl("apply", "-f", str(CRD_DIR))

    def published() -> dict[str, Any] | None:
        result = kubectl("get", "--raw", "/openapi/v3/apis/muster.io/v1alpha1", check=False)
        if result.returncode != 0:
            return None
        document: dict[str, Any] = json.loads(result.stdout)
        names = document.get("components", {}).get("schemas", {})
        return document if all(f"io.muster.v1alpha1.{k}" in names for k in KINDS) else None

    return wait_until(published, what="muster.io in the OpenAPI document", timeout=60)


def _resolve(node: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    for ref in [node.get("$ref"), *[n.get("$ref") for n in node.get("allOf", [])]]:
        if ref:
            rest = {k: v for k, v in node.items() if k not in ("$ref", "allOf")}
            return {**schemas[ref.rsplit("/", 1)[-1]], **rest}
    return node


def fields(
    node: dict[str, Any], schemas: dict[str, Any], path: str, *, in_spec: bool
) -> list[tuple[str, dict[str, Any], bool, bool]]:
    """(path, schema, required, in spec) of every property under ``node``."""
    node = _resolve(node, schemas)
    found = []
    required = set(node.get("required", []))
    for name, child in (node.get("properties") or {}).items():
        where = f"{path}.{name}"
        child_in_spec = in_spec or where.endswith(".spec")
        found.append((where, child, name in required, in_spec))
        if name == "metadata":
            continue  # ObjectMeta: Kubernetes' own documentation
        resolved = _resolve(child, schemas)
        found += fields(resolved, schemas, where, in_spec=child_in_spec)
        items = resolved.get("items")
        if isinstance(items, dict):
            found += fields(items, schemas, f"{where}[]", in_spec=child_in_spec)
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_has_a_description_and_its_default(openapi: dict[str, Any], kind: str) -> None:
    schemas = openapi["components"]["schemas"]
    root = schemas[f"io.muster.v1alpha1.{kind}"]
    every = fields(root, schemas, kind.lower(), in_spec=False)
    missing = [path for path, schema, _, _ in every if not schema.get("description", "").strip()]
    assert not missing, f"fields without a description: {missing}"
    no_default = [
        path
        for path, schema, required, in_spec in every
        if in_spec
        and not required
        and "Default:" not in schema["description"]
        and "unset" not in schema["description"].lower()
    ]
    assert not no_default, f"optional spec fields that do not say their default: {no_default}"
    assert len([f for f in every if f[3]]) >= (40 if kind == "Schedule" else 20)


def test_kubectl_explain_tells_the_cron_dialect_and_daylight_saving(
    kubectl: Run, openapi: dict[str, Any]
) -> None:
    spec = " ".join(kubectl("explain", "schedule.spec").stdout.split())
    assert "<no description>" not in spec
    cron = " ".join(kubectl("explain", "schedule.spec.cron").stdout.split())
    assert "Temporal reads a sixth field as a year" in cron
    assert "'0 9 * * 1#2' would run every Monday" in cron
    zone = " ".join(kubectl("explain", "schedule.spec.timeZone").stdout.split())
    assert "a 02:30 job in Europe/Berlin has no run on the last Sunday of March" in zone
    assert "Default: 'UTC'." in zone
    skip = " ".join(kubectl("explain", "schedule.spec.skip").stdout.split())
    assert "skips 00:00:00 on Saturdays and nothing else" in skip
    policy = " ".join(kubectl("explain", "approvalpolicy.spec.reminders.cron").stdout.split())
    assert "Temporal" in policy
    recursive = kubectl("explain", "schedules", "--recursive").stdout
    assert "<no description>" not in recursive
