"""The whole one-node cluster, in the order a user would want it: binaries, images, control plane,
node, then the injector installed as shipped (`kubectl apply -k manifests/injector`).

`scripts/cluster up` and the node e2e suite both call `up`; each step says what it does and how
long it takes, because the first run builds everything (about 15 minutes on 2 cores) and later
runs take about a minute.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.support import tools
from tests.support.cluster import binaries, controlplane, images, kube, node, packages, record

REPO: Final = Path(__file__).resolve().parents[3]
ALL_BINARIES: Final = (*binaries.CONTROL_PLANE, *node.NODE_BINARIES)
INSTALL_TIMEOUT: Final = 180

Say = Callable[[str], None]


class NeedsRoot(Exception):
    """The node needs root: network namespaces, mounts, cgroups and iptables."""


@dataclass(frozen=True)
class Cluster:
    plane: controlplane.ControlPlane
    node: node.Node
    kubectl: kube.Kubectl

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig


def _built() -> bool:
    return all((binaries.kube_bin() / name).is_file() for name in ALL_BINARIES)


def up(directory: Path, *, owner: int | None, say: Say, install: bool = True) -> Cluster:
    """Bring everything up in `directory`; on failure, undo what was done and re-raise."""
    if os.geteuid() != 0:
        raise NeedsRoot("the node needs root (network namespaces, mounts, cgroups, iptables)")
    started = time.monotonic()

    def step(number: int, text: str) -> None:
        say(f"[{number}/6 {time.monotonic() - started:5.1f} s] {text}")

    step(1, "Kubernetes binaries" + ("" if _built() else ": building (about 10 minutes, once)"))
    packages.ensure(packages.NODE, get=True)
    found = binaries.locate(get=True, names=ALL_BINARIES)
    step(2, "images: envoy-injector (about 3 minutes the first time), envoy, http-echo, pause")
    archives = [images.webhook_image(), *images.node_images()]
    step(3, "control plane: etcd, kube-apiserver, kube-controller-manager (about 10 s)")
    try:
        plane = controlplane.start(
            directory,
            found,
            owner=owner,
            advertise_address=node.APISERVER_ADDRESS,
            apiserver_args=node.APISERVER_ARGS,
        )
    except BaseException:
        record.tear_down(directory)
        raise
    try:
        step(4, "node: containerd, image import, kubelet, kube-proxy, kube-scheduler (about 20 s)")
        running = node.start(plane, found, archives)
        cluster = Cluster(plane, running, kube.Kubectl(str(tools.kubectl()), plane.kubeconfig))
        if install:
            step(5, "kubectl apply -k manifests/injector; waiting for the certificate job")
            install_injector(cluster)
            step(6, "webhook Deployment Available")
        else:
            step(6, "ready (injector not installed)")
    except BaseException:
        record.tear_down(directory)
        raise
    return cluster


def install_injector(cluster: Cluster) -> None:
    """The README's install, unchanged; returns when the webhook Deployment is Available."""
    kubectl = cluster.kubectl
    kubectl("apply", "-k", str(REPO / "manifests" / "injector"), timeout=120)
    timeout = f"--timeout={INSTALL_TIMEOUT}s"
    try:
        kubectl(
            "-n",
            "envoy-injector",
            "wait",
            "--for=condition=Complete",
            "job/envoy-injector-certs",
            timeout,
            timeout=INSTALL_TIMEOUT + 10,
        )
        kubectl(
            "-n",
            "envoy-injector",
            "wait",
            "--for=condition=Available",
            "deployment/envoy-injector",
            timeout,
            timeout=INSTALL_TIMEOUT + 10,
        )
    except kube.KubectlError as error:
        pods = kubectl("-n", "envoy-injector", "get", "pods", "-o", "wide", check=False).stdout
        logs = kubectl(
            "-n", "envoy-injector", "logs", "deployment/envoy-injector", "--tail=5", check=False
        )
        raise RuntimeError(
            f"the injector did not become Available: {error}\n{pods}\n{logs.stdout}{logs.stderr}"
        ) from error
