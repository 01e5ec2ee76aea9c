"""The chart in the real control plane: every ``ci/*-values.yaml`` scenario installs (the API
server validates and admits every object), upgrades and uninstalls as documented; the CRDs
install, upgrade and stay or go by ``crds.keep``; and the operator's RBAC is proven by asking
the API server as its ServiceAccount and by running the real operator with only that
ServiceAccount's token."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from muster_dev.kube import KubeAccess
from muster_dev.process import free_port
from muster_operator.settings import WebhookSettings
from muster_operator.webhook import plan
from muster_runtime.polling import PollTimeout, wait_until
from muster_runtime.settings import TemporalSettings
from tests.chart.support import CHART, SCENARIOS, SCHEMAS, values_file
from tests.kube.operator_support import (
    WEBHOOK_PATHS,
    OperatorProcess,
    Resources,
    ca_bundle,
    operator_env,
    webhook_env,
)
from tests.kube.support import Run

pytestmark = [pytest.mark.chart, pytest.mark.kube]

CRD_NAMES = ("schedules.muster.io", "approvalpolicies.muster.io", "workerdeployments.muster.io")
# A refusal by the API server as the operator's log shows it (kopf's APIForbiddenError and its
# status=403, the kubernetes client's "(403)" and "Reason: Forbidden", a Status body's code),
# and not a port, a millisecond or a response size that happens to contain the digits 403.
FORBIDDEN = re.compile(r"Forbidden|status=403\b|['\"]code['\"]:\s*403\b|\(403\)")


@pytest.fixture(scope="module")
def cluster_ready(kubectl: Run) -> None:
    """What a cluster has before Muster: the Prometheus Operator's and cert-manager's CRDs
    (for the production scenario's monitoring and webhook certificate), Muster's CRDs, and
    the namespaces the production scenario's operator watches."""
    monitoring = sorted(SCHEMAS.glob("monitoring-crds-*"))
    assert monitoring, "the Prometheus Operator CRDs are missing: run `make chart-tools`"
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(monitoring[-1]))
    cert_manager = sorted(SCHEMAS.glob("cert-manager-crds-*"))
    assert cert_manager, "the cert-manager CRDs are missing: run `make chart-tools`"
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(cert_manager[-1]))
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "files" / "crds"))
    for name in ("payments", "hr"):
        if kubectl("get", "namespace", name, check=False).returncode != 0:
            kubectl("create", "namespace", name)
    for crd in ("podmonitors.monitoring.coreos.com", "certificates.cert-manager.io", *CRD_NAMES):
        wait_established(kubectl, crd)


