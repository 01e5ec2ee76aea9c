"""The local node's configuration builders and image writer, with no root and no node.

Covers the settings the node cannot run without (containerd's ``restrict_oom_score_adj``,
runc, the kubelet's cgroup v1 and cgroupfs settings, kube-proxy leaving machine-wide
conntrack settings alone), the add-ons' manifests (CoreDNS restricted and non-root), the
OCI archives written for single-binary images (a layout ``ctr images import`` reads, with
reproducible digests), and the link addresses and DNS packets of the node module.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import struct
import tarfile
import threading
import tomllib
from pathlib import Path

import pytest

from muster_dev import cluster, nodeconfig
from muster_dev.images import (
    CONTAINERD_NAME,
    BinaryImage,
    ImageError,
    binary_image_archive,
)
from muster_dev.node import (
    KUBELET_SYSCTLS,
    NodeAddresses,
    NodeError,
    dns_query,
)

PATHS = nodeconfig.NodePaths(Path("/srv/node"))
IMAGES = nodeconfig.NodeImages(pause="p:1", coredns="c:1", netpol="n:1")


def test_containerd_config_has_the_settings_the_node_needs() -> None:
    config = tomllib.loads(nodeconfig.containerd_config(PATHS, IMAGES))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == "p:1"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {"BinaryName": "runc", "SystemdCgroup": False}
    assert cri["cni"]["conf_dir"] == "/srv/node/cni"
    # Its state is on the node's own /run; its images under the node's folder.
    assert config["state"] == "/run/containerd"
    assert config["root"].startswith("/srv/node/")


def test_kubelet_config_runs_on_cgroup_v1_with_cgroupfs_under_its_own_parent() -> None:
    config = nodeconfig.kubelet_config(
        PATHS, ca=Path("/ca.crt"), cert=Path("/k.crt"), key=Path("/k.key")
    )
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == "/muster-node"
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0
    assert config["clusterDNS"] == ["10.0.0.10"]
    # Imported images cannot be pulled again: garbage collection must never remove them.
    assert config["imageGCHighThresholdPercent"] == 100
    # Mounted ConfigMaps (the approval policies) follow within seconds, not a minute.
    assert config["syncFrequency"] == "10s"
    assert config["configMapAndSecretChangeDetectionStrategy"] == "Watch"


def test_kubelet_sysctls_are_what_the_kubelet_wants() -> None:
    # pkg/kubelet/cm: the kubelet rewrites these unless they read so already.
    assert KUBELET_SYSCTLS["vm/overcommit_memory"] == "1"
    assert KUBELET_SYSCTLS["kernel/panic"] == "10"
    assert KUBELET_SYSCTLS["kernel/panic_on_oops"] == "1"


def test_kube_proxy_leaves_machine_wide_conntrack_settings_alone() -> None:
    config = nodeconfig.kube_proxy_config(
        Path("/kp.kubeconfig"), mode="nftables", cluster_cidr="10.244.0.0/24"
    )
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["mode"] == "nftables"
    assert config["hostnameOverride"] == "muster-node"
    with pytest.raises(ValueError, match="ipvs"):
        nodeconfig.kube_proxy_config(Path("/x"), mode="ipvs", cluster_cidr="10.244.0.0/24")


def test_cni_network_is_a_masquerading_bridge() -> None:
    config = nodeconfig.cni_config("10.244.0.0/24")
    bridge = config["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["ipMasq"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]


def test_coredns_runs_restricted_and_answers_only_for_the_cluster() -> None:
    manifests = {m["kind"]: m for m in nodeconfig.coredns_manifests("c:1")}
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["imagePullPolicy"] == "Never"
    corefile = manifests["ConfigMap"]["data"]["Corefile"]
    assert "forward" not in corefile  # nothing leaves the machine
    service = manifests["Service"]["spec"]
    assert service["clusterIP"] == nodeconfig.dns_service_ip() == "10.0.0.10"
    assert {p["targetPort"] for p in service["ports"]} == {nodeconfig.COREDNS_PORT}


def test_netpol_agent_runs_without_nri() -> None:
    daemonset = next(m for m in nodeconfig.netpol_manifests("n:1") if m["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert "--disable-nri" in pod["containers"][0]["args"]


def test_binary_image_archive_is_an_oci_layout_named_for_containerd(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF pretend static binary")
    image = BinaryImage("localhost/muster-node/tool:v1", binary, ["/tool", "-x"], user="65532")
    first = binary_image_archive(image, tmp_path / "a.tar")
    second = binary_image_archive(image, tmp_path / "b.tar")

    with tarfile.open(first) as archive:
        names = set(archive.getnames())
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
        (entry,) = index["manifests"]
        assert entry["annotations"][CONTAINERD_NAME] == "localhost/muster-node/tool:v1"

        def blob(digest: str) -> bytes:
            data = archive.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert data is not None
            content = data.read()
            assert hashlib.sha256(content).hexdigest() == digest.removeprefix("sha256:")
            return content

        manifest = json.loads(blob(entry["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        assert config["config"]["Entrypoint"] == ["/tool", "-x"]
        assert config["config"]["User"] == "65532"
        (layer_ref,) = manifest["layers"]
        assert config["rootfs"]["diff_ids"] == [layer_ref["digest"]]
        with tarfile.open(fileobj=io.BytesIO(blob(layer_ref["digest"]))) as layer:
            member = layer.getmember("tool")
            assert member.mode == 0o755
            content = layer.extractfile(member)
            assert content is not None
            assert content.read() == binary.read_bytes()
    assert "oci-layout" in names
    # Reproducible: the same binary gives the same archive, so digests are stable.
    assert first.read_bytes() == second.read_bytes()


def test_binary_image_archive_names_a_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="make node-tools"):
        binary_image_archive(BinaryImage("x:1", tmp_path / "nope", ["/nope"]), tmp_path / "x.tar")


def test_link_addresses_come_from_the_link_network() -> None:
    addresses = NodeAddresses.from_cidr("198.18.0.0/30")
    assert (addresses.host_ip, addresses.node_ip, addresses.prefix) == (
        "198.18.0.1",
        "198.18.0.2",
        30,
    )
    with pytest.raises(NodeError, match="/30 or larger"):
        NodeAddresses.from_cidr("198.18.0.0/31")
    with pytest.raises(NodeError, match="not an IPv4 network"):
        NodeAddresses.from_cidr("not-a-network")


def test_dns_query_reads_a_real_udp_answer() -> None:
    """dns_query against a UDP server on loopback that answers with a compressed name."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]

    class Redirect(socket.socket):
        def sendto(self, data: bytes, address: object) -> int:  # type: ignore[override]
            return super().sendto(data, ("127.0.0.1", port))

    def answer() -> None:
        query, client = server.recvfrom(512)
        header = struct.pack(">HHHHHH", int.from_bytes(query[:2], "big"), 0x8180, 1, 1, 0, 0)
        record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + socket.inet_aton("10.0.0.1")
        server.sendto(header + query[12:] + record, client)

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        found = dns_query(
            lambda: Redirect(socket.AF_INET, socket.SOCK_DGRAM),
            "10.0.0.10",
            "kubernetes.default.svc.cluster.local",
        )
    finally:
        thread.join(timeout=5)
        server.close()
    assert found == ["10.0.0.1"]


def test_stopping_keeps_only_the_logs(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kubelet.log").write_text("kept")
    (tmp_path / "containerd" / "root").mkdir(parents=True)
    (tmp_path / "containerd" / "root" / "blob").write_text("gone")
    (tmp_path / "kubelet.kubeconfig").write_text("gone")
    (tmp_path / ".muster-cluster").write_text("kept")
    cluster._remove_tree(tmp_path, keep_logs=True)
    kept = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert kept == [".muster-cluster", "logs", "logs/kubelet.log"]


def test_a_folder_that_is_not_a_nodes_is_never_emptied(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    node = cluster.LocalCluster(workdir=tmp_path, binaries=tmp_path)
    with pytest.raises(cluster.ClusterError, match="not empty and not a node's folder"):
        node._prepare_workdir()
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_version_tags_come_from_the_versioned_binaries(tmp_path: Path) -> None:
    (tmp_path / "coredns-v1.15.0").write_text("")
    (tmp_path / "coredns").symlink_to("coredns-v1.15.0")
    assert cluster._version_tag(tmp_path / "coredns") == "v1.15.0"
    assert cluster._version_tag(tmp_path / "missing") == "dev"
