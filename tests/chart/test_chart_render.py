"""The chart as rendered: ``helm lint`` passes every ``ci/*-values.yaml`` scenario; every
object ``helm template`` renders is valid (built-in kinds against Kubernetes' own schemas
with kubernetes-validate, custom resources against their CRDs); every container runs under
the restricted posture; the operator's RBAC is exactly what it uses; values are fully
commented and the schema rejects bad ones with a readable message."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from muster_api import v1alpha1
from muster_api.search_attributes import cli_types
from muster_operator.handlers import POLICY_WEBHOOK, SCHEDULE_WEBHOOK, WORKER_WEBHOOK
from tests.chart.support import (
    CHART,
    ROOT,
    SCENARIOS,
    Manifest,
    containers,
    crd_schemas,
    render,
    values_schema,
)
from tests.kube.support import Run

pytestmark = pytest.mark.chart

KUBE_VERSION = "1.37.0"
WORKLOAD_KINDS = {"Deployment", "Pod"}


@pytest.fixture(scope="module")
def rendered(helm: Run) -> dict[str, list[Manifest]]:
    return {scenario: render(helm, scenario) for scenario in SCENARIOS}


def test_scenarios_exist() -> None:
    assert set(SCENARIOS) >= {"minimal", "production", "kind"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(helm: Run, scenario: str) -> None:
    result = helm(
        "lint", str(CHART), "--strict", "--values", str(CHART / "ci" / f"{scenario}-values.yaml")
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def _validate(manifest: Manifest) -> None:
    key = (manifest["apiVersion"], manifest["kind"])
    schema = crd_schemas().get(key)
    if schema is not None:
        jsonschema.Draft7Validator(schema["properties"]["spec"]).validate(manifest.get("spec", {}))
        return
    kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_rendered_object_is_valid(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    manifests = rendered[scenario]
    assert manifests, "nothing rendered"
    problems = []
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            _validate(manifest)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            problems.append(f"{name}: {getattr(exc, 'message', exc)}")
    assert not problems, "\n".join(problems)


def test_monitoring_kinds_are_checked_against_their_crds(
    rendered: dict[str, list[Manifest]],
) -> None:
    kinds = {m["kind"] for m in rendered["production"]}
    assert {"PodMonitor", "PrometheusRule"} <= kinds
    assert ("monitoring.coreos.com/v1", "PodMonitor") in crd_schemas(), (
        "the Prometheus Operator CRDs are missing: run `make chart-tools`"
    )
    bad = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
           "metadata": {"name": "x"}, "spec": {"podMetricsEndpoints": "not a list"}}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad)


def test_example_resources_are_valid_against_the_generated_crds() -> None:
    files = sorted((ROOT / "examples").glob("*/*.yaml"))
    checked = 0
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("apiVersion") != "muster.io/v1alpha1":
                continue
            schema = crd_schemas()[(doc["apiVersion"], doc["kind"])]
            jsonschema.validate(doc["spec"], schema["properties"]["spec"])
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_restricted_security_posture(rendered: dict[str, list[Manifest]], scenario: str) -> None:
    workloads = [m for m in rendered[scenario] if m["kind"] in WORKLOAD_KINDS]
    assert workloads
    for manifest in workloads:
        for pod, container in containers(manifest):
            where = (
                f"{scenario}: {manifest['kind']}/{manifest['metadata']['name']}/{container['name']}"
            )
            pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
            run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
            assert isinstance(run_as_user, int), where
            assert run_as_user > 0, where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert "add" not in sc.get("capabilities", {}), where
            assert not sc.get("privileged", False), where
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp, f"{where}: no writable /tmp"
            volume = next(v for v in pod["volumes"] if v["name"] == tmp[0]["name"])
            assert "emptyDir" in volume, where
            assert container.get("resources", {}).get("requests"), f"{where}: no requests"
            assert container.get("resources", {}).get("limits", {}).get("memory"), where
            assert not pod.get("hostNetwork"), where
            assert not pod.get("hostPID"), where


def _by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def test_probes_and_graceful_termination(rendered: dict[str, list[Manifest]]) -> None:
    deployments = _by_kind(rendered["minimal"], "Deployment")
    for name in ("muster-approval", "muster-scheduling", "muster-fulfillment"):
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        drain = float(next(v for k, v in env.items() if k.endswith("GRACEFUL_SHUTDOWN_SECONDS")))
        assert pod["terminationGracePeriodSeconds"] > drain, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["port"] == "metrics"
    gateway_pod = deployments["muster-gateway"]["spec"]["template"]["spec"]
    gateway = gateway_pod["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # A stopping gateway keeps serving while kube-proxy drops it (a rollout once failed the
    # requests of that moment); its grace covers the delay and the requests in flight.
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["MUSTER_GATEWAY_API__SHUTDOWN_DELAY_SECONDS"] == "5"
    assert gateway_pod["terminationGracePeriodSeconds"] == 5 + 25
    operator = deployments["muster-operator"]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"]["type"] == "Recreate"
    assert (
        operator["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"]
        == "liveness"
    )


def test_temporal_connection_set_once(rendered: dict[str, list[Manifest]]) -> None:
    production = rendered["production"]
    for name, deployment in _by_kind(production, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["TEMPORAL_ADDRESS"]["value"] == "temporal.example.com:7233", name
        assert env["TEMPORAL_NAMESPACE"]["value"] == "payments-prod", name
        assert env["TEMPORAL_API_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "temporal-api-key", "key": "api-key"}, name  # fmt: skip
        assert env["TEMPORAL_TLS"]["value"] == "true"
        assert env["TEMPORAL_TLS_SERVER_NAME"]["value"] == "temporal.example.com"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        cert_dir = str(Path(env["TEMPORAL_TLS_CLIENT_CERT_PATH"]["value"]).parent)
        assert volumes[mounts[cert_dir]]["secret"]["secretName"] == "temporal-client-tls"
        ca_dir = str(Path(env["TEMPORAL_TLS_SERVER_CA_CERT_PATH"]["value"]).parent)
        assert volumes[mounts[ca_dir]]["secret"]["secretName"] == "temporal-ca"
    # kind: the dev server in the release, and everything points at it.
    kind = rendered["kind"]
    assert "muster-temporal" in _by_kind(kind, "Deployment")
    for name, deployment in _by_kind(kind, "Deployment").items():
        if name == "muster-temporal":
            continue
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["TEMPORAL_ADDRESS"] == "muster-temporal:7233", name


def test_dev_server_registers_musters_search_attributes(
    rendered: dict[str, list[Manifest]],
) -> None:
    server = _by_kind(rendered["kind"], "Deployment")["muster-temporal"]
    args = server["spec"]["template"]["spec"]["containers"][0]["args"]
    registered = dict(a.removeprefix("--search-attribute=").split("=") for a in args
                      if a.startswith("--search-attribute="))  # fmt: skip
    assert registered == cli_types()


def test_production_scenario_has_hpa_pdb_ingress_and_monitoring(
    rendered: dict[str, list[Manifest]],
) -> None:
    production = rendered["production"]
    hpas = _by_kind(production, "HorizontalPodAutoscaler")
    assert set(hpas) == {"muster-approval", "muster-fulfillment", "muster-gateway"}
    deployments = _by_kind(production, "Deployment")
    for name in hpas:
        assert "replicas" not in deployments[name]["spec"], "the HPA owns replicas"
    assert set(_by_kind(production, "PodDisruptionBudget")) == {
        "muster-approval", "muster-scheduling", "muster-fulfillment", "muster-gateway"}  # fmt: skip
    (ingress,) = _by_kind(production, "Ingress").values()
    assert ingress["spec"]["tls"][0]["secretName"] == "muster-example-com-tls"
    (monitor,) = _by_kind(production, "PodMonitor").values()
    assert all(e["honorLabels"] for e in monitor["spec"]["podMetricsEndpoints"])
    (rule,) = _by_kind(production, "PrometheusRule").values()
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "MusterOrdersNeedAttention" in alerts
    assert _by_kind(production, "PersistentVolumeClaim")["muster-scheduling"]["metadata"][
        "annotations"]["helm.sh/resource-policy"] == "keep"  # fmt: skip
    # NetworkPolicies: one per component, the backends reachable from their callers only.
    policies = _by_kind(rendered["kind"], "NetworkPolicy")
    assert set(policies) >= {
        "muster-operator",
        "muster-gateway",
        "muster-backends",
        "muster-temporal",
    }
    backends_from = policies["muster-backends"]["spec"]["ingress"][1]["from"]
    callers = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in backends_from
    }
    assert callers == {"fulfillment", "scheduling", "test"}


def test_operator_rbac_is_least_privilege(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["minimal"]
    cluster_roles = _by_kind(manifests, "ClusterRole")
    rules = cluster_roles["muster-operator"]["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}  # fmt: skip
    assert not any(r in {"secrets", "*"} or v == "*" for _, r, v in granted)
    assert not any(
        v in {"create", "delete", "deletecollection"} for g, _, v in granted if g == "muster.io"
    )
    assert ("", "events", "create") in granted
    assert ("muster.io", "schedules/status", "patch") in granted
    assert not any(
        r in {"customresourcedefinitions", "namespaces", "leases"} for _, r, _ in granted
    )
    # The self-signed webhook certificate: its own configuration's caBundle, by name only.
    (webhook_rule,) = cluster_roles["muster-operator-webhook"]["rules"]
    assert webhook_rule == {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations"],
        "resourceNames": ["muster-operator"],
        "verbs": ["get", "patch"],
    }
    assert set(cluster_roles) == {"muster-operator", "muster-operator-webhook"}
    roles = _by_kind(manifests, "Role")
    named = [r for r in roles["muster-operator-policies"]["rules"] if r.get("resourceNames")]
    assert named[0]["resourceNames"] == ["muster-approval-policies"]
    assert set(named[0]["verbs"]) == {"get", "patch", "update"}
    # Secrets: the webhook's serving certificate only, read and (self-signed) updated; the
    # chart makes the Secret, so the operator cannot create any.
    (secret_rule,) = roles["muster-operator-webhook"]["rules"]
    assert secret_rule["resources"] == ["secrets"]
    assert secret_rule["resourceNames"] == ["muster-operator-webhook-tls"]
    assert set(secret_rule["verbs"]) == {"get", "update"}
    # watchNamespaces: Roles in exactly those namespaces, no cluster-wide grant (cert-manager
    # makes the webhook's certificate there, so the operator only reads it).
    production = rendered["production"]
    assert not _by_kind(production, "ClusterRole")
    namespaced = [m["metadata"]["namespace"] for m in production if m["kind"] == "Role"]
    assert sorted(namespaced) == ["hr", "muster-system", "muster-system", "payments"]
    (secret_rule,) = _by_kind(production, "Role")["muster-operator-webhook"]["rules"]
    assert secret_rule["verbs"] == ["get"]


WEBHOOK_NAMES = {
    "schedules.validate.muster.io",
    "approvalpolicies.validate.muster.io",
    "workerdeployments.validate.muster.io",
}
WEBHOOK_PATHS = {
    "schedules": SCHEDULE_WEBHOOK,
    "approvalpolicies": POLICY_WEBHOOK,
    "workerdeployments": WORKER_WEBHOOK,
}


def test_admission_webhook_is_scoped_to_musters_kinds(
    rendered: dict[str, list[Manifest]],
) -> None:
    for scenario in ("minimal", "production"):
        manifests = rendered[scenario]
        (config,) = _by_kind(manifests, "ValidatingWebhookConfiguration").values()
        assert {w["name"] for w in config["webhooks"]} == WEBHOOK_NAMES
        service = _by_kind(manifests, "Service")["muster-operator-webhook"]
        assert service["spec"]["ports"] == [
            {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
        ]
        for webhook in config["webhooks"]:
            assert webhook["failurePolicy"] == "Fail"
            assert webhook["sideEffects"] == "None"
            assert 1 <= webhook["timeoutSeconds"] <= 15
            (rule,) = webhook["rules"]
            assert rule["apiGroups"] == ["muster.io"]
            assert rule["operations"] == ["CREATE", "UPDATE"]
            assert rule["resources"] == [webhook["name"].split(".")[0]]
            reference = webhook["clientConfig"]["service"]
            assert reference["name"] == "muster-operator-webhook"
            # The paths are the operator's handler ids.
            assert reference["path"] == "/" + WEBHOOK_PATHS[rule["resources"][0]]
            assert "caBundle" not in webhook["clientConfig"], "the operator or cert-manager sets it"
        operator = _by_kind(manifests, "Deployment")["muster-operator"]["spec"]["template"]
        (container,) = operator["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["webhook"] == 9443
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MUSTER_OPERATOR_WEBHOOK__ENABLED"] == "true"
        assert env["MUSTER_OPERATOR_WEBHOOK__TLS_SECRET"] == "muster-operator-webhook-tls"
        policy = _by_kind(manifests, "NetworkPolicy")["muster-operator"]
        assert {"port": "webhook", "protocol": "TCP"} in [
            p for rule in policy["spec"]["ingress"] for p in rule["ports"]
        ]
    # Self-signed (the default): the operator fills the chart's empty Secret and caBundle.
    minimal = rendered["minimal"]
    assert "data" not in _by_kind(minimal, "Secret")["muster-operator-webhook-tls"]
    env = {e["name"]: e.get("value") for e in _by_kind(minimal, "Deployment")["muster-operator"][
        "spec"]["template"]["spec"]["containers"][0]["env"]}  # fmt: skip
    assert env["MUSTER_OPERATOR_WEBHOOK__SELF_SIGNED"] == "true"
    assert env["MUSTER_OPERATOR_WEBHOOK__CONFIGURATION"] == "muster-operator"
    assert json.loads(env["MUSTER_OPERATOR_WEBHOOK__DNS_NAMES"]) == [
        "muster-operator-webhook",
        "muster-operator-webhook.muster-system",
        "muster-operator-webhook.muster-system.svc",
    ]
    assert not _by_kind(minimal, "Certificate")
    # cert-manager (production): a Certificate from the named issuer, the CA injected, the
    # webhook only where the operator works.
    production = rendered["production"]
    (config,) = _by_kind(production, "ValidatingWebhookConfiguration").values()
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        "muster-system/muster-operator-webhook"
    )
    for webhook in config["webhooks"]:
        (expression,) = webhook["namespaceSelector"]["matchExpressions"]
        assert expression["values"] == ["payments", "hr"]
    (certificate,) = _by_kind(production, "Certificate").values()
    assert certificate["spec"]["secretName"] == "muster-operator-webhook-tls"
    assert certificate["spec"]["issuerRef"] == {
        "name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}  # fmt: skip
    assert "muster-operator-webhook.muster-system.svc" in certificate["spec"]["dnsNames"]
    assert "muster-operator-webhook-tls" not in _by_kind(production, "Secret")


def test_webhook_variants_render_valid_objects(helm: Run) -> None:
    # cert-manager without an issuer: the chart makes a self-signed CA with cert-manager.
    made = render(helm, "minimal", "--set", "operator.webhook.certManager.enabled=true")
    for manifest in made:
        _validate(manifest)
    issuers = _by_kind(made, "Issuer")
    assert set(issuers) == {"muster-operator-webhook-selfsigned", "muster-operator-webhook-ca"}
    certificates = _by_kind(made, "Certificate")
    assert certificates["muster-operator-webhook-ca"]["spec"]["isCA"] is True
    assert certificates["muster-operator-webhook"]["spec"]["issuerRef"]["name"] == (
        "muster-operator-webhook-ca"
    )
    # Off: no webhook objects, no webhook grants, no webhook port.
    off = render(helm, "minimal", "--set", "operator.webhook.enabled=false")
    assert not _by_kind(off, "ValidatingWebhookConfiguration")
    assert "muster-operator-webhook" not in _by_kind(off, "Service")
    assert "muster-operator-webhook" not in _by_kind(off, "ClusterRole")
    assert "muster-operator-webhook" not in _by_kind(off, "Role")
    pod = _by_kind(off, "Deployment")["muster-operator"]["spec"]["template"]["spec"]
    assert "webhook" not in {p["name"] for p in pod["containers"][0]["ports"]}


def test_crds_rendered_with_keep_switch(helm: Run) -> None:
    crds = [m for m in render(helm, "minimal") if m["kind"] == "CustomResourceDefinition"]
    assert {c["metadata"]["name"] for c in crds} == {
        "schedules.muster.io",
        "approvalpolicies.muster.io",
        "workerdeployments.muster.io",
    }
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    unkept = [m for m in render(helm, "minimal", "--set", "crds.keep=false")
              if m["kind"] == "CustomResourceDefinition"]  # fmt: skip
    assert all(
        "helm.sh/resource-policy" not in c["metadata"].get("annotations", {}) for c in unkept
    )
    none = render(helm, "minimal", "--set", "crds.install=false")
    assert not [m for m in none if m["kind"] == "CustomResourceDefinition"]
    # The committed CRD files are what the chart ships, byte for byte in content.
    for crd in crds:
        source = yaml.safe_load(
            (
                CHART / "files" / "crds" / f"muster.io_{crd['spec']['names']['plural']}.yaml"
            ).read_text()
        )
        assert crd["spec"] == source["spec"]


def test_monitoring_toggles_render_nothing_when_off(rendered: dict[str, list[Manifest]]) -> None:
    kinds = {m["kind"] for m in rendered["minimal"]}
    assert not kinds & {
        "PodMonitor",
        "ServiceMonitor",
        "PrometheusRule",
        "Ingress",
        "HorizontalPodAutoscaler",
    }


def test_service_monitor_variant(helm: Run) -> None:
    manifests = render(helm, "minimal", "--set", "monitoring.serviceMonitor.enabled=true")
    (monitor,) = _by_kind(manifests, "ServiceMonitor").values()
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    service = _by_kind(manifests, "Service")["muster-metrics"]
    assert service["spec"]["clusterIP"] == "None"
    for manifest in manifests:
        _validate(manifest)


# -- values: commented, schema-complete, and strict -------------------------------------


def test_every_value_is_commented() -> None:
    """Every leaf value has a comment right above it, unless it belongs to a block value
    whose key is commented (a resources block, a security context)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented_blocks: list[int] = []  # indents of commented keys whose value is a block
    uncommented = []
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match[1]), match[2], match[3].strip()
        documented_blocks = [i for i in documented_blocks if i < indent]
        commented = index > 0 and lines[index - 1].strip().startswith("#")
        if not rest:  # a block: its children are covered if the block itself is commented
            if commented:
                documented_blocks.append(indent)
            continue
        if not commented and not documented_blocks:
            uncommented.append(f"line {index + 1}: {key}")
    assert not uncommented, "values without a comment:\n" + "\n".join(uncommented)