def wait_established(kubectl: Run, crd: str) -> None:
    """Poll until the CRD is served (``kubectl wait`` fails on a CRD whose status is
    still empty, right after it was created)."""

    def established() -> bool:
        result = kubectl("get", "crd", crd, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until(established, what=f"CRD {crd} to be established", timeout=60)


def release_name() -> str:
    return f"m{uuid.uuid4().hex[:8]}"


def manifest_objects(helm: Run, release: str, namespace: str) -> list[dict[str, Any]]:
    text = helm("get", "manifest", release, "--namespace", namespace).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def exists(kubectl: Run, obj: dict[str, Any], namespace: str) -> bool:
    kind = obj["kind"]
    name = obj["metadata"]["name"]
    ns = obj["metadata"].get("namespace")
    args = [
        "get",
        f"{kind}.{obj['apiVersion'].split('/')[0]}" if "/" in obj["apiVersion"] else kind,
        name,
    ]
    if ns:
        args += ["--namespace", ns]
    return kubectl(*args, "-o", "name", check=False).returncode == 0


@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_install_upgrade_uninstall(
    helm_cluster: Run, kubectl: Run, namespace: str, cluster_ready: None, scenario: str
) -> None:
    release = release_name()
    # The API server's own PodSecurity admission judges every pod template: restricted is
    # enforced for Pods and warned about for workloads, and no warning may come back.
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted", "--overwrite")  # fmt: skip
    common = ["--namespace", namespace, "--values", str(values_file(scenario)),
              "--set", "crds.install=false"]  # fmt: skip
    installed = helm_cluster("install", release, str(CHART), *common)
    try:
        check_installed(helm_cluster, kubectl, namespace, release, scenario, common, installed)
    finally:
        # Also on failure: the release's webhook configuration (failurePolicy Fail, nobody
        # serving it here) would refuse every Schedule the later tests create.
        helm_cluster("uninstall", release, "--namespace", namespace, "--wait", "--timeout",
                     "150s", timeout=180, check=False)  # fmt: skip


def check_installed(
    helm_cluster: Run,
    kubectl: Run,
    namespace: str,
    release: str,
    scenario: str,
    common: list[str],
    installed: Any,
) -> None:
    """What test_install_upgrade_uninstall checks between install and uninstall."""
    assert "PodSecurity" not in installed.stderr, installed.stderr
    # helm test's Pod (a hook, so not installed) is admitted under the enforced level.
    test_pod = helm_cluster(
        "template", release, str(CHART), *common,
        "--show-only", "templates/tests/test-connection.yaml",
    ).stdout  # fmt: skip
    created = kubectl("apply", "--namespace", namespace, "-f", "-", input=test_pod)
    assert "PodSecurity" not in created.stderr, created.stderr
    loosened = yaml.safe_load(test_pod)
    loosened["metadata"]["name"] += "-loose"
    loosened["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = kubectl("apply", "--namespace", namespace, "-f", "-",
                      input=yaml.safe_dump(loosened), check=False)  # fmt: skip
    assert refused.returncode != 0, "the namespace does not enforce restricted"
    assert "violates PodSecurity" in refused.stderr, refused.stderr
    kubectl("delete", "pod", f"{release}-muster-test", "--namespace", namespace, "--wait=false")
    objects = manifest_objects(helm_cluster, release, namespace)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "NetworkPolicy", "ConfigMap"} <= kinds
    # The admission webhook: its configuration, Service, and certificate (cert-manager's
    # Certificate in production, the operator's Secret otherwise).
    assert {"ValidatingWebhookConfiguration", "Service"} <= kinds
    assert ("Certificate" in kinds) == (scenario == "production")
    missing = [
        f"{o['kind']}/{o['metadata']['name']}" for o in objects if not exists(kubectl, o, namespace)
    ]
    assert not missing, f"helm said installed, the API server has not: {missing}"

    if scenario != "production":
        operator_writes_its_certificate(kubectl, namespace, release)
    # The operator publishes a policy into the chart's (empty) ConfigMap.
    policies = f"{release}-muster-approval-policies"
    published = {"data": {"default.large-orders.yaml": "kind: ApprovalPolicy\n"}}
    kubectl("patch", "configmap", policies, "-n", namespace, "--type=merge",
            "-p", json.dumps(published))  # fmt: skip

    session = f"{release}-muster-gateway-session"
    key_before = session_key(kubectl, namespace, session)
    assert (key_before is None) == (scenario == "production"), "chart-made unless one is named"

    # upgrade: a changed value reaches the live objects; the revision moves on.
    helm_cluster("upgrade", release, str(CHART), *common, "--set", "common.podLabels.rollout=two")
    # The chart-made session key survives upgrades (sessions stay valid across a rollout).
    assert session_key(kubectl, namespace, session) == key_before
    status = json.loads(
        helm_cluster("status", release, "--namespace", namespace, "-o", "json").stdout
    )
    assert status["info"]["status"] == "deployed"
    assert status["version"] == 2
    deployments = json.loads(kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)
    assert deployments["items"]
    for deployment in deployments["items"]:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels.get("rollout") == "two", deployment["metadata"]["name"]
    # What the operator published survives the upgrade (the chart renders no data).
    kept_data = kubectl("get", "configmap", policies, "-n", namespace, "-o", "json").stdout
    assert json.loads(kept_data)["data"] == published["data"]
    if scenario != "production":
        # What the operator wrote (the certificate and the CA bundle) survives the upgrade.
        secret = kubectl("get", "secret", f"{release}-muster-operator-webhook-tls",
                         "-n", namespace, "-o", "json").stdout  # fmt: skip
        assert json.loads(secret)["data"]["ca.crt"]
        config = kubectl("get", "validatingwebhookconfiguration", f"{release}-muster-operator",
                         "-o", "json").stdout  # fmt: skip
        assert all(w["clientConfig"].get("caBundle") for w in json.loads(config)["webhooks"])

    # uninstall: everything goes but what is documented to stay (claims with their data).
    helm_cluster(
        "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "150s", timeout=180
    )
    left = [o for o in objects if exists(kubectl, o, namespace)]
    kept = [o for o in left if o["kind"] == "PersistentVolumeClaim"]
    assert left == kept, f"left behind: {[(o['kind'], o['metadata']['name']) for o in left]}"
    if scenario == "production":
        assert kept, "the scheduling worker's claim is kept on uninstall"


