"""One real node on top of the test control plane: containerd, the kubelet, kube-proxy and
kube-scheduler, with their certificates, the CNI network and the images built here.

    plane = controlplane.start(directory, found, owner=...,
                               advertise_address=node.APISERVER_ADDRESS,
                               apiserver_args=node.APISERVER_ARGS)
    node.start(plane, found, archives)   # returns once the Node is Ready, images loaded

Settings this machine kind needs, each seen failing without it: `failCgroupV1: false` and
`cgroupDriver: cgroupfs` (cgroup v1, no systemd as PID 1); a node IP that is not 127.x; Pods'
cgroups under one parent of ours (`cgroupRoot`) so teardown finds every container process. The
kubelet and kube-proxy change no host setting the record does not restore: kube-proxy's
conntrack and localhost-NodePort options are the ones that touch no sysctl, and the kernel
tunables the kubelet sets are recorded and restored.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from tests.support.cluster import containerd, controlplane, host, network, pki, record
from tests.support.cluster.binaries import Binaries

NODE_NAME: Final = "envoy-injector-node"
NODE_BINARIES: Final = ("kubelet", "kube-scheduler", "kube-proxy")
CGROUP_PARENT: Final = "envoy-injector-node"
READY_TIMEOUT: Final = 120.0
# The kernel settings kubelet's container manager writes when they differ (and ip_forward, which
# the bridge plugin turns on); restored at teardown.
SYSCTLS: Final = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
)
# Host directories the kubelet, containerd and CNI create whatever their configuration says.
HOST_PATHS: Final = (
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/run/containerd",
    "/run/netns",
    "/var/run/netns",
    "/run/kubernetes",
    "/usr/libexec/kubernetes",
)
# The API server listens on the node IP too (Pods reach it through the `kubernetes` Service);
# the INPUT guard in network.py keeps its port closed on every link but lo and the bridge.
APISERVER_ADDRESS: Final = network.NODE_IP
APISERVER_ARGS: Final = ("--bind-address=0.0.0.0",)


@dataclass(frozen=True)
class Node:
    name: str
    ip: str
    directory: Path
    containerd_socket: Path


def kubelet_config(
    directory: Path, ca: Path, serving: pki.KeyPair, sock: Path
) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.NODE_IP,
        "port": controlplane.free_port(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": controlplane.free_port(),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(serving.cert),
        "tlsPrivateKeyFile": str(serving.key),
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_PARENT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{sock}",
        "podLogsDir": str(directory / "pod-logs"),
        "volumePluginDir": str(directory / "volume-plugins"),
        "resolvConf": "",
        "clusterDomain": "cluster.local",
        # Images cannot be pulled again here: never collect them, never evict for disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "shutdownGracePeriod": "0s",
        "logging": {"format": "text"},
    }


def proxy_config(kubeconfig: Path, service_cidr: str) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{controlplane.free_port()}",
        "metricsBindAddress": f"127.0.0.1:{controlplane.free_port()}",
        "mode": "iptables",
        "clusterCIDR": network.POD_CIDR,
        # Zeros leave the host's conntrack settings alone; localhostNodePorts would set
        # route_localnet=1.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        "nodePortAddresses": [f"{network.NODE_IP}/32"],
        "detectLocalMode": "ClusterCIDR",
        "logging": {"format": "text"},
    }


def start(plane: controlplane.ControlPlane, binaries: Binaries, archives: list[Path]) -> Node:
    """Bring the node up in the control plane's directory and record, with the images in
    `archives` loaded; return once the Node is Ready."""
    rec = record.Record(plane.directory)
    _claim(rec)
    directory = plane.directory / "node"
    directory.mkdir(parents=True, exist_ok=True)
    for key in SYSCTLS:
        host.remember_sysctl(rec, key)
    for path in HOST_PATHS:
        host.remember_path(rec, Path(path))
    network.remember_kube_chains(rec)
    port = int(plane.server.rsplit(":", 1)[1])
    network.add_guards(rec, pki.SERVICE_CIDR, port)
    network.add_node_address(rec)
    network.remember_bridge(rec)
    network.remember_netns(rec)
    host.make_cgroup(rec, CGROUP_PARENT)

    cni_dir = directory / "cni"
    cni_dir.mkdir(exist_ok=True)
    (cni_dir / "10-envoy-injector-node.conflist").write_text(
        json.dumps(network.conflist(directory, directory / "cni-leases"), indent=2)
    )
    sock = containerd.start(rec, directory / "containerd", cni_dir)
    containerd.import_images(sock, archives)

    authority = plane.authority
    kubelet_client = authority.client(
        "kubelet-client", f"system:node:{NODE_NAME}", groups=("system:nodes",)
    )
    kubelet_serving = authority.serving(
        "kubelet-serving", dns_names=(NODE_NAME,), ip_addresses=(network.NODE_IP,)
    )
    proxy_client = authority.client("kube-proxy", "system:kube-proxy")
    scheduler_client = authority.client("kube-scheduler", "system:kube-scheduler")
    kubeconfigs = {
        name: controlplane.write_kubeconfig(
            directory / f"{name}.kubeconfig", plane.server, authority.ca_file, pair
        )
        for name, pair in (
            ("kubelet", kubelet_client),
            ("kube-proxy", proxy_client),
            ("kube-scheduler", scheduler_client),
        )
    }
    kubelet_file = directory / "kubelet.yaml"
    kubelet_file.write_text(
        yaml.safe_dump(kubelet_config(directory, authority.ca_file, kubelet_serving, sock))
    )
    rec.add({"kind": "mounts", "name": str(directory / "kubelet")})
    rec.spawn(
        "kubelet",
        [
            str(binaries.kube("kubelet")),
            f"--config={kubelet_file}",
            f"--kubeconfig={kubeconfigs['kubelet']}",
            f"--root-dir={directory / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={network.NODE_IP}",
        ],
        stop_timeout=10,
    )
    proxy_file = directory / "kube-proxy.yaml"
    proxy_file.write_text(yaml.safe_dump(proxy_config(kubeconfigs["kube-proxy"], pki.SERVICE_CIDR)))
    rec.spawn(
        "kube-proxy",
        [str(binaries.kube("kube-proxy")), f"--config={proxy_file}"],
        stop_timeout=5,
    )
    scheduler = kubeconfigs["kube-scheduler"]
    rec.spawn(
        "kube-scheduler",
        [
            str(binaries.kube("kube-scheduler")),
            f"--kubeconfig={scheduler}",
            f"--authentication-kubeconfig={scheduler}",
            f"--authorization-kubeconfig={scheduler}",
            "--bind-address=127.0.0.1",
            f"--secure-port={controlplane.free_port()}",
            "--leader-elect=false",
        ],
        stop_timeout=5,
    )
    _allow_apiserver_to_kubelet(plane)
    _wait_ready(plane)
    return Node(NODE_NAME, network.NODE_IP, directory, sock)


def _claim(rec: record.Record) -> None:
    """One node per machine: its address, bridge and cgroup names are fixed."""
    for path in sorted(record.clusters_root().glob(f"*/{record.RECORD}")):
        other = record.Record(path.parent)
        if path.parent != rec.directory and other.fact("node") and not other.stale():
            raise RuntimeError(
                f"another node cluster runs on this machine ({path.parent}); stop it first "
                f"(`scripts/cluster down --name {path.parent.name}`, or end its test run)"
            )
    rec.put("node", NODE_NAME)


def _allow_apiserver_to_kubelet(plane: controlplane.ControlPlane) -> None:
    """`kubectl logs`/`exec` go through the kubelet as the API server's kubelet client; bind it to
    the built-in role for that (kubeadm does the same with its own group)."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "envoy-injector-test:apiserver-kubelet-client"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": "kube-apiserver-kubelet-client",
            }
        ],
    }
    request = urllib.request.Request(
        f"{plane.server}/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        data=json.dumps(binding).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30, context=plane.ssl_context()):
        pass


def _wait_ready(plane: controlplane.ControlPlane) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    context = plane.ssl_context()
    while time.monotonic() < deadline:
        if _ready(plane.server, context):
            return
        time.sleep(0.5)
    raise TimeoutError(
        f"node {NODE_NAME} not Ready within {READY_TIMEOUT:.0f} s; "
        f"logs in {plane.directory / 'logs'}"
    )


def _ready(server: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(
            f"{server}/api/v1/nodes/{NODE_NAME}", timeout=5, context=context
        ) as response:
            node = json.load(response)
    except (OSError, urllib.error.URLError, ValueError):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
