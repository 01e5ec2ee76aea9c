"""Configuration of the local node's components, as pure functions of a few settings.

containerd, the CNI network, the kubelet and kube-proxy get their files from here, and the
cluster's add-ons (CoreDNS, the NetworkPolicy agent, a few RBAC bindings) their manifests.
Nothing here touches the machine, so the unit tests check every setting that matters
(``restrict_oom_score_adj``, ``failCgroupV1``, the cgroup driver...) without root.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muster_dev.kube import KUBELET_CLIENT_USER, SERVICE_CLUSTER_IP_RANGE
from muster_dev.node import CGROUP_PARENT, CLUSTER_DOMAIN, NODE_NAME

COREDNS_PORT = 1053
"""CoreDNS listens above 1024 so that it runs as non-root with no capability at all."""
NETPOL_QUEUE = 98
SYSTEM_NAMESPACE = "kube-system"
# A pod's IP is only in the API once the kubelet reported it; the agent picks it up then.
ADDON_LABEL = "muster.io/node-addon"


@dataclass(frozen=True)
class NodeImages:
    """The images the node brings along (see :mod:`muster_dev.images`)."""

    pause: str
    coredns: str
    netpol: str


@dataclass(frozen=True)
class NodePaths:
    """Where the node's files are, as its processes see them (inside its mount namespace)."""

    workdir: Path

    @property
    def containerd_root(self) -> Path:
        """containerd's persistent state (images, snapshots): removed with the node."""
        return self.workdir / "containerd"

    @property
    def containerd_config(self) -> Path:
        return self.workdir / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.workdir / "cni"

    @property
    def kubelet_config(self) -> Path:
        return self.workdir / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.workdir / "kube-proxy.yaml"

    @property
    def resolv_conf(self) -> Path:
        return self.workdir / "resolv.conf"


# containerd's state (sockets, shim bundles) is under /run, which is the node's own tmpfs.
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"


def dns_service_ip(service_cidr: str = SERVICE_CLUSTER_IP_RANGE) -> str:
    """The cluster DNS Service's IP: the tenth address of the Service range, as kubeadm does."""
    return str(ipaddress.ip_network(service_cidr)[10])


def containerd_config(paths: NodePaths, images: NodeImages) -> str:
    """containerd 1.6's config (version 2 format)."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{paths.containerd_root / "root"}"
state = "/run/containerd"
oom_score = 0

[grpc]
  address = "{CONTAINERD_SOCKET}"

[ttrpc]
  address = "{CONTAINERD_SOCKET}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.containerd_root / "opt"}"

[{cri}]
  sandbox_image = "{images.pause}"
  # Some virtual machines refuse to lower oom_score_adj, even to root: there, without this,
  # every pod fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  # runc, not crun: crun refuses hosts with hybrid (v1 + v2) cgroups.
  BinaryName = "runc"
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{paths.cni_conf_dir}"
  max_conf_num = 1
"""


def cni_config(pod_cidr: str) -> dict[str, Any]:
    """The pod network: one Linux bridge, addresses from ``pod_cidr``, traffic that leaves
    the pod network masqueraded behind the node's address."""
    return {
        "cniVersion": "1.0.0",
        "name": "muster",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                # A pod reaching itself through its own Service comes back over the bridge.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    # On the node's /run tmpfs: the allocations go with the node.
                    "dataDir": "/run/cni-ipam",
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths: NodePaths, *, ca: Path, cert: Path, key: Path) -> dict[str, Any]:
    """The kubelet's KubeletConfiguration."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Hosts with cgroup v1 (or hybrid) hierarchies still run the kubelet with this.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_PARENT}",
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "clusterDNS": [dns_service_ip()],
        "clusterDomain": CLUSTER_DOMAIN,
        # Pods with dnsPolicy Default get this (no upstream: nothing resolves outside).
        "resolvConf": str(paths.resolv_conf),
        "failSwapOn": False,
        # Lowering oom_score_adj is refused here; 0 leaves it as it is.
        "oomScoreAdj": 0,
        "protectKernelDefaults": False,
        # Images cannot be pulled again, so image garbage collection must never remove
        # one; and a full development disk should not evict the pods.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        # A changed ConfigMap reaches the pods that mount it on the kubelet's next sync of
        # each pod: every minute by default, every 10 s here, so an ApprovalPolicy applied
        # on the development node is served by the gateway seconds after it is Ready.
        "syncFrequency": "10s",
        "configMapAndSecretChangeDetectionStrategy": "Watch",
        "maxPods": 110,
        "registerNode": True,
        "staticPodPath": "",
        "podPidsLimit": 4096,
    }


def kube_proxy_config(kubeconfig: Path, *, mode: str, cluster_cidr: str) -> dict[str, Any]:
    """kube-proxy's KubeProxyConfiguration (iptables or nftables mode)."""
    if mode not in ("iptables", "nftables"):
        raise ValueError(f"kube-proxy mode {mode!r}: use 'iptables' or 'nftables'")
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": mode,
        "clusterCIDR": cluster_cidr,
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "oomScoreAdj": 0,
        # The conntrack table's size and timeouts are machine-wide (or need the host's
        # namespace): 0 leaves them as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def to_yaml(value: object) -> str:
    """JSON, which every YAML reader reads."""
    return json.dumps(value, indent=2) + "\n"