def operator_writes_its_certificate(kubectl: Run, namespace: str, release: str) -> None:
    """Do what the operator does to the chart's objects: fill the Secret, set the bundle."""
    material = plan(None, WEBHOOK_SETTINGS, dt.datetime.now(dt.UTC), [])
    kubectl("patch", "secret", f"{release}-muster-operator-webhook-tls", "-n", namespace,
            "--type=merge", "-p", json.dumps({"data": material.secret_data()}))  # fmt: skip
    bundle = base64.b64encode(material.ca_bundle).decode()
    webhooks = json.loads(
        kubectl(
            "get", "validatingwebhookconfiguration", f"{release}-muster-operator", "-o", "json"
        ).stdout
    )["webhooks"]
    patch = [{"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": bundle}
             for i in range(len(webhooks))]  # fmt: skip
    kubectl("patch", "validatingwebhookconfiguration", f"{release}-muster-operator",
            "--type=json", "-p", json.dumps(patch))  # fmt: skip


WEBHOOK_SETTINGS = WebhookSettings(
    enabled=True, tls_secret="x", tls_secret_namespace="x", dns_names=["x"], configuration="x"
)


def session_key(kubectl: Run, namespace: str, name: str) -> str | None:
    result = kubectl("get", "secret", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return str(json.loads(result.stdout)["data"]["session-secret"])


def adopt_crds(kubectl: Run, release: str, namespace: str) -> None:
    """Hand existing CRDs to a release (helm adopts objects labelled and annotated for it):
    the documented way to move CRDs applied with kubectl, or kept by an earlier release."""
    for crd in CRD_NAMES:
        if kubectl("get", "crd", crd, check=False).returncode != 0:
            continue
        kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        kubectl("annotate", "crd", crd, f"meta.helm.sh/release-name={release}",
                f"meta.helm.sh/release-namespace={namespace}", "--overwrite")  # fmt: skip


def crd_state(kubectl: Run, crd: str) -> dict[str, Any] | None:
    result = kubectl("get", "crd", crd, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def crd_annotations(kubectl: Run, crd: str) -> dict[str, str] | None:
    state = crd_state(kubectl, crd)
    return None if state is None else dict(state["metadata"].get("annotations", {}))


def release_abandoned_resources(kubectl: Run) -> None:
    """Drop the finalizer of Muster resources left in deleted test namespaces.

    The tiers share one control plane per session, and without a controller-manager a deleted
    namespace keeps its objects: a Schedule an operator test left behind keeps the
    operator's finalizer with no operator to remove it, and would hold up the deletion of
    its CRD forever. Only namespaces already being deleted are touched."""
    for plural in ("schedules.muster.io", "approvalpolicies.muster.io"):
        listed = kubectl("get", plural, "--all-namespaces", "-o", "json", check=False)
        if listed.returncode != 0:
            continue
        for item in json.loads(listed.stdout)["items"]:
            meta = item["metadata"]
            namespace = kubectl("get", "namespace", meta["namespace"], "-o", "json", check=False)
            terminating = namespace.returncode != 0 or "deletionTimestamp" in json.loads(
                namespace.stdout
            ).get("metadata", {})
            if meta.get("finalizers") and terminating:
                patched = kubectl("patch", plural, meta["name"], "-n", meta["namespace"],
                                  "--type=merge", "-p", '{"metadata": {"finalizers": null}}',
                                  check=False)  # fmt: skip
                # Gone in the meantime is fine; anything else would hold up the CRD.
                assert patched.returncode == 0 or "NotFound" in patched.stderr, (
                    f"could not release {meta['namespace']}/{meta['name']}: {patched.stderr}"
                )


def what_holds_crds(kubectl: Run) -> str:
    """Why Muster's CRDs are still there: each one's Terminating condition (the API server
    says there which of its custom resources it could not delete) and every custom resource
    left, with its finalizers and whether its namespace is being deleted."""
    lines = []
    for crd in CRD_NAMES:
        state = crd_state(kubectl, crd)
        if state is None:
            continue
        conditions = {c["type"]: c for c in state.get("status", {}).get("conditions", [])}
        terminating = conditions.get("Terminating", {})
        lines.append(
            f"{crd}: deletionTimestamp={state['metadata'].get('deletionTimestamp')}, "
            f"finalizers={state['metadata'].get('finalizers')}, Terminating "
            f"{terminating.get('reason')}: {terminating.get('message')}"
        )
        listed = kubectl("get", crd, "--all-namespaces", "-o", "json", check=False)
        if listed.returncode != 0:
            lines.append(f"  cannot list: {listed.stderr.strip()}")
            continue
        for item in json.loads(listed.stdout)["items"]:
            meta = item["metadata"]
            lines.append(
                f"  {meta['namespace']}/{meta['name']}: finalizers={meta.get('finalizers')}, "
                f"deletionTimestamp={meta.get('deletionTimestamp')}"
            )
    return "\n".join(lines)


def wait_crds_gone(kubectl: Run, *, only_terminating: bool = False) -> None:
    """Poll until Muster's CRDs are deleted (the API server first deletes every custom
    resource of theirs, which can take a while on a busy machine); a timeout says what
    holds them."""

    def gone() -> bool:
        for crd in CRD_NAMES:
            state = crd_state(kubectl, crd)
            if state is None:
                continue
            if only_terminating and "deletionTimestamp" not in state["metadata"]:
                continue
            return False
        return True

    try:
        wait_until(gone, what="Muster's CRDs to be deleted", timeout=240, interval=0.5)
    except PollTimeout as exc:
        raise AssertionError(f"{exc}; what holds them:\n{what_holds_crds(kubectl)}") from exc


@pytest.mark.timeout(600)
def test_crds_install_upgrade_and_keep_switch(
    helm_cluster: Run, kubectl: Run, namespace: str, cluster_ready: None
) -> None:
    only_crds = ["--namespace", namespace, "--values", str(values_file("minimal"))]
    for component in ("operator", "approval", "scheduling", "fulfillment", "gateway"):
        only_crds += ["--set", f"{component}.enabled=false"]
    try:
        # keep (the default): installed with the release, left in place by uninstall.
        release = release_name()
        adopt_crds(kubectl, release, namespace)
        helm_cluster("install", release, str(CHART), *only_crds)
        for crd in CRD_NAMES:
            annotations = crd_annotations(kubectl, crd)
            assert annotations is not None
            assert annotations["meta.helm.sh/release-name"] == release
            assert annotations["helm.sh/resource-policy"] == "keep"
        # upgrade manages the CRDs: switching keep off reaches the live objects.
        helm_cluster("upgrade", release, str(CHART), *only_crds, "--set", "crds.keep=false")
        for crd in CRD_NAMES:
            annotations = crd_annotations(kubectl, crd)
            assert annotations is not None
            assert "helm.sh/resource-policy" not in annotations
        helm_cluster("upgrade", release, str(CHART), *only_crds)
        helm_cluster("uninstall", release, "--namespace", namespace)
        for crd in CRD_NAMES:
            kept = crd_state(kubectl, crd)
            assert kept is not None, f"{crd} was deleted"
            assert "deletionTimestamp" not in kept["metadata"], f"{crd} is being deleted"

        # keep off: uninstall removes them (and every Schedule with them).
        release_abandoned_resources(kubectl)
        release = release_name()
        adopt_crds(kubectl, release, namespace)
        helm_cluster("install", release, str(CHART), *only_crds, "--set", "crds.keep=false")
        helm_cluster("uninstall", release, "--namespace", namespace)
        wait_crds_gone(kubectl)
    finally:
        # Leave the plane with the CRDs, as the other tests expect it: a CRD that is still
        # being deleted must be gone before it can be created again.
        wait_crds_gone(kubectl, only_terminating=True)
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "files" / "crds"))
        for crd in CRD_NAMES:
            wait_established(kubectl, crd)