def test_schema_covers_every_default_value() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, values_schema())

    def walk(schema: dict[str, Any], node: Any, path: str) -> None:
        if isinstance(node, dict) and schema.get("additionalProperties") is False:
            for key, value in node.items():
                assert key in schema["properties"], f"{path}.{key} is not in values.schema.json"
                walk(schema["properties"][key], value, f"{path}.{key}")

    walk(values_schema(), defaults, "")


BAD_VALUES = [
    (["--set", "operator.replicas=2"], "additional properties 'replicas' not allowed"),
    (["--set", "gateway.replicaCount=two"], "gateway.replicaCount"),
    (["--set", "temporal.address=localhost"], "temporal.address"),
    (["--set", "image.pullPolicy=Sometimes"], "image.pullPolicy"),
    (["--set", "gateway.auth.tokens.alice=hunter2"], "gateway.auth.tokens.alice"),
    (["--set", "fulfillment.approvalThresholds.euro=5"], "euro"),
    (["--set-json", 'operator.watchNamespaces=["Not_A_Namespace"]'], "watchNamespaces"),
    (
        ["--set", "approval.autoscaling.targetCPUUtilizationPercentage=250"],
        "targetCPUUtilizationPercentage",
    ),
    (["--set", "backends.persistence.size=lots"], "backends.persistence.size"),
    (["--set", "operator.webhook.failurePolicy=Maybe"], "operator.webhook.failurePolicy"),
    (["--set", "operator.webhook.timeoutSeconds=60"], "operator.webhook.timeoutSeconds"),
    # A client certificate that would be ignored (TLS left off) is refused instead.
    (["--set", "temporal.tls.clientSecret=temporal-client-tls"], "temporal.tls.enabled"),
    (["--set", "versioning.promote=always"], "versioning.promote"),
    (["--set", "versioning.buildId=a b"], "versioning.buildId"),
]


