"""Custom resources on the real API server: a CRD with a structural schema, defaults and a
CEL rule becomes Established; a valid object is accepted and defaulted; objects that break
the schema or the CEL rule are rejected with the API server's own message; the status
subresource updates status only; a finalizer blocks deletion until it is removed."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from muster_runtime.polling import wait_until
from tests.kube.support import Run, status_message

pytestmark = pytest.mark.kube

VERSION = "v1alpha1"
PLURAL = "widgets"
FINALIZER = "kubetest.muster.io/hold"
CEL_MESSAGE = "minReplicas must not exceed replicas"


def widget_crd(group: str) -> dict[str, Any]:
    """A namespaced CRD in the shape Muster's own CRDs take (structural, CEL, status)."""
    spec_schema = {
        "type": "object",
        "required": ["replicas"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 0, "maximum": 10},
            "minReplicas": {"type": "integer", "minimum": 0},
            "mode": {"type": "string", "enum": ["Fast", "Safe"], "default": "Safe"},
        },
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.minReplicas) || self.minReplicas <= self.replicas",
                "message": CEL_MESSAGE,
            }
        ],
    }
    status_schema = {
        "type": "object",
        "properties": {
            "phase": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64"},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": "widget",
                "kind": "Widget",
                "shortNames": ["wdg"],
                "categories": ["muster"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec_schema, "status": status_schema},
                        }
                    },
                }
            ],
        },
    }


def conditions(crd: Any) -> dict[str, str]:
    """``{type: status}`` of a CRD's status conditions."""
    return {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}


class Widgets:
    """The Widget API of one test: create, read, patch and delete in its namespace."""

    def __init__(self, api: client.CustomObjectsApi, group: str, namespace: str) -> None:
        self.api, self.group, self.namespace = api, group, namespace

    def body(self, name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": f"{self.group}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.api.create_namespaced_custom_object(
                self.group, VERSION, self.namespace, PLURAL, body
            ),
        )

    def get(self, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.api.get_namespaced_custom_object(
                self.group, VERSION, self.namespace, PLURAL, name
            ),
        )

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.api.patch_namespaced_custom_object(
                self.group, VERSION, self.namespace, PLURAL, name, patch
            ),
        )

    def patch_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.api.patch_namespaced_custom_object_status(
                self.group, VERSION, self.namespace, PLURAL, name, patch
            ),
        )

    def delete(self, name: str) -> None:
        self.api.delete_namespaced_custom_object(self.group, VERSION, self.namespace, PLURAL, name)

    def gone(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False


@pytest.fixture(scope="module")
def widget_group(api_client: client.ApiClient, kubectl: Run) -> Iterator[str]:
    """Install the Widget CRD (a unique group, so an existing cluster is not disturbed)."""
    group = f"k{uuid.uuid4().hex[:8]}.kubetest.muster.io"
    ext = client.ApiextensionsV1Api(api_client)
    # kubectl apply, as the chart's CRDs will be installed (JSON is YAML).
    kubectl("apply", "-f", "-", input=json.dumps(widget_crd(group)))
    name = f"{PLURAL}.{group}"

    def established() -> bool:
        state = conditions(ext.read_custom_resource_definition(name))
        return state.get("Established") == "True" and state.get("NamesAccepted") == "True"

    wait_until(established, what=f"CRD {name} to be Established", timeout=30)
    # Established means the endpoint is being served; a list proves this client sees it.
    custom = client.CustomObjectsApi(api_client)
    wait_until(
        lambda: custom.list_cluster_custom_object(group, VERSION, PLURAL) is not None,
        what=f"{PLURAL}.{group} to be listable",
        timeout=30,
        ignore=(ApiException,),
    )
    yield group
    ext.delete_custom_resource_definition(name)


@pytest.fixture
def widgets(api_client: client.ApiClient, widget_group: str, namespace: str) -> Widgets:
    """The Widget API in this test's namespace."""
    return Widgets(client.CustomObjectsApi(api_client), widget_group, namespace)


def test_crd_is_structural_and_established(api_client: client.ApiClient, widget_group: str) -> None:
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(
        f"{PLURAL}.{widget_group}"
    )
    state = conditions(crd)
    assert state.get("Established") == "True"
    # The API server flags schemas it cannot prune or default as NonStructuralSchema.
    assert "NonStructuralSchema" not in state


def test_valid_widget_is_accepted_and_defaulted(widgets: Widgets) -> None:
    created = widgets.create(widgets.body("ok", replicas=3, minReplicas=1))
    assert created["spec"] == {"replicas": 3, "minReplicas": 1, "mode": "Safe"}
    assert widgets.get("ok")["metadata"]["generation"] == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"replicas": 11}, "should be less than or equal to 10", id="maximum"),
        pytest.param({"replicas": "three"}, "must be of type integer", id="type"),
        pytest.param({"replicas": 1, "mode": "Reckless"}, "Unsupported value", id="enum"),
        pytest.param({}, "spec.replicas: Required value", id="required"),
    ],
)
def test_schema_violation_is_rejected(widgets: Widgets, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiException) as caught:
        widgets.create(widgets.body("bad", **spec))
    assert caught.value.status == 422
    assert message in status_message(caught.value)


def test_cel_rule_violation_is_rejected(widgets: Widgets) -> None:
    with pytest.raises(ApiException) as caught:
        widgets.create(widgets.body("bad", replicas=2, minReplicas=5))
    assert caught.value.status == 422
    assert CEL_MESSAGE in status_message(caught.value)
    # The same rule also guards updates.
    widgets.create(widgets.body("ok", replicas=2, minReplicas=1))
    with pytest.raises(ApiException) as caught:
        widgets.patch("ok", {"spec": {"minReplicas": 3}})
    assert caught.value.status == 422
    assert CEL_MESSAGE in status_message(caught.value)


def test_status_subresource(widgets: Widgets) -> None:
    widgets.create(widgets.body("w", replicas=1))

    patched = widgets.patch_status("w", {"status": {"phase": "Ready"}, "spec": {"replicas": 9}})
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["replicas"] == 1, "spec changes through /status must be ignored"
    assert patched["metadata"]["generation"] == 1, "a status write must not bump generation"

    patched = widgets.patch("w", {"status": {"phase": "Hacked"}, "spec": {"replicas": 2}})
    assert patched["status"] == {"phase": "Ready"}, "status changes through the main resource"
    assert patched["spec"]["replicas"] == 2
    assert patched["metadata"]["generation"] == 2


def test_finalizer_blocks_deletion_until_removed(widgets: Widgets) -> None:
    body = widgets.body("held", replicas=1)
    body["metadata"]["finalizers"] = [FINALIZER]
    widgets.create(body)

    widgets.delete("held")
    held = widgets.get("held")
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == [FINALIZER]

    widgets.patch("held", {"metadata": {"finalizers": None}})
    wait_until(lambda: widgets.gone("held"), what="the widget to be deleted", timeout=30)
