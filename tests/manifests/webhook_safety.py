"""What makes a MutatingWebhookConfiguration of ours safe for the cluster, as checks on data.

Shared by the kustomize install's tests (test_webhook_configuration.py) and the Helm chart's
(tests/helm/), so that every way we ship the webhook is held to the same rules:
:func:`violations` lists how a configuration breaks them. The label-selector evaluation
(:func:`selects`) follows the API server's semantics for ``matchLabels`` and the four
``matchExpressions`` operators.
"""

from __future__ import annotations

from typing import Any, Final

Object = dict[str, Any]

SYSTEM_NAMESPACES: Final = ["kube-system", "kube-public", "kube-node-lease"]
OPTED_IN: Final = {"envoy-inject": "enabled"}
WEBHOOK_NAME: Final = "sidecar.envoy-inject.io"
MAX_TIMEOUT_SECONDS: Final = 5


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


def namespace_cases(
    own_namespace: str, *, opted_in: dict[str, str] | None = None
) -> list[tuple[str, dict[str, str], bool]]:
    """(id, namespace labels, whether the webhook must be called) for the namespace selector.

    ``opted_in``: the labels of a namespace that opted in (default envoy-inject=enabled; an
    operator's extra selector may ask for more).
    """
    opted_in = opted_in or OPTED_IN
    return [
        ("labelled-namespace", namespace_labels("shop", opted_in), True),
        ("unlabelled-namespace", namespace_labels("shop"), False),
        (
            "namespace-labelled-disabled",
            namespace_labels("shop", {"envoy-inject": "disabled"}),
            False,
        ),
        (
            "namespace-labelled-with-another-value",
            namespace_labels("shop", {"envoy-inject": "true"}),
            False,
        ),
        *[
            (f"{name}-even-if-labelled", namespace_labels(name, opted_in), False)
            for name in [*SYSTEM_NAMESPACES, own_namespace]
        ],
    ]


OBJECT_CASES: Final = [
    ("no-labels", {}, True),
    ("other-labels", {"app": "shop"}, True),
    ("labelled-enabled", {"envoy-inject": "enabled"}, True),
    ("labelled-disabled", {"envoy-inject": "disabled"}, False),
]

POD_CREATE_RULE: Final = {
    "operations": ["CREATE"],
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods"],
    "scope": "Namespaced",
}


def violations(
    configuration: Object, *, own_namespace: str, opted_in: dict[str, str] | None = None
) -> list[str]:
    """How ``configuration`` breaks the rules that keep the webhook from blocking the cluster
    or mutating what it must not; empty when it keeps them all. ``failurePolicy`` is the
    operator's choice and is not judged here (both values are safe with these rules)."""
    webhooks: list[Object] = configuration.get("webhooks", [])
    if [w.get("name") for w in webhooks] != [WEBHOOK_NAME]:
        return [
            f"expected the one webhook {WEBHOOK_NAME}, found {[w.get('name') for w in webhooks]}"
        ]
    hook = webhooks[0]
    problems = []
    expected = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "reinvocationPolicy": "Never",
        "rules": [POD_CREATE_RULE],
    }
    problems += [
        f"{field} is {hook.get(field)!r}, expected {value!r}"
        for field, value in expected.items()
        if hook.get(field) != value
    ]
    if hook.get("failurePolicy") not in {"Fail", "Ignore"}:
        problems.append(f"failurePolicy is {hook.get('failurePolicy')!r}")
    timeout = hook.get("timeoutSeconds")
    if not isinstance(timeout, int) or not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
        problems.append(f"timeoutSeconds is {timeout!r}, expected 1..{MAX_TIMEOUT_SECONDS}")
    client = hook.get("clientConfig", {})
    wanted_client = {
        "service": {
            "name": "envoy-injector",
            "namespace": own_namespace,
            "path": "/mutate",
            "port": 443,
        }
    }
    if client != wanted_client:
        problems.append(f"clientConfig is {client!r}, expected {wanted_client!r} (no caBundle)")
    namespace_selector = hook.get("namespaceSelector", {})
    problems += [
        f"namespaceSelector: {case}: called is {not called}"
        for case, labels, called in namespace_cases(own_namespace, opted_in=opted_in)
        if selects(namespace_selector, labels) is not called
    ]
    object_selector = hook.get("objectSelector", {})
    problems += [
        f"objectSelector: {case}: called is {not called}"
        for case, labels, called in OBJECT_CASES
        if selects(object_selector, labels) is not called
    ]
    return problems
