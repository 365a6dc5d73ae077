"""The admission policy on a real node: a Pod injected by the MutatingAdmissionPolicy of
manifests/policy, with no call to the webhook, starts, becomes Ready and serves through Envoy.

The webhook stays installed as shipped (the session's `installed`); for this module the policies
are bound only to node-engine=policy namespaces and the webhook configuration skips those
(tests/support/cluster/engine_split.py), as when moving from one engine to the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
import yaml

from tests.e2e.conftest import pod as app_pod
from tests.e2e.node.conftest import INJECTOR_NS, SIDECAR, deployment, pods
from tests.e2e.node.test_install_and_pods import (
    assert_serves_through_envoy,
    available,
    config_map_delivered,
    create,
)
from tests.support.cluster import engine_split, kube, stack

ENGINE: Final = "node-engine"
LABELLED: Final = {"envoy-inject": "enabled"}
WEBHOOK_PODS: Final = "app.kubernetes.io/name=envoy-injector,app.kubernetes.io/component=webhook"


def _selector(kubectl: kube.Kubectl) -> Any:
    hook = kubectl.json("get", "mutatingwebhookconfiguration", engine_split.WEBHOOK)
    return hook["webhooks"][0]["namespaceSelector"]


@pytest.fixture(scope="module")
def policy_engine(installed: stack.Cluster) -> Iterator[stack.Cluster]:
    """The split for this module; afterwards the other node tests see the shipped install."""
    kubectl = installed.kubectl
    kinds = ",".join(engine_split.POLICY_KINDS.values())

    def admission() -> tuple[Any, str]:
        return _selector(kubectl), kubectl("get", kinds, "-o", "name").stdout

    shipped = admission()
    with engine_split.split(kubectl, ENGINE):
        yield installed
    assert admission() == shipped


def _injected_on_dry_run(kubectl: kube.Kubectl, namespace: str) -> bool:
    """A server-side dry run of a bare Pod gets the sidecar (admission runs; nothing is kept)."""
    result = kubectl(
        "-n", namespace, "create", "--dry-run=server", "-o", "json", "-f", "-",
        stdin=yaml.safe_dump(app_pod("probe")), check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return False
    return SIDECAR in [c["name"] for c in json.loads(result.stdout)["spec"]["containers"]]


def _decided_namespaces(kubectl: kube.Kubectl) -> set[str]:
    """The namespaces of every decision line (webhook/app.py) the webhook Pods have logged."""
    text = kubectl(
        "-n", INJECTOR_NS, "logs", "-l", WEBHOOK_PODS, "--tail=-1", "--max-log-requests=10",
    ).stdout  # fmt: skip
    found = set()
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and str(entry.get("message", "")).startswith("admission "):
            found.add(str(entry.get("namespace")))
    return found


def test_a_deployment_injected_by_the_policy_becomes_ready_and_answers_through_envoy(
    policy_engine: stack.Cluster, node_namespace: Callable[..., str], figures: list[str]
) -> None:
    kubectl = policy_engine.kubectl
    ns = node_namespace("policy", **LABELLED, **{ENGINE: "policy"})
    # The webhook's namespace: the control that shows its decision lines are where we look.
    by_webhook = node_namespace("hooked", **LABELLED)
    config_map_delivered(kubectl, ns)
    # Policies reach the API server's admission asynchronously after they are applied.
    kube.eventually(
        lambda: _injected_on_dry_run(kubectl, ns), f"the policy injecting in {ns}", timeout=60
    )
    started = time.monotonic()
    create(kubectl, ns, deployment("web", text="hello from the policy"))
    available(kubectl, ns, "web")
    figures.append(
        f"node: policy-injected Deployment created to Available in "
        f"{time.monotonic() - started:.1f} s"
    )
    (pod,) = pods(kubectl, ns, "app=web")
    assert_serves_through_envoy(kubectl, ns, pod, "hello from the policy")

    # The webhook took no part: its configuration skips the namespace, and while its Pods log a
    # decision for every review they get (seen here for the webhook's namespace), none names
    # this one: not the Deployment's Pod, nor the dry runs above.
    skip = {"key": ENGINE, "operator": "NotIn", "values": ["policy"]}
    assert skip in _selector(kubectl)["matchExpressions"]
    assert _injected_on_dry_run(kubectl, by_webhook)
    kube.eventually(
        lambda: by_webhook in _decided_namespaces(kubectl),
        f"the webhook's decision line for {by_webhook}",
        timeout=30,
    )
    assert ns not in _decided_namespaces(kubectl)
