"""Pods really run on the local node: a locally built image, imported into containerd with no
registry, runs under the ``restricted`` Pod Security Standard with the chart's security
settings (non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp);
``kubectl logs`` and ``kubectl exec`` reach it through the kubelet; the namespace's
enforcement is real (a pod without those settings is refused); and importing an image the
node already holds only gives it the new name, under which a pod then runs."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.conftest import NamespaceFactory
from tests.cluster.support import (
    BASE_IMAGE,
    RUN_AS,
    ClusterHandle,
    apply,
    import_images,
    restricted_pod,
    wait_ready,
)
from tests.kube.support import Run, status_message

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# The process reports its own identity and confinement, from inside.
CONFINEMENT = """
import json, os, time
try:
    open("/probe", "w")
    read_only = False
except OSError:
    read_only = True
lines = open("/proc/self/status").read().splitlines()
status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
print(json.dumps({"token": "TOKEN", "uid": os.getuid(), "root_fs_read_only": read_only,
                  "cap_eff": status["CapEff"].strip(), "seccomp": status["Seccomp"].strip()}),
      flush=True)
time.sleep(3600)
"""


def test_restricted_pod_from_a_local_image_runs(
    node_kubectl: Run, node_core: client.CoreV1Api, node_namespace: NamespaceFactory
) -> None:
    ns = node_namespace(restricted=True)
    token = uuid.uuid4().hex
    script = CONFINEMENT.replace("TOKEN", token)
    apply(node_kubectl, ns, restricted_pod("confined", ["python3", "-c", script]))
    wait_ready(node_kubectl, ns, "confined")

    pod = node_core.read_namespaced_pod("confined", ns)
    assert pod.status is not None
    assert pod.spec is not None
    assert pod.status.phase == "Running"
    assert pod.spec.containers[0].image == BASE_IMAGE
    (status,) = pod.status.container_statuses or []
    assert status.ready, status
    assert status.image_id, status

    logs = node_kubectl("logs", "-n", ns, "confined").stdout.strip().splitlines()
    report = json.loads(logs[-1])
    assert report == {
        "token": token,
        "uid": RUN_AS,
        "root_fs_read_only": True,
        "cap_eff": "0000000000000000",
        "seccomp": "2",  # SECCOMP_MODE_FILTER: the runtime's default profile is loaded
    }


def test_exec_runs_in_the_pod_and_returns_its_exit_status(
    node_kubectl: Run, node_namespace: NamespaceFactory
) -> None:
    ns = node_namespace(restricted=True)
    apply(node_kubectl, ns, restricted_pod("shell", ["sleep", "infinity"]))
    wait_ready(node_kubectl, ns, "shell")

    out = node_kubectl(
        "exec",
        "-n",
        ns,
        "shell",
        "--",
        "python3",
        "-c",
        "import os; print(os.getuid(), os.uname().nodename)",
    )
    assert out.stdout.split() == [str(RUN_AS), "shell"]
    failed = node_kubectl("exec", "-n", ns, "shell", "--", "sh", "-c", "exit 7", check=False)
    assert failed.returncode == 7, failed.stderr


def test_restricted_namespace_refuses_a_pod_without_the_settings(
    node_core: client.CoreV1Api, node_namespace: NamespaceFactory
) -> None:
    ns = node_namespace(restricted=True)
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "loose"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": BASE_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "1"],
                }
            ]
        },
    }
    with pytest.raises(ApiException) as refused:
        node_core.create_namespaced_pod(ns, pod)  # type: ignore[arg-type]
    assert refused.value.status == 403
    message = status_message(refused.value)
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "runAsNonRoot" in message
    assert "seccompProfile" in message


def test_an_image_the_node_holds_is_named_not_imported_again(
    cluster: ClusterHandle, node_kubectl: Run, node_namespace: NamespaceFactory
) -> None:
    # The base image came in with the node; skaffold imports its builds under a tag of its
    # own, and an image the node holds under another name must not be read again.
    again = f"localhost/muster-base:again-{uuid.uuid4().hex[:8]}"
    said = import_images(cluster, BASE_IMAGE, "--tag", again)
    assert f"{BASE_IMAGE}: the node holds it as " in said, said
    ns = node_namespace(restricted=True)
    apply(node_kubectl, ns, restricted_pod("renamed", ["sleep", "3600"], image=again))
    # Ready under pullPolicy Never: containerd's CRI knows the image by its new name.
    wait_ready(node_kubectl, ns, "renamed")
