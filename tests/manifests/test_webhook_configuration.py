"""The MutatingWebhookConfiguration, field by field.

``kubernetes-validate`` checks types but not every enum (it accepted ``sideEffects: Maybe``),
and selectors are behaviour, so each field the API server acts on is pinned here as data.
"""

from __future__ import annotations

from typing import Any, Final

import pytest

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, Object

INJECTOR_OBJECTS: Final = documents.objects(INJECTOR)
SYSTEM_NAMESPACES: Final = ["kube-system", "kube-public", "kube-node-lease"]


def configuration() -> Object:
    return documents.one(INJECTOR_OBJECTS, "MutatingWebhookConfiguration", "envoy-injector")


def webhook() -> Object:
    webhooks: list[Object] = configuration()["webhooks"]
    assert len(webhooks) == 1
    return webhooks[0]


def requirement_matches(requirement: Object, labels: dict[str, str]) -> bool:
    """One label-selector requirement, evaluated as the API server does."""
    operator, label = requirement["operator"], requirement["key"]
    values = requirement.get("values", [])
    if operator == "In":
        return label in labels and labels[label] in values
    if operator == "NotIn":
        return label not in labels or labels[label] not in values
    if operator == "Exists":
        return label in labels
    if operator == "DoesNotExist":
        return label not in labels
    raise AssertionError(f"unknown selector operator {operator}")


def selects(selector: Object, labels: dict[str, str]) -> bool:
    match_labels: dict[str, str] = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in match_labels.items()) and all(
        requirement_matches(r, labels) for r in selector.get("matchExpressions", [])
    )


def namespace_labels(name: str, labels: dict[str, str] | None = None) -> dict[str, str]:
    """A namespace's labels, including the one the API server sets on every namespace."""
    return {"kubernetes.io/metadata.name": name, **(labels or {})}


OPTED_IN: Final = {"envoy-inject": "enabled"}


def test_there_is_one_webhook_named_for_the_sidecar() -> None:
    assert webhook()["name"] == "sidecar.envoy-inject.io"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("admissionReviewVersions", ["v1"]),
        ("sideEffects", "None"),
        ("reinvocationPolicy", "Never"),
        ("failurePolicy", "Fail"),
    ],
    ids=["review-v1-only", "no-side-effects", "called-once", "fails-closed"],
)
def test_webhook_field_has_the_documented_value(field: str, expected: Any) -> None:
    assert webhook()[field] == expected


def test_timeout_is_at_most_five_seconds() -> None:
    timeout = webhook()["timeoutSeconds"]
    assert isinstance(timeout, int)
    assert 1 <= timeout <= 5


def test_rules_match_only_the_creation_of_pods() -> None:
    assert webhook()["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]


def test_client_config_calls_the_service_on_443_at_mutate() -> None:
    assert webhook()["clientConfig"] == {
        "service": {
            "name": "envoy-injector",
            "namespace": "envoy-injector",
            "path": "/mutate",
            "port": 443,
        }
    }


def test_no_ca_bundle_is_shipped_because_the_cert_job_owns_it() -> None:
    client_config = webhook()["clientConfig"]
    assert "caBundle" not in client_config
    assert "url" not in client_config


def test_namespace_selector_requires_opt_in_and_excludes_system_and_own_namespaces() -> None:
    assert webhook()["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "envoy-inject", "operator": "In", "values": ["enabled"]},
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": [*SYSTEM_NAMESPACES, "envoy-injector"],
            },
        ]
    }


def test_object_selector_lets_a_pod_opt_out_with_a_label() -> None:
    assert webhook()["objectSelector"] == {
        "matchExpressions": [{"key": "envoy-inject", "operator": "NotIn", "values": ["disabled"]}]
    }


@pytest.mark.parametrize(
    ("labels", "called"),
    [
        (namespace_labels("shop", OPTED_IN), True),
        (namespace_labels("shop"), False),
        (namespace_labels("shop", {"envoy-inject": "disabled"}), False),
        (namespace_labels("shop", {"envoy-inject": "true"}), False),
        *[
            (namespace_labels(name, OPTED_IN), False)
            for name in [*SYSTEM_NAMESPACES, "envoy-injector"]
        ],
    ],
    ids=[
        "labelled-namespace",
        "unlabelled-namespace",
        "namespace-labelled-disabled",
        "namespace-labelled-with-another-value",
        *[f"{name}-even-if-labelled" for name in [*SYSTEM_NAMESPACES, "envoy-injector"]],
    ],
)
def test_namespace_selector_decides_which_namespaces_are_mutated(
    labels: dict[str, str], called: bool
) -> None:
    assert selects(webhook()["namespaceSelector"], labels) is called


@pytest.mark.parametrize(
    ("labels", "called"),
    [
        ({}, True),
        ({"app": "shop"}, True),
        ({"envoy-inject": "enabled"}, True),
        ({"envoy-inject": "disabled"}, False),
    ],
    ids=["no-labels", "other-labels", "labelled-enabled", "labelled-disabled"],
)
def test_object_selector_skips_only_pods_labelled_disabled(
    labels: dict[str, str], called: bool
) -> None:
    assert selects(webhook()["objectSelector"], labels) is called


def test_injector_namespace_does_not_opt_in_to_injection() -> None:
    namespace = documents.one(INJECTOR_OBJECTS, "Namespace", "envoy-injector")
    labels = namespace["metadata"].get("labels", {})
    assert "envoy-inject" not in labels
    assert not selects(webhook()["namespaceSelector"], namespace_labels("envoy-injector", labels))


def test_failure_policy_alternative_is_documented_with_its_costs() -> None:
    text = (INJECTOR / "mutatingwebhookconfiguration.yaml").read_text()
    readme = (INJECTOR / "README.md").read_text()
    for source in (text, readme):
        assert "Ignore" in source
        assert "Fail" in source
    assert "/webhooks/0/clientConfig/caBundle" in readme
    assert "ignoreDifferences" in readme
    assert "Flux" in readme
