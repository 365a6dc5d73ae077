"""Every kustomization under manifests/ applies server-side to a real API server, once its
namespaces and the CRDs it uses exist (objects that need a node or a controller just sit there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import NAMESPACE, REPO, Injector
from tests.support.cluster import kube

CRDS = REPO / "tests" / "data" / "crds"
INSTALL = REPO / "manifests" / "injector"
# The install is applied once for the whole session by the `installed` fixture (the other tests
# run on it); the presets and walk-through are applied here, each on its own.
KUSTOMIZATIONS = sorted(
    p.parent for p in (REPO / "manifests").rglob("kustomization.yaml") if p.parent != INSTALL
)


def test_the_install_applies_server_side_as_shipped(installed: Injector) -> None:
    kubectl = installed.kubectl
    built = kubectl("kustomize", str(INSTALL)).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    live = kubectl.json("get", "-f", "-", stdin=built)
    got = {(o["kind"], o["metadata"]["name"]) for o in live["items"]}
    assert got == {(o["kind"], o["metadata"]["name"]) for o in objects}
    # Objects that need a node just sit there: the webhook's Pods and the cert Job's Pod exist,
    # Pending, because the controller-manager created them.
    pods = kubectl.json("-n", NAMESPACE, "get", "pods")["items"]
    owners = {ref["kind"] for p in pods for ref in p["metadata"].get("ownerReferences", [])}
    assert {"ReplicaSet", "Job"} <= owners
    assert {p["status"]["phase"] for p in pods} == {"Pending"}


@pytest.fixture(scope="module")
def crds(kubectl: kube.Kubectl) -> None:
    files = sorted(CRDS.glob("*.yaml"))
    assert files, f"the vendored CRD schemas are missing from {CRDS}"
    for path in files:
        kubectl.apply(path.read_text(), manager="e2e-crds")
    kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


@pytest.mark.parametrize(
    "directory", KUSTOMIZATIONS, ids=[str(p.relative_to(REPO)) for p in KUSTOMIZATIONS]
)
def test_the_kustomization_applies_server_side(
    directory: Path, crds: None, kubectl: kube.Kubectl
) -> None:
    built = kubectl("kustomize", str(directory)).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    for name in sorted(
        {o["metadata"]["namespace"] for o in objects if "namespace" in o["metadata"]}
    ):
        kubectl("create", "namespace", name, check=False)  # may exist (or be in the build)
    result = kubectl.apply(built, manager="e2e-manifests")
    applied = [line for line in result.stdout.splitlines() if "serverside-applied" in line]
    assert len(applied) == len(objects), result.stdout
    # Each kustomization is checked as if alone on the cluster (the presets include each other).
    # Namespaces stay: deleting one takes the namespace controller a while.
    rest = [o for o in objects if o["kind"] != "Namespace"]
    kubectl("delete", "-f", "-", "--ignore-not-found", "--timeout=60s",
            stdin=yaml.safe_dump_all(rest))  # fmt: skip