# -- RBAC, proven ---------------------------------------------------------------------------


def can_i(kubectl: Run, who: str, verb: str, resource: str, *where: str) -> bool:
    result = kubectl("auth", "can-i", verb, resource, *where, f"--as={who}", check=False)
    return result.stdout.strip() == "yes"


@pytest.fixture
def operator_release(
    helm_cluster: Run, namespace: str, cluster_ready: None
) -> Iterator[tuple[str, str]]:
    """The minimal scenario installed with its operator watching this test's namespace;
    yields (release, ServiceAccount name)."""
    release = "muster"
    helm_cluster(
        "install", release, str(CHART), "--namespace", namespace,
        "--values", str(values_file("minimal")), "--set", "crds.install=false",
        "--set-json", f'operator.watchNamespaces=["{namespace}"]',
    )  # fmt: skip
    yield release, "muster-operator"
    helm_cluster("uninstall", release, "--namespace", namespace, "--wait", timeout=180)


def test_operator_serviceaccount_can_do_its_job_and_nothing_more(
    kubectl: Run, namespace: str, operator_release: tuple[str, str], helm_cluster: Run
) -> None:
    _, account = operator_release
    who = f"system:serviceaccount:{namespace}:{account}"
    here = ["--namespace", namespace]
    allowed = [
        ("list", "schedules.muster.io"), ("watch", "schedules.muster.io"),
        ("patch", "schedules.muster.io"), ("patch", "schedules.muster.io/status"),
        ("update", "schedules.muster.io/finalizers"), ("watch", "approvalpolicies.muster.io"),
        ("patch", "approvalpolicies.muster.io/status"), ("create", "events"),
        ("create", "configmaps"), ("get", "configmaps/muster-approval-policies"),
        ("patch", "configmaps/muster-approval-policies"),
        ("get", "secrets/muster-operator-webhook-tls"),
        ("update", "secrets/muster-operator-webhook-tls"),
    ]  # fmt: skip
    for verb, resource in allowed:
        assert can_i(kubectl, who, verb, resource, *here), f"cannot {verb} {resource}"
    denied_here = [
        ("get", "secrets"), ("list", "secrets"), ("delete", "schedules.muster.io"),
        ("create", "schedules.muster.io"), ("get", "configmaps/someone-elses"),
        ("patch", "configmaps/someone-elses"), ("list", "pods"),
        ("create", "leases.coordination.k8s.io"), ("create", "secrets"),
        ("get", "secrets/someone-elses"), ("update", "secrets/someone-elses"),
        ("delete", "secrets/muster-operator-webhook-tls"),
    ]  # fmt: skip
    for verb, resource in denied_here:
        assert not can_i(kubectl, who, verb, resource, *here), f"may {verb} {resource}"
    cluster_wide = ["--all-namespaces"]
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("list", "schedules.muster.io"),
                           ("list", "namespaces"), ("list", "customresourcedefinitions"),
                           ("create", "clusterroles")]:  # fmt: skip
        assert not can_i(kubectl, who, verb, resource, *cluster_wide), (
            f"may {verb} {resource} anywhere"
        )
    assert not can_i(kubectl, who, "list", "schedules.muster.io", "--namespace", "kube-system")
    # The self-signed webhook certificate: its own configuration's CA bundle, nothing else.
    configs = "validatingwebhookconfigurations.admissionregistration.k8s.io"
    assert can_i(kubectl, who, "patch", f"{configs}/muster-operator")
    assert can_i(kubectl, who, "get", f"{configs}/muster-operator")
    assert not can_i(kubectl, who, "patch", f"{configs}/someone-elses")
    assert not can_i(kubectl, who, "list", configs)
    assert not can_i(kubectl, who, "delete", f"{configs}/muster-operator")
    assert not can_i(
        kubectl, who, "create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"
    )

    # The default (cluster-wide) variant: its resources everywhere, still no Secrets.
    release = release_name()
    helm_cluster(
        "install", release, str(CHART), "--namespace", namespace,
        "--values", str(values_file("minimal")), "--set", "crds.install=false",
    )  # fmt: skip
    try:
        wide = f"system:serviceaccount:{namespace}:{release}-muster-operator"
        assert can_i(kubectl, wide, "watch", "schedules.muster.io", *cluster_wide)
        assert can_i(kubectl, wide, "create", "events", "--namespace", "kube-system")
        assert not can_i(kubectl, wide, "get", "secrets", *cluster_wide)
        assert not can_i(kubectl, wide, "list", "secrets", "--namespace", namespace)
    finally:
        helm_cluster("uninstall", release, "--namespace", namespace, "--wait", timeout=180)


