"""Both engines installed on one cluster, each serving its own namespaces: the admission policies
of manifests/policy are bound only to namespaces with an extra label, and the webhook
configuration of manifests/injector skips that label.

Used by the equivalence test (loopback control plane), the node suite's policy test and the
engines benchmark. Only the selectors change; the objects are otherwise applied as shipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import yaml

from tests.support.cluster import kube

REPO: Final = Path(__file__).resolve().parents[3]
WEBHOOK: Final = "envoy-injector"  # the MutatingWebhookConfiguration of manifests/injector
# The resource of each kind `kubectl kustomize manifests/policy` labels component=policy.
POLICY_KINDS: Final = {
    "MutatingAdmissionPolicy": "mutatingadmissionpolicies",
    "MutatingAdmissionPolicyBinding": "mutatingadmissionpolicybindings",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def policies(kubectl: kube.Kubectl, label: str, values: Sequence[str]) -> list[dict[str, Any]]:
    """The admission policies of manifests/policy, each binding narrowed to namespaces whose
    ``label`` is one of ``values``. Not the rest of the kustomization (the controller, its
    settings and namespace): manifests/injector installs those already."""
    built = kubectl("kustomize", str(REPO / "manifests" / "policy")).stdout
    objects = [
        obj
        for obj in yaml.safe_load_all(built)
        if obj and obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "policy"
    ]
    only = {"key": label, "operator": "In", "values": list(values)}
    for obj in objects:
        if obj["kind"].endswith("Binding"):
            obj["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"].append(only)
    return objects


def _patch_webhook(kubectl: kube.Kubectl, operation: dict[str, Any]) -> None:
    kubectl(
        "patch", "mutatingwebhookconfiguration", WEBHOOK, "--type=json", "-p",
        json.dumps([operation]),
    )  # fmt: skip


@contextmanager
def split(
    kubectl: kube.Kubectl,
    label: str,
    *,
    policy: Sequence[str] = ("policy",),
    manager: str = "e2e",
) -> Iterator[list[dict[str, Any]]]:
    """The policies bound to namespaces labelled ``label`` in ``policy``; the webhook skipping
    ``label=policy`` ones. Yields the applied policy objects; on exit both are undone, so the
    cluster is back to manifests/injector as shipped."""
    objects = policies(kubectl, label, policy)
    hook = kubectl.json("get", "mutatingwebhookconfiguration", WEBHOOK)
    added = len(hook["webhooks"][0]["namespaceSelector"]["matchExpressions"])
    skip = {"key": label, "operator": "NotIn", "values": ["policy"]}
    path = "/webhooks/0/namespaceSelector/matchExpressions"
    try:
        _patch_webhook(kubectl, {"op": "add", "path": f"{path}/-", "value": skip})
        kubectl.apply(yaml.safe_dump_all(objects), manager=manager)
        yield objects
    finally:
        for obj in reversed(objects):
            kubectl("delete", POLICY_KINDS[obj["kind"]], obj["metadata"]["name"], check=False)
        hook = kubectl.json("get", "mutatingwebhookconfiguration", WEBHOOK)
        if hook["webhooks"][0]["namespaceSelector"]["matchExpressions"][added:] == [skip]:
            _patch_webhook(kubectl, {"op": "remove", "path": f"{path}/{added}"})
