"""The MutatingWebhookConfiguration, field by field.

``kubernetes-validate`` checks types but not every enum (it accepted ``sideEffects: Maybe``),
and selectors are behaviour, so each field the API server acts on is pinned here as data.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import pytest

from tests.manifests import documents, webhook_safety
from tests.manifests.documents import INJECTOR, Object
from tests.manifests.webhook_safety import SYSTEM_NAMESPACES, namespace_labels, selects

INJECTOR_OBJECTS: Final = documents.objects(INJECTOR)
NAMESPACE_CASES: Final = webhook_safety.namespace_cases("envoy-injector")


def configuration() -> Object:
    return documents.one(INJECTOR_OBJECTS, "MutatingWebhookConfiguration", "envoy-injector")


def webhook() -> Object:
    webhooks: list[Object] = configuration()["webhooks"]
    assert len(webhooks) == 1
    return webhooks[0]


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
    [(labels, called) for _, labels, called in NAMESPACE_CASES],
    ids=[case for case, _, _ in NAMESPACE_CASES],
)
def test_namespace_selector_decides_which_namespaces_are_mutated(
    labels: dict[str, str], called: bool
) -> None:
    assert selects(webhook()["namespaceSelector"], labels) is called


@pytest.mark.parametrize(
    ("labels", "called"),
    [(labels, called) for _, labels, called in webhook_safety.OBJECT_CASES],
    ids=[case for case, _, _ in webhook_safety.OBJECT_CASES],
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


def test_the_shipped_configuration_passes_every_safety_check() -> None:
    """The same checks the Helm chart's renderings must pass (tests/helm/)."""
    assert webhook_safety.violations(configuration(), own_namespace="envoy-injector") == []


def test_safety_checks_catch_an_unsafe_configuration() -> None:
    """The shared checks are not vacuous: each unsafe edit is reported."""
    unsafe = copy.deepcopy(configuration())
    hook = unsafe["webhooks"][0]
    hook["timeoutSeconds"] = 30
    hook["rules"][0]["operations"] = ["CREATE", "UPDATE"]
    hook["clientConfig"]["caBundle"] = "Zm9v"
    hook["namespaceSelector"]["matchExpressions"][1]["values"] = ["kube-system"]
    hook["objectSelector"] = {}
    found = "\n".join(webhook_safety.violations(unsafe, own_namespace="envoy-injector"))
    for needle in (
        "timeoutSeconds",
        "rules",
        "caBundle",
        "kube-public-even-if-labelled",
        "envoy-injector-even-if-labelled",
        "labelled-disabled",
    ):
        assert needle in found


def test_failure_policy_alternative_is_documented_with_its_costs() -> None:
    text = (INJECTOR / "mutatingwebhookconfiguration.yaml").read_text()
    readme = (INJECTOR / "README.md").read_text()
    for source in (text, readme):
        assert "Ignore" in source
        assert "Fail" in source
    assert "/webhooks/0/clientConfig/caBundle" in readme
    assert "ignoreDifferences" in readme
    assert "Flux" in readme
