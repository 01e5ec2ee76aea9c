"""The node's network as pods see it: a ClusterIP Service routes to its pod (kube-proxy),
CoreDNS resolves Service names (full and short), pods reach the API server through the
``kubernetes`` Service with their ServiceAccount token (and RBAC still applies), and nothing
beyond the node and the API server is reachable: not another port of the host, not the
world outside the machine."""

from __future__ import annotations

import json
import re
import select
import socket

import pytest
from kubernetes import client

from muster_dev.cluster import ClusterSettings
from muster_dev.node import NodeAddresses
from muster_dev.process import ManagedProcess
from muster_runtime.polling import wait_until
from tests.cluster.conftest import NamespaceFactory
from tests.cluster.support import (
    ClusterHandle,
    apply,
    kubectl_argv,
    service,
    sleeper,
    wait_for_http,
    wait_ready,
    web_server,
)
from tests.helpers import http_get
from tests.kube.support import Run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_cluster_ip_service_routes_to_its_pod_and_dns_names_it(
    node_kubectl: Run, node_core: client.CoreV1Api, node_namespace: NamespaceFactory
) -> None:
    ns = node_namespace(restricted=True)
    apply(node_kubectl, ns, web_server("web"), service("web"), sleeper("client"))
    wait_ready(node_kubectl, ns, "web", "client")
    spec = node_core.read_namespaced_service("web", ns).spec
    assert spec is not None
    cluster_ip = spec.cluster_ip

    # The server answers with its own /etc/hostname: the pod's name.
    by_ip = wait_for_http(node_kubectl, ns, "client", f"http://{cluster_ip}/hostname", ok=True)
    assert by_ip["body"] == "web"

    names = [f"web.{ns}.svc.cluster.local", "web", f"web.{ns}"]
    lookup = node_kubectl("exec", "-n", ns, "client", "--", "python3", "-c", RESOLVE, *names)
    assert json.loads(lookup.stdout) == [cluster_ip] * 3

    by_name = wait_for_http(node_kubectl, ns, "client", "http://web/hostname", ok=True)
    assert by_name["body"] == "web"


RESOLVE = """
import json, socket, sys
print(json.dumps([socket.gethostbyname(name) for name in sys.argv[1:]]))
"""

SELF_REVIEW = """
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
tls = ssl.create_default_context(cafile=sa + "ca.crt")
token = open(sa + "token").read()
env = os.environ
base = "https://%s:%s" % (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"])
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
review = urllib.request.Request(base + "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=json.dumps(body).encode(), headers=headers, method="POST")
user = json.load(urllib.request.urlopen(review, context=tls, timeout=10))["status"]["userInfo"]
try:
    urllib.request.urlopen(urllib.request.Request(base + "/api/v1/secrets", headers=headers),
                           context=tls, timeout=10)
    secrets = 200
except urllib.error.HTTPError as exc:
    secrets = exc.code
print(json.dumps({"host": os.environ["KUBERNETES_SERVICE_HOST"], "user": user["username"],
                  "secrets": secrets}))
"""


def test_pods_reach_the_api_server_with_their_service_account_token(
    node_kubectl: Run, node_namespace: NamespaceFactory
) -> None:
    ns = node_namespace(restricted=True)
    apply(node_kubectl, ns, sleeper("caller"))
    wait_ready(node_kubectl, ns, "caller")
    out = node_kubectl("exec", "-n", ns, "caller", "--", "python3", "-c", SELF_REVIEW)
    assert json.loads(out.stdout) == {
        "host": "10.0.0.1",  # the `kubernetes` Service
        "user": f"system:serviceaccount:{ns}:default",
        "secrets": 403,  # authenticated, and RBAC grants a default account nothing
    }


CONNECT = """
import json, socket, sys
results = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(3)
        try:
            s.connect((host, int(port)))
            results[target] = "connected"
        except OSError as exc:
            results[target] = type(exc).__name__
print(json.dumps(results))
"""


def test_pods_reach_nothing_beyond_the_node_but_the_api_server(
    node_kubectl: Run, node_namespace: NamespaceFactory
) -> None:
    host_ip = NodeAddresses.from_cidr(ClusterSettings().link_cidr).host_ip
    # A service of the host that listens on every address (the kernel completes handshakes
    # for it without an accept, so a connection that got through would show as pending).
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # the point: an address-wide listener
        listener.listen()
        port = listener.getsockname()[1]
        ns = node_namespace(restricted=True)
        apply(node_kubectl, ns, sleeper("prober"))
        wait_ready(node_kubectl, ns, "prober")
        targets = [f"{host_ip}:{port}", "192.0.2.1:80", "1.1.1.1:443", "10.0.0.1:443"]
        out = node_kubectl("exec", "-n", ns, "prober", "--", "python3", "-c", CONNECT, *targets)
        results = json.loads(out.stdout)
        pending, _, _ = select.select([listener], [], [], 0)

    assert results == {
        f"{host_ip}:{port}": "ConnectionRefusedError",  # the node's fence rejects it
        "192.0.2.1:80": "OSError",  # no route out of the node: ENETUNREACH
        "1.1.1.1:443": "OSError",
        "10.0.0.1:443": "connected",  # the API server, through the kubernetes Service
    }, results
    assert not pending


def test_the_host_reaches_pods_by_port_forward_and_node_port(
    cluster: ClusterHandle,
    node_kubectl: Run,
    node_core: client.CoreV1Api,
    node_namespace: NamespaceFactory,
) -> None:
    """What people and the end-to-end tests use: ``kubectl port-forward`` (API server, kubelet,
    containerd's stream server) and a NodePort on the node's address."""
    ns = node_namespace(restricted=True)
    node_port = {**service("web"), "spec": {**service("web")["spec"], "type": "NodePort"}}
    apply(node_kubectl, ns, web_server("web"), node_port)
    wait_ready(node_kubectl, ns, "web")

    forward = ManagedProcess(
        "kubectl port-forward",
        [*kubectl_argv(cluster), "port-forward", "-n", ns, "pod/web", ":8080"],
        env=cluster.env(),
        log_path=cluster.workdir.parent / f"port-forward-{ns}.log",
    )
    forward.start()
    try:
        line = wait_until(
            lambda: re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", forward.tail()),
            what="kubectl port-forward to listen",
            timeout=30,
        )
        url = f"http://127.0.0.1:{line.group(1)}/hostname"
        forwarded = wait_until(
            lambda: http_get(url), what=f"{url} to answer", timeout=30, ignore=(OSError,)
        )
    finally:
        forward.stop(grace=5)
    assert forwarded == (200, "web\n")

    spec = node_core.read_namespaced_service("web", ns).spec
    assert spec is not None
    assert spec.ports is not None
    node_ip = NodeAddresses.from_cidr(ClusterSettings().link_cidr).node_ip
    url = f"http://{node_ip}:{spec.ports[0].node_port}/hostname"
    by_node_port = wait_until(
        lambda: http_get(url), what=f"{url} to answer", timeout=30, ignore=(OSError,)
    )
    assert by_node_port == (200, "web\n")
