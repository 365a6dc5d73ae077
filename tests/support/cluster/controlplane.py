"""A real control plane on loopback: etcd, kube-apiserver and kube-controller-manager, the way
controller-runtime's envtest runs one, plus the controller-manager (see `start`).

Everything binds 127.0.0.1 on free ports; nothing listens on the default ports. Processes are
recorded (see `record`) before anything else can fail, and stopped in reverse: the
controller-manager, then kube-apiserver with a short deadline before SIGKILL (it can take a
minute to exit on SIGTERM), then etcd. Stopping etcd first would hang kube-apiserver's shutdown.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from tests.support.cluster import pki, record
from tests.support.cluster.binaries import Binaries

# The admission chain a kubeadm-style cluster runs (the defaults of this version plus
# NodeRestriction), listed explicitly so a future change of defaults does not change the tests.
ADMISSION_PLUGINS: Final = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "NodeRestriction",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)
APISERVER_STOP_TIMEOUT: Final = 5.0
READY_TIMEOUT: Final = 90.0


@dataclass(frozen=True)
class ControlPlane:
    directory: Path
    server: str
    kubeconfig: Path
    authority: pki.Authority
    admin: pki.KeyPair

    def ssl_context(self) -> ssl.SSLContext:
        """Trusts the cluster CA only and presents the admin (system:masters) certificate."""
        context = ssl.create_default_context(cafile=str(self.authority.ca_file))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(
    directory: Path,
    binaries: Binaries,
    *,
    owner: int | None,
    advertise_address: str = "127.0.0.1",
    apiserver_args: Sequence[str] = (),
    controller_manager: bool = True,
) -> ControlPlane:
    """Start etcd, kube-apiserver and kube-controller-manager; return once all are ready.

    Why the controller-manager: without it no namespace gets its `default` ServiceAccount (so the
    ServiceAccount admission plugin refuses Pods), Deployments and Jobs create no Pods, and
    deleted namespaces never finish terminating. Running it keeps the shipped install and the
    README's commands unchanged, and a node fixture needs it anyway. Pods stay Pending: there is
    no scheduler and no node.
    """
    rec = record.Record.create(directory, owner=owner)
    authority = pki.new_authority(directory / "pki")
    serving = authority.serving(
        "apiserver",
        dns_names=pki.SERVING_NAMES,
        ip_addresses=("127.0.0.1", pki.KUBERNETES_SERVICE_IP, advertise_address),
    )
    admin = authority.client("admin", "envoy-injector-test-admin", groups=("system:masters",))
    kcm = authority.client("controller-manager", "system:kube-controller-manager")
    kubelet_client = authority.client(
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        groups=("kubeadm:cluster-admins",),
    )
    sa = pki.service_account_key(authority.directory)

    etcd_client, etcd_peer = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_client}"
    rec.spawn(
        "etcd",
        [
            str(binaries.etcd),
            "--name=test",
            f"--data-dir={directory / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=test=http://127.0.0.1:{etcd_peer}",
            # A throwaway store: durability across power loss buys nothing and costs fsyncs.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
        stop_timeout=10,
    )
    _wait(lambda: _etcd_healthy(etcd_url), "etcd", directory)

    port = free_port()
    server = f"https://127.0.0.1:{port}"
    rec.put("server", server)
    rec.spawn(
        "kube-apiserver",
        [
            str(binaries.kube("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--advertise-address={advertise_address}",
            f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={authority.ca_file}",
            "--authorization-mode=Node,RBAC",
            f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
            f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            "--allow-privileged=true",
            # For a node added later (`kubectl logs`/`exec` go from here to its kubelet).
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            f"--kubelet-certificate-authority={authority.ca_file}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            *apiserver_args,
        ],
        stop_timeout=APISERVER_STOP_TIMEOUT,
    )
    kubeconfig = write_kubeconfig(directory / "kubeconfig", server, authority.ca_file, admin)
    plane = ControlPlane(directory, server, kubeconfig, authority, admin)
    _wait(lambda: _ok(plane, "/readyz"), "kube-apiserver /readyz", directory)

    rec.put("kubeconfig", str(kubeconfig))
    if not controller_manager:
        return plane
    kcm_kubeconfig = write_kubeconfig(
        directory / "controller-manager.kubeconfig", server, authority.ca_file, kcm
    )
    kcm_port = free_port()
    rec.spawn(
        "kube-controller-manager",
        [
            str(binaries.kube("kube-controller-manager")),
            f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={authority.ca_file}",
            f"--cluster-signing-cert-file={authority.ca_file}",
            f"--cluster-signing-key-file={authority.directory / 'ca.key'}",
            f"--service-cluster-ip-range={pki.SERVICE_CIDR}",
            # Its default, /usr/libexec/kubernetes/..., would be created on the host and left there.
            f"--flex-volume-plugin-dir={directory / 'flex-volume'}",
            "--profiling=false",
        ],
        stop_timeout=5,
    )
    _wait(lambda: _default_service_account(plane), "the `default` ServiceAccount", directory)
    return plane


def write_kubeconfig(path: Path, server: str, ca: Path, client: pki.KeyPair) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": "test",
                "user": {
                    "client-certificate": str(client.cert),
                    "client-key": str(client.key),
                },
            }
        ],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _wait(check: object, what: str, directory: Path) -> None:
    assert callable(check)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(
        f"{what} not ready within {READY_TIMEOUT:.0f} s; logs in {directory / 'logs'}"
    )


def _etcd_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(json.load(response).get("health") == "true")
    except (OSError, ValueError):
        return False


def _ok(plane: ControlPlane, path: str) -> bool:
    try:
        with urllib.request.urlopen(
            plane.server + path, timeout=5, context=plane.ssl_context()
        ) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _default_service_account(plane: ControlPlane) -> bool:
    return _ok(plane, "/api/v1/namespaces/default/serviceaccounts/default")


def environ(plane: ControlPlane) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
