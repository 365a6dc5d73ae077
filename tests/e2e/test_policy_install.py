"""`kubectl apply -k manifests/policy` on a control plane of its own, where no webhook was ever
installed: the install applies as shipped, and a Pod created unchanged in a labelled namespace
gets the sidecar from the API server alone.

Its own control plane, not the session's: the session has the webhook installed, and the question
here is what the policy install does without one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Final

import pytest
import yaml

from tests.e2e.conftest import NAMESPACE, REPO, SIDECAR, containers, pod
from tests.support import tools
from tests.support.cluster import fixtures, kube

POLICY: Final = REPO / "manifests" / "policy"


@pytest.fixture(scope="module")
def bare() -> Iterator[kube.Kubectl]:
    """A control plane of this module's own, started as the session's is."""
    with fixtures.running(f"pytest-policy-{os.getpid()}") as plane:
        yield kube.Kubectl(str(tools.kubectl()), plane.kubeconfig)


def test_the_policy_install_applies_and_injects_with_no_webhook(bare: kube.Kubectl) -> None:
    kubectl = bare
    built = [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(POLICY)).stdout) if doc]
    result = kubectl("apply", "--server-side", "-k", str(POLICY))
    applied = [line for line in result.stdout.splitlines() if "serverside-applied" in line]
    assert len(applied) == len(built), result.stdout

    # No webhook anywhere: nothing for the API server to call, nothing to keep available.
    assert kubectl.json("get", "mutatingwebhookconfigurations")["items"] == []
    assert kubectl.json("-n", NAMESPACE, "get", "services")["items"] == []
    deployments = kubectl.json("-n", NAMESPACE, "get", "deployments")["items"]
    assert [d["metadata"]["name"] for d in deployments] == ["envoy-injector-controller"]

    kubectl("create", "namespace", "shop")
    kubectl("label", "namespace", "shop", "envoy-inject=enabled")
    kube.eventually(
        lambda: (
            kubectl("-n", "shop", "get", "serviceaccount", "default", check=False).returncode == 0
        ),
        "ServiceAccount shop/default",
    )
    manifest = yaml.safe_dump(pod("app"))

    # The policy reaches the API server's admission asynchronously after it is created.
    def created() -> bool:
        result = kubectl("-n", "shop", "create", "-o", "json", "-f", "-", stdin=manifest)
        obj = yaml.safe_load(result.stdout)
        if SIDECAR in containers(obj):
            return True
        kubectl("-n", "shop", "delete", "pod", "app", "--wait=false")
        kube.eventually(
            lambda: kubectl("-n", "shop", "get", "pod", "app", check=False).returncode != 0,
            "the uninjected Pod gone",
        )
        return False

    kube.eventually(created, "a Pod created in a labelled namespace getting the sidecar")
    live = kubectl.json("-n", "shop", "get", "pod", "app")
    assert sorted(containers(live)) == sorted(["app", SIDECAR])
    assert "envoy-inject.io/status" in live["metadata"]["annotations"]

    # The controller's own Pods (in the unlabelled envoy-injector namespace) are left alone.
    pods = kube.eventually(
        lambda: kubectl.json("-n", NAMESPACE, "get", "pods")["items"], "the controller's Pods"
    )
    assert all(SIDECAR not in containers(p) for p in pods)

    # check names the engine: the policy, with no webhook expected.
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "check", "-o", "json",
         "--kubeconfig", str(kubectl.kubeconfig), "shop"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr  # 1: the controller has no node to run on
    report = json.loads(result.stdout)
    found = {(f["check"], f["subject"]): f for f in report["findings"]}
    assert found[("engine", "Namespace shop")]["severity"] == "ok"
    assert "from the admission policy" in found[("engine", "Namespace shop")]["message"]
    assert not [f for f in report["findings"] if f["check"] == "webhook-configuration"]
    assert [(t["name"], t["engine"], t["injected"]) for t in report["targets"]] == [
        ("app", "policy", True)
    ]
