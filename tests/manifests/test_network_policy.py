"""The NetworkPolicies: every Pod the injector runs is covered; in, only the port each serves
reaches it (none for the cert job); out, every Pod reaches only the API server and DNS.

Evaluated as data against the shipped Pods (the selectors with the API server's semantics from
webhook_safety); kubernetes-validate checks the objects themselves in test_schema.py.
"""

from __future__ import annotations

from typing import Final

import pytest

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, Object
from tests.manifests.webhook_safety import selects

OBJECTS: Final = documents.objects(INJECTOR)
API_SERVER: Final = [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]
DNS: Final = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def policies() -> list[Object]:
    return documents.find(OBJECTS, "NetworkPolicy")


def pod_labels(obj: Object) -> dict[str, str]:
    if obj["kind"] == "CronJob":
        labels: dict[str, str] = obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"][
            "labels"
        ]
    else:
        labels = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def covering(obj: Object) -> list[Object]:
    return [p for p in policies() if selects(p["spec"]["podSelector"], pod_labels(obj))]


WORKLOADS: Final = [m for m, _ in documents.pod_templates(OBJECTS)]


@pytest.mark.parametrize("manifest", WORKLOADS, ids=[m.label for m in WORKLOADS])
def test_every_injector_pod_is_covered_by_one_policy_for_both_directions(
    manifest: documents.Manifest,
) -> None:
    (policy,) = covering(manifest.obj)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


@pytest.mark.parametrize("manifest", WORKLOADS, ids=[m.label for m in WORKLOADS])
def test_every_injector_pod_reaches_only_the_api_server_and_dns(
    manifest: documents.Manifest,
) -> None:
    (policy,) = covering(manifest.obj)
    assert policy["spec"]["egress"] == [{"ports": API_SERVER}, {"ports": DNS}]


@pytest.mark.parametrize(
    ("deployment", "container"),
    [("envoy-injector", "envoy-injector"), ("envoy-injector-controller", "controller")],
    ids=["webhook", "controller"],
)
def test_only_the_served_port_reaches_a_deployments_pods(deployment: str, container: str) -> None:
    obj = documents.one(OBJECTS, "Deployment", deployment)
    (policy,) = covering(obj)
    served = documents.container(obj["spec"]["template"]["spec"], container)
    (port,) = served["ports"]
    # From any source: the API server and the kubelet call from outside the Pod network.
    assert policy["spec"]["ingress"] == [
        {"ports": [{"protocol": port["protocol"], "port": port["containerPort"]}]}
    ]


@pytest.mark.parametrize("kind", ["Job", "CronJob"])
def test_nothing_reaches_the_cert_job_pods(kind: str) -> None:
    (job,) = documents.find(OBJECTS, kind)
    (policy,) = covering(job)
    assert "Ingress" in policy["spec"]["policyTypes"]
    assert policy["spec"].get("ingress", []) == []


def test_policies_select_only_the_injectors_own_pods() -> None:
    for policy in policies():
        selector = policy["spec"]["podSelector"]
        assert selector["matchLabels"]["app.kubernetes.io/name"] == "envoy-injector"
        assert "app.kubernetes.io/component" in selector["matchLabels"]