@pytest.mark.parametrize(("args", "mentions"), BAD_VALUES, ids=[a[1] for a in BAD_VALUES])
def test_bad_values_are_rejected_readably(helm: Run, args: list[str], mentions: str) -> None:
    result = helm("template", "m", str(CHART), *args, check=False)
    assert result.returncode != 0, f"{args} was accepted"
    message = result.stderr
    assert "values don't meet the specifications of the schema" in message, message
    assert mentions.rsplit(".", maxsplit=1)[-1] in message, message


def test_validation_is_not_vacuous() -> None:
    """A misspelt field in a built-in kind and a wrong type in a Muster resource both fail."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"replica": 1, "selector": {}, "template": {}}}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    schedule = {"apiVersion": "muster.io/v1alpha1", "kind": "Schedule", "metadata": {"name": "x"},
                "spec": {"suspend": "yes"}}  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        _validate(schedule)


def test_dashboards_ship_as_sidecar_configmaps(rendered: dict[str, list[Manifest]]) -> None:
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert files
    maps = [m for m in rendered["production"] if m["kind"] == "ConfigMap"
            and m["metadata"]["labels"].get("grafana_dashboard") == "1"]  # fmt: skip
    assert len(maps) == len(files)
    uids = set()
    for config_map in maps:
        ((name, text),) = config_map["data"].items()
        dashboard = json.loads(text)
        assert dashboard["uid"], name
        uids.add(dashboard["uid"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        for panel in dashboard["panels"]:
            where = f"{name}: {panel['title']}"
            assert panel["datasource"]["uid"] == "${datasource}", where
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
            for target in panel["targets"]:
                expr = target["expr"]
                assert not re.search(r"\[\d+[sm]\]", expr), f"{where}: use $__rate_interval"
                if "rate(" in expr:
                    assert "$__rate_interval" in expr, where
    assert len(uids) == len(maps), "dashboard uids are unique"
    assert not [m for m in rendered["minimal"] if m["kind"] == "ConfigMap"
                and "grafana_dashboard" in m["metadata"]["labels"]]  # fmt: skip


def test_gateway_replicas_share_one_session_key(rendered: dict[str, list[Manifest]]) -> None:
    def session_volume(manifests: list[Manifest]) -> str:
        pod = _by_kind(manifests, "Deployment")["muster-gateway"]["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "session")
        return str(volume["secret"]["secretName"])

    minimal = rendered["minimal"]
    assert session_volume(minimal) == "muster-gateway-session"
    made = _by_kind(minimal, "Secret")["muster-gateway-session"]
    assert len(base64.b64decode(made["data"]["session-secret"])) >= 16
    production = rendered["production"]
    assert session_volume(production) == "muster-web-sessions"
    assert "muster-gateway-session" not in _by_kind(production, "Secret")


def test_replica_count_zero_is_kept(helm: Run) -> None:
    manifests = render(helm, "minimal", "--set", "gateway.replicaCount=0")
    assert _by_kind(manifests, "Deployment")["muster-gateway"]["spec"]["replicas"] == 0


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--set", "backends.enabled=false"], "scheduling.backendsUrl is empty"),
        (["--set", "backends.enabled=false", "--set", "scheduling.backendsUrl=http://x:1"],
         "fulfillment.backends.inventory is empty"),
    ],
)  # fmt: skip
def test_a_saga_without_backends_is_refused(helm: Run, args: list[str], mentions: str) -> None:
    result = helm("template", "m", str(CHART), *args, check=False)
    assert result.returncode != 0
    assert mentions in result.stderr
    assert "enable the reference backends (backends.enabled=true)" in result.stderr


def _worker_env(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    """Per worker Deployment, its Worker Versioning variables."""
    found = {}
    for name, deployment in _by_kind(manifests, "Deployment").items():
        for _, container in containers(deployment):
            env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            found[name] = {
                k.split("_WORKER__", 1)[1]: v for k, v in env.items()
                if "_WORKER__" in k and k.split("_WORKER__", 1)[1] in VERSIONING_VARIABLES
            }  # fmt: skip
    return {name: env for name, env in found.items() if env}


VERSIONING_VARIABLES = {"BUILD_ID", "DEPLOYMENT_NAME", "PROMOTE"}


def test_every_worker_runs_as_a_version_named_by_its_image_tag(helm: Run) -> None:
    manifests = render(helm, "production", "--set", "image.tag=1.4.0",
                       "--set", "fulfillment.image.tag=1.4.1")  # fmt: skip
    assert _worker_env(manifests) == {
        f"muster-{c}": {"DEPLOYMENT_NAME": f"muster-{c}",
                        "BUILD_ID": "1.4.1" if c == "fulfillment" else "1.4.0",
                        "PROMOTE": "on-start"}
        for c in ("approval", "fulfillment", "scheduling")
    }  # fmt: skip
    pinned = render(helm, "production", "--set", "versioning.buildId=sha256-0a1b2c",
                    "--set", "versioning.promote=external")  # fmt: skip
    assert {e["BUILD_ID"] for e in _worker_env(pinned).values()} == {"sha256-0a1b2c"}
    assert {e["PROMOTE"] for e in _worker_env(pinned).values()} == {"external"}
    assert _worker_env(render(helm, "production", "--set", "versioning.enabled=false")) == {}


def test_promote_operator_makes_each_worker_a_worker_deployment(helm: Run) -> None:
    """versioning.promote=operator: helm renders a WorkerDeployment per worker (the operator
    owns the per-build Deployments), the autoscalers scale it, the operator may run
    Deployments and gate Jobs, and only the approval worker's gate replays (the others'
    workflows are pinned)."""
    prometheus = "operator.rollout.prometheusUrl=http://prometheus:9090"
    manifests = render(helm, "production", "--set", "versioning.promote=operator",
                       "--set", prometheus)  # fmt: skip
    workers = _by_kind(manifests, "WorkerDeployment")
    assert set(workers) == {"muster-approval", "muster-fulfillment", "muster-scheduling"}
    assert not set(workers) & set(_by_kind(manifests, "Deployment"))
    gates = {}
    for name, body in workers.items():
        parsed = v1alpha1.WorkerDeployment.model_validate(body)
        assert parsed.deployment_name == name
        assert parsed.spec.worker_container().name == name.removeprefix("muster-")
        assert parsed.spec.sunset.delete_delay.total_seconds() == 24 * 3600
        gates[name] = parsed.spec.rollout.replay_gate.workflows
        env = {
            e["name"]: e.get("value")
            for e in body["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env[f"{parsed.spec.settings_prefix}WORKER__PROMOTE"] == "external"
    assert gates == {
        "muster-approval": ["muster_approval.workflows:Approval"],
        "muster-fulfillment": [],
        "muster-scheduling": [],
    }
    for hpa in _by_kind(manifests, "HorizontalPodAutoscaler").values():
        if hpa["metadata"]["name"] in workers:
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "WorkerDeployment"
    operator = _by_kind(manifests, "Deployment")["muster-operator"]
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MUSTER_OPERATOR_ROLLOUT__PROMETHEUS_URL"] == "http://prometheus:9090"
    rules = [r for role in _by_kind(manifests, "Role").values() for r in role["rules"]]
    assert {"apiGroups": ["apps"], "resources": ["deployments"],
            "verbs": ["get", "list", "watch", "create", "patch", "delete"]} in rules  # fmt: skip
    # Without it, the operator may not touch Deployments.
    plain = render(helm, "production")
    assert not _by_kind(plain, "WorkerDeployment")
    assert not any(
        "deployments" in r["resources"] for role in _by_kind(plain, "Role").values()
        for r in role["rules"]
    )  # fmt: skip
