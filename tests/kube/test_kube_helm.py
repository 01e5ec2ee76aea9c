"""helm built into ./bin works: ``helm lint`` passes a small chart the test writes and fails a
broken one, ``helm template`` renders values into manifests, and the rendered manifests
pass the real API server's validation (``kubectl apply --dry-run=server``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.kube.support import Run

pytestmark = pytest.mark.kube

CHART_YAML = """\
apiVersion: v2
name: tiny
description: A throw-away chart for the kube test tier
type: application
version: 0.1.0
appVersion: "1.0.0"
"""

VALUES_YAML = """\
# greeting: what the ConfigMap says
greeting: hello
# replicas: how many pods the Deployment runs
replicas: 1
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-greeting
  labels:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
data:
  greeting: {{ .Values.greeting | quote }}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: web
          image: registry.invalid/tiny:1.0.0
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
"""


def make_chart(root: Path, templates: dict[str, str]) -> Path:
    chart = root / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML)
    (chart / "values.yaml").write_text(VALUES_YAML)
    for name, text in templates.items():
        (chart / "templates" / name).write_text(text)
    return chart


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    return make_chart(tmp_path, {"configmap.yaml": CONFIGMAP, "deployment.yaml": DEPLOYMENT})


def test_helm_lint_passes(helm: Run, chart: Path) -> None:
    result = helm("lint", str(chart))
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_helm_lint_reports_a_broken_template(helm: Run, tmp_path: Path) -> None:
    broken = make_chart(tmp_path, {"configmap.yaml": CONFIGMAP.replace("}}\n", "\n", 1)})
    result = helm("lint", str(broken), check=False)
    assert result.returncode != 0
    assert "1 chart(s) failed" in result.stdout + result.stderr
    assert "configmap.yaml" in result.stdout + result.stderr


def test_helm_template_renders_values(helm: Run, chart: Path) -> None:
    rendered = helm(
        "template", "demo", str(chart), "--namespace", "ns1", "--set", "greeting=hi there"
    ).stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    assert docs["ConfigMap"]["metadata"]["name"] == "demo-greeting"
    assert docs["ConfigMap"]["data"] == {"greeting": "hi there"}
    assert docs["Deployment"]["spec"]["replicas"] == 1


def test_rendered_manifests_pass_server_side_validation(
    helm: Run, kubectl: Run, chart: Path, namespace: str
) -> None:
    rendered = helm("template", "demo", str(chart), "--namespace", namespace).stdout
    applied = kubectl(
        "apply", "--dry-run=server", "--namespace", namespace, "-f", "-", input=rendered
    )
    assert "configmap/demo-greeting created (server dry run)" in applied.stdout
    assert "deployment.apps/demo-web created (server dry run)" in applied.stdout

    # The server, not the client, catches what the schema forbids.
    invalid = rendered.replace("replicas: 1", "replicas: -1")
    rejected = kubectl(
        "apply", "--dry-run=server", "--namespace", namespace, "-f", "-",
        input=invalid, check=False,
    )  # fmt: skip
    assert rejected.returncode != 0
    assert "spec.replicas: Invalid value: -1" in rejected.stderr
