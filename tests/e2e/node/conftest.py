"""The node suite: a real one-node cluster (control plane, containerd, kubelet, kube-proxy,
kube-scheduler) with the injector installed as the README says, and real Pods.

It needs root and the Kubernetes binaries. Under CI=true both are required (binaries and images
are built when missing); elsewhere a missing one skips the suite with the command that enables it.
Its fixtures have their own names (`node_cluster`, `node_api`, `node_namespace`): the session
fixtures of tests/e2e (`control_plane`, `kubectl`, `api`) stay those of the loopback control
plane, which runs beside this cluster in the same session.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.support.cluster import binaries, fixtures, kube, packages, record, stack

SIDECAR: Final = "envoy-sidecar"
INJECTOR_NS: Final = "envoy-injector"
APP_IMAGE: Final = "hashicorp/http-echo:1.0"
UNMATCHED: Final = {"envoy-injector.test/no-such-node": "true"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.node)
            # A cluster comes up inside the first test's setup, and load tests wait on rollouts.
            item.add_marker(pytest.mark.timeout(900))


def _enabled() -> None:
    ci = bool(os.environ.get("CI"))
    if os.geteuid() != 0:
        message = "the node suite needs root (network namespaces, mounts, cgroups, iptables)"
        if ci:
            pytest.fail(message)
        pytest.skip(f"{message}: run it as root, e.g. `sudo scripts/test tests/e2e/node`")
    if not ci:
        try:
            binaries.locate(get=False, names=stack.ALL_BINARIES)
            packages.ensure(packages.NODE, get=False)
        except (binaries.Missing, packages.Missing) as missing:
            pytest.skip(f"the node suite needs {missing} (or run `scripts/cluster prepare`)")


@pytest.fixture(scope="session")
def node_cluster(figures: list[str]) -> Iterator[stack.Cluster]:
    _enabled()
    for path in record.sweep():
        print(f"removed the cluster left by a killed run: {path}")  # noqa: T201
    directory = record.clusters_root() / f"pytest-node-{os.getpid()}"
    started = time.monotonic()
    cluster = stack.up(directory, owner=os.getpid(), say=lambda _: None, install=False)
    figures.append(
        f"node: control plane + node Ready from nothing in {time.monotonic() - started:.1f} s"
    )
    yield cluster
    errors = record.tear_down(directory)
    assert not errors, errors


@pytest.fixture(scope="session")
def node_api(node_cluster: stack.Cluster) -> Iterator[httpx.Client]:
    with kube.api_client(node_cluster.plane) as client:
        yield client


@pytest.fixture
def node_namespace(
    node_cluster: stack.Cluster, node_api: httpx.Client
) -> Iterator[Callable[..., str]]:
    """Namespaces on the node's cluster (the shared `namespace` fixture serves tests/e2e's)."""
    with fixtures.namespaces(node_cluster.kubectl, node_api) as make:
        yield make


@pytest.fixture(scope="session")
def installed(node_cluster: stack.Cluster, figures: list[str]) -> stack.Cluster:
    """`kubectl apply -k manifests/injector` as shipped, until the webhook is Available."""
    started = time.monotonic()
    stack.install_injector(node_cluster)
    figures.append(
        f"node: kubectl apply -k manifests/injector to webhook Available in "
        f"{time.monotonic() - started:.1f} s"
    )
    return node_cluster


def deployment(name: str, *, text: str, replicas: int = 1, **template: Any) -> dict[str, Any]:
    """An ordinary Deployment of the walk-through's app, as `kubectl create deployment` makes."""
    labels = {"app": name, **template.pop("labels", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels, "annotations": template.pop("annotations", {})},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": APP_IMAGE,
                            "args": ["-listen=:8080", f"-text={text}"],
                            "ports": [{"containerPort": 8080}],
                        }
                    ],
                    **template,
                },
            },
        },
    }


def pods(kubectl: kube.Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("-n", namespace, "get", "pods", "-l", selector)[
        "items"
    ]
    return items


def names(pod: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(init container names, container names)."""
    spec = pod["spec"]
    return [c["name"] for c in spec.get("initContainers", [])], [
        c["name"] for c in spec["containers"]
    ]