def serviceaccount_kubeconfig(
    kube: KubeAccess, core_api: client.CoreV1Api, namespace: str, account: str, path: Path
) -> Path:
    """A kubeconfig whose only identity is a bound token of the ServiceAccount."""
    request = core_api.create_namespaced_service_account_token(
        account, namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    )  # fmt: skip
    assert request.status is not None
    admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
    context_name = kube.context or admin["current-context"]
    context = next(c for c in admin["contexts"] if c["name"] == context_name)["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [cluster],
        "users": [{"name": "operator", "user": {"token": request.status.token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.timeout(240)
def test_operator_runs_on_its_serviceaccount_alone(
    kube: KubeAccess,
    core_api: client.CoreV1Api,
    api_client: client.ApiClient,
    temporal_settings: TemporalSettings,
    namespace: str,
    operator_release: tuple[str, str],
    tmp_path: Path,
) -> None:
    _, account = operator_release
    kubeconfig = serviceaccount_kubeconfig(
        kube, core_api, namespace, account, tmp_path / "sa.kubeconfig"
    )
    env = operator_env(
        kube, temporal_settings.address, namespaces=[namespace], policy_namespace=namespace
    )
    env["KUBECONFIG"] = str(kubeconfig)
    env["MUSTER_OPERATOR_POLICY_CONFIGMAP"] = "muster-approval-policies"
    # The chart's webhook, served by this operator: the configuration calls it by URL (it
    # runs outside the cluster); it fills the chart's Secret and the configuration's CA
    # bundle with its own rights.
    port = free_port()
    admission = client.AdmissionregistrationV1Api(api_client)
    config = admission.read_validating_webhook_configuration("muster-operator")
    patch = []
    for index, webhook in enumerate(config.webhooks or []):
        path = WEBHOOK_PATHS[webhook.name.split(".")[0]]
        url = {"url": f"https://127.0.0.1:{port}/{path}"}
        patch.append({"op": "replace", "path": f"/webhooks/{index}/clientConfig", "value": url})
    admission.patch_validating_webhook_configuration("muster-operator", patch)
    env |= webhook_env(
        port, secret="muster-operator-webhook-tls", secret_namespace=namespace,
        configuration="muster-operator",
    )  # fmt: skip
    operator = OperatorProcess(env, tmp_path / "operator")
    operator.start()
    try:
        wait_until(
            lambda: ca_bundle(admission, "muster-operator"), what="the CA bundle", timeout=60
        )
        secret = core_api.read_namespaced_secret("muster-operator-webhook-tls", namespace)
        assert set(secret.data or {}) >= {"tls.crt", "tls.key", "ca.crt"}
        bad = {"cron": ["0 9 * * 1-7"], "workflow": {"type": "W", "taskQueue": "q"}}
        with pytest.raises(ApiException, match="Temporal reads day of week '1-7'"):
            Resources(
                client.CustomObjectsApi(api_client), namespace, "schedules", "Schedule"
            ).create("refused", bad)
        schedules = Resources(
            client.CustomObjectsApi(api_client), namespace, "schedules", "Schedule"
        )
        schedules.create("rbac-proof", {
            "cron": ["0 6 * * *"], "timeZone": "UTC",
            "workflow": {"type": "OperatorTestNoop", "taskQueue": f"rbac-{uuid.uuid4().hex[:6]}"},
        })  # fmt: skip
        schedules.wait_condition("rbac-proof", "Ready", "True")
        policies = Resources(
            client.CustomObjectsApi(api_client), namespace, "approvalpolicies", "ApprovalPolicy"
        )
        policies.create("rbac-policy", {
            "appliesTo": {"kinds": ["order"]},
            "approvers": {"users": ["alice"]},
        })  # fmt: skip

        def published() -> bool:
            try:
                config_map = core_api.read_namespaced_config_map(
                    "muster-approval-policies", namespace
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return any("rbac-policy" in key for key in (config_map.data or {}))

        wait_until(published, what="the policy snapshot in the ConfigMap", timeout=60)
        # Deleting goes through the finalizer, which the operator removes with its own rights.
        schedules.api.delete_namespaced_custom_object(
            "muster.io", "v1alpha1", namespace, "schedules", "rbac-proof"
        )

        def gone() -> bool:
            try:
                schedules.get("rbac-proof")
            except ApiException as exc:
                return bool(exc.status == 404)
            return False

        wait_until(gone, what="the Schedule's finalizer to be removed", timeout=60)
        log = operator.tail()
        refused = [line for line in log.splitlines() if FORBIDDEN.search(line)]
        assert not refused, log
    finally:
        operator.stop()


def test_a_refusal_is_told_from_digits_that_happen_to_read_403() -> None:
    refusals = [
        "Request attempt #1/9 failed; will retry: GET https://127.0.0.1:6443/apis/muster.io"
        "/v1alpha1/schedules -> APIForbiddenError('schedules is forbidden', {'code': 403}, "
        "status=403)",
        "(403)\nReason: Forbidden\nHTTP response headers: ...",
        '{"kind":"Status","status":"Failure","reason":"Forbidden","code":403}',
    ]
    innocent = [
        "2026-12-07 14:19:33,841 INFO    muster_operator.webhook: admission webhook listening on "
        "https://127.0.0.1:40363",
        "2026-12-07 14:19:33,403 INFO    kopf.objects: Handler 'reconcile' succeeded.",
        '127.0.0.1 [07/Dec/2026:14:19:33 +0000] "POST /validate-schedule?timeout=10s HTTP/1.1" '
        '200 403 "-" "kube-apiserver-admission"',
    ]
    assert all(FORBIDDEN.search(line) for line in refusals)
    assert not any(FORBIDDEN.search(line) for line in innocent)
