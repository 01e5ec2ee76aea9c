"""Monitoring Muster on the local node as users run it: the Prometheus Operator, its config
reloader and Prometheus (each built from its Go module by ``make monitoring-tools``;
Debian's Prometheus has no Kubernetes service discovery), each as an image on Muster's base
(no registry can be pulled from), installed with the operator's own CRDs and RBAC examples
from the same module version."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.chart.images import BASE_IMAGE, buildah, image_exists
from tests.cluster.support import BIN, Manifest, apply
from tests.helpers import REPO
from tests.kube.support import Run

PROMOP_GO_MOD = REPO / "infra" / "promop" / "go.mod"
PROMETHEUS = BIN / "prometheus-k8s"
SELECT = "muster.io/cluster-test-prometheus"
"""The label the test's Prometheus selects monitors and rules by (the chart's
``monitoring.*.labels``)."""


def operator_version() -> str:
    """The Prometheus Operator version infra/promop/go.mod pins (what the Makefile builds)."""
    found = re.search(
        r"^\s*github\.com/prometheus-operator/prometheus-operator v([0-9.]+)\b",
        PROMOP_GO_MOD.read_text(),
        re.MULTILINE,
    )
    assert found, f"{PROMOP_GO_MOD} pins no prometheus-operator"
    return found.group(1)


def examples() -> Path:
    """The operator module's CRDs and RBAC examples (``make monitoring-tools``)."""
    folder = BIN / "schemas" / f"prometheus-operator-v{operator_version()}"
    if not (folder / ".done").exists():
        raise RuntimeError(f"{folder} is missing: run `make monitoring-tools`")
    return folder


def prometheus_version() -> str:
    """The Prometheus ``make monitoring-tools`` built, e.g. ``3.13.1``."""
    if not PROMETHEUS.exists():
        raise RuntimeError(f"{PROMETHEUS} is missing: run `make monitoring-tools`")
    out = subprocess.run([str(PROMETHEUS), "--version"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    found = re.search(r"version (\d+\.\d+\.\d+)", out)
    assert found, out
    return found.group(1)


@dataclass(frozen=True)
class Images:
    operator: str
    reloader: str
    prometheus: str

    @property
    def references(self) -> list[str]:
        return [self.operator, self.reloader, self.prometheus]


def _image(reference: str, files: list[tuple[Path, str]], entrypoint: list[str]) -> None:
    """``reference``: Muster's base with ``files`` copied in (source, destination)."""
    if image_exists(reference):
        return
    container = buildah("from", "--pull-never", BASE_IMAGE).stdout.strip()
    try:
        for source, dest in files:
            buildah("copy", "--chmod", "0755", container, str(source), dest, timeout=300)
        buildah("config", "--entrypoint", json.dumps(entrypoint), "--cmd", "",
                "--user", "65534:65534", "--workingdir", "/tmp", container)  # fmt: skip
        buildah("commit", "--quiet", container, reference, timeout=300)
    finally:
        buildah("rm", container, check=False)


def build_images() -> Images:
    """The three images (built unless present), each a static Go binary on the base."""
    version = operator_version()
    images = Images(
        operator=f"localhost/muster-test/prometheus-operator:v{version}",
        reloader=f"localhost/muster-test/prometheus-config-reloader:v{version}",
        prometheus=f"localhost/muster-test/prometheus:v{prometheus_version()}",
    )
    operator = (BIN / "prometheus-operator").resolve()
    reloader = (BIN / "prometheus-config-reloader").resolve()
    for binary in (operator, reloader):
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run `make monitoring-tools`")
    _image(images.operator, [(operator, "/bin/operator")], ["/bin/operator"])
    _image(images.reloader, [(reloader, "/bin/prometheus-config-reloader")],
           ["/bin/prometheus-config-reloader"])  # fmt: skip
    _image(images.prometheus, [(PROMETHEUS.resolve(), "/bin/prometheus")], ["/bin/prometheus"])
    return images


def _load(path: Path) -> Manifest:
    return dict(yaml.safe_load(path.read_text()))


def _security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def install(kubectl: Run, namespace: str, images: Images) -> None:
    """CRDs, the operator and a Prometheus selecting what is labelled ``SELECT=namespace``,
    all in ``namespace`` (made by the caller, enforcing the restricted standard)."""
    folder = examples()
    kubectl("apply", "--server-side", "--force-conflicts", "-f",
            str(folder / "prometheus-operator-crd"), timeout=120)  # fmt: skip
    for crd in ("prometheuses", "podmonitors", "servicemonitors", "prometheusrules"):
        kubectl("wait", "--for=condition=Established", f"crd/{crd}.monitoring.coreos.com",
                "--timeout=60s", timeout=70)  # fmt: skip

    rbac = folder / "rbac"
    manifests: list[Manifest] = []
    for who in ("prometheus-operator", "prometheus"):
        account = _load(rbac / who / f"{who}-service-account.yaml")
        role = _load(rbac / who / f"{who}-cluster-role.yaml")
        binding = _load(rbac / who / f"{who}-cluster-role-binding.yaml")
        # Cluster-scoped names of their own, so nothing else's is touched.
        role["metadata"]["name"] = binding["roleRef"]["name"] = f"{namespace}-{who}"
        binding["metadata"]["name"] = f"{namespace}-{who}"
        for subject in binding["subjects"]:
            subject["namespace"] = namespace
        account["metadata"]["namespace"] = namespace
        manifests += [account, role, binding]

    deployment = _load(rbac / "prometheus-operator" / "prometheus-operator-deployment.yaml")
    deployment["metadata"]["namespace"] = namespace
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    container["image"] = images.operator
    container["imagePullPolicy"] = "Never"
    # The example's arguments, minus the kubelet Service (nothing here scrapes kubelets),
    # with the reloader image built here.
    container["args"] = [
        f"--prometheus-config-reloader={images.reloader}",
        "--watch-referenced-objects-in-all-namespaces=true",
        "--disable-unmanaged-prometheus-configuration=true",
    ]
    container["securityContext"] = _security()
    pod.pop("nodeSelector", None)
    manifests.append(deployment)

    manifests.append({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "muster", "namespace": namespace},
        "spec": {
            "image": images.prometheus,
            "version": images.prometheus.rpartition(":")[2],
            "imagePullPolicy": "Never",
            "serviceAccountName": "prometheus",
            "replicas": 1,
            "scrapeInterval": "5s",
            "evaluationInterval": "5s",
            "podMonitorSelector": {"matchLabels": {SELECT: namespace}},
            "podMonitorNamespaceSelector": {},
            "serviceMonitorSelector": {"matchLabels": {SELECT: namespace}},
            "serviceMonitorNamespaceSelector": {},
            "ruleSelector": {"matchLabels": {SELECT: namespace}},
            "ruleNamespaceSelector": {},
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                "fsGroup": 65534, "seccompProfile": {"type": "RuntimeDefault"},
            },
            "resources": {"requests": {"cpu": "50m", "memory": "200Mi"},
                          "limits": {"memory": "1Gi"}},
        },
    })  # fmt: skip
    apply(kubectl, namespace, *manifests)


def uninstall(kubectl: Run, namespace: str) -> None:
    """What :func:`install` made outside the namespace (its ClusterRoles and bindings) and
    the namespace itself; the CRDs stay (other releases may use them)."""
    for who in ("prometheus-operator", "prometheus"):
        kubectl("delete", "clusterrolebinding,clusterrole", f"{namespace}-{who}",
                "--ignore-not-found", check=False)  # fmt: skip
    kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False)