# --- add-ons -----------------------------------------------------------------------------


def _labels(app: str) -> dict[str, str]:
    return {"k8s-app": app, ADDON_LABEL: "true"}


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def rbac_manifests() -> list[dict[str, Any]]:
    """What the API server's own client needs on the kubelet (logs, exec, port-forward)."""
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": "muster:apiserver-kubelet-client",
                "labels": {ADDON_LABEL: "true"},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": KUBELET_CLIENT_USER,
                }
            ],
        }
    ]


def coredns_manifests(image: str) -> list[dict[str, Any]]:
    """CoreDNS as a Deployment behind the ``kube-dns`` Service, like kubeadm installs it,
    but answering only for the cluster: there is no upstream to forward to."""
    corefile = f""".:{COREDNS_PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""
    labels = _labels("kube-dns")
    meta = {"namespace": SYSTEM_NAMESPACE, "labels": labels}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", **meta},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "muster:coredns", "labels": labels},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "muster:coredns", "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "muster:coredns",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "coredns", "namespace": SYSTEM_NAMESPACE}
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", **meta},
            "data": {"Corefile": corefile},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", **meta},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "securityContext": {
                            "runAsUser": 65532,
                            "runAsGroup": 65532,
                            "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                        "containers": [
                            {
                                "name": "coredns",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {
                                        "name": "dns",
                                        "containerPort": COREDNS_PORT,
                                        "protocol": "UDP",
                                    },
                                    {
                                        "name": "dns-tcp",
                                        "containerPort": COREDNS_PORT,
                                        "protocol": "TCP",
                                    },
                                ],
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "40Mi"},
                                    "limits": {"memory": "170Mi"},
                                },
                                "livenessProbe": {
                                    "httpGet": {"path": "/health", "port": 8080},
                                    "periodSeconds": 10,
                                },
                                "readinessProbe": {
                                    "httpGet": {"path": "/ready", "port": 8181},
                                    "periodSeconds": 1,
                                },
                                "securityContext": _restricted_container(),
                                "volumeMounts": [
                                    {
                                        "name": "config",
                                        "mountPath": "/etc/coredns",
                                        "readOnly": True,
                                    }
                                ],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", **meta},
            "spec": {
                "selector": {"k8s-app": "kube-dns"},
                "clusterIP": dns_service_ip(),
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": COREDNS_PORT, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": COREDNS_PORT, "protocol": "TCP"},
                ],
            },
        },
    ]


def netpol_manifests(image: str) -> list[dict[str, Any]]:
    """kube-network-policies as a host-network DaemonSet, as kind runs it (its install.yaml),
    without NRI, which containerd 1.6 lacks."""
    labels = _labels("kube-network-policies")
    meta = {"namespace": SYSTEM_NAMESPACE, "labels": labels}
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "kube-network-policies", **meta},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "muster:kube-network-policies", "labels": labels},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "namespaces", "nodes"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["networking.k8s.io"],
                    "resources": ["networkpolicies"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "muster:kube-network-policies", "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "muster:kube-network-policies",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": "kube-network-policies",
                    "namespace": SYSTEM_NAMESPACE,
                }
            ],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "kube-network-policies", **meta},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "kube-network-policies"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "hostNetwork": True,
                        "serviceAccountName": "kube-network-policies",
                        "priorityClassName": "system-node-critical",
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [
                            {
                                "name": "kube-network-policies",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "args": [
                                    f"--hostname-override={NODE_NAME}",
                                    "--disable-nri",
                                    f"--nfqueue-id={NETPOL_QUEUE}",
                                    "--metrics-bind-address=127.0.0.1:9080",
                                    "--v=2",
                                ],
                                "resources": {"requests": {"cpu": "50m", "memory": "50Mi"}},
                                # nftables rules and an nfqueue in the node's network namespace.
                                "securityContext": {
                                    "privileged": True,
                                    "capabilities": {"add": ["NET_ADMIN"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]
