"""Label selectors as the Kubernetes API reference defines them.

Sources: API reference, Common Definitions, LabelSelector
(https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/label-selector/):
"matchLabels ... is equivalent to an element of matchExpressions, whose key field is 'key', the
operator is 'In', and the values array contains only 'value'. The requirements are ANDed."; "If
the operator is In or NotIn, the values array must be non-empty. If the operator is Exists or
DoesNotExist, the values array must be empty." Labels concept page, "Set-based requirement":
"!partition" selects resources without the key; "NotIn" also selects those without the label.
Admission webhooks (Dynamic Admission Control, "Matching requests: namespaceSelector" and
"objectSelector"): default {} "matches all"; the exclusion of kube-system is done with
kubernetes.io/metadata.name NotIn, as the shipped configuration does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook import errors
from webhook.selectors import failing, matches

ENABLED = {"envoy-inject": "enabled"}

CASES: list[tuple[str, dict[str, Any] | None, dict[str, str], bool]] = [
    ("absent selector matches all", None, {}, True),
    ("empty selector matches no labels", {}, {}, True),
    ("empty selector matches any labels", {}, {"a": "b"}, True),
    ("empty lists match all", {"matchLabels": {}, "matchExpressions": []}, {"a": "b"}, True),
    ("matchLabels equal", {"matchLabels": ENABLED}, ENABLED, True),
    ("matchLabels other value", {"matchLabels": ENABLED}, {"envoy-inject": "disabled"}, False),
    ("matchLabels missing key", {"matchLabels": ENABLED}, {}, False),
    ("matchLabels all ANDed", {"matchLabels": {"a": "1", "b": "2"}}, {"a": "1"}, False),
    ("In one of", {"matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}]},
     {"t": "y"}, True),
    ("In none of", {"matchExpressions": [{"key": "t", "operator": "In", "values": ["x"]}]},
     {"t": "z"}, False),
    ("In absent key", {"matchExpressions": [{"key": "t", "operator": "In", "values": ["x"]}]},
     {}, False),
    ("NotIn other value", {"matchExpressions": [{"key": "t", "operator": "NotIn",
                                                  "values": ["x"]}]}, {"t": "z"}, True),
    ("NotIn listed value", {"matchExpressions": [{"key": "t", "operator": "NotIn",
                                                   "values": ["x"]}]}, {"t": "x"}, False),
    ("NotIn absent key matches", {"matchExpressions": [{"key": "t", "operator": "NotIn",
                                                         "values": ["x"]}]}, {}, True),
    ("Exists present", {"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {"t": ""},
     True),
    ("Exists absent", {"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {}, False),
    ("DoesNotExist absent", {"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]},
     {}, True),
    ("DoesNotExist present", {"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]},
     {"t": "x"}, False),
    ("labels and expressions ANDed", {"matchLabels": ENABLED, "matchExpressions": [
        {"key": "t", "operator": "Exists"}]}, ENABLED, False),
    ("values are case-sensitive", {"matchLabels": ENABLED}, {"envoy-inject": "Enabled"}, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("selector", "labels", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_label_selector_semantics(
    selector: dict[str, Any] | None, labels: dict[str, str], expected: bool
) -> None:
    assert matches(selector, labels) is expected
    assert (failing(selector, labels) == []) is expected


SHIPPED = (
    Path(__file__).resolve().parents[2] / "manifests/injector/mutatingwebhookconfiguration.yaml"
)
(WEBHOOK,) = yaml.safe_load(SHIPPED.read_text())["webhooks"]


def _namespace(name: str, **labels: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name, **labels}  # set by the API server on every one


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (_namespace("shop", **ENABLED), True),
        (_namespace("shop"), False),
        (_namespace("shop", **{"envoy-inject": "disabled"}), False),
        (_namespace("kube-system", **ENABLED), False),
        (_namespace("kube-public", **ENABLED), False),
        (_namespace("kube-node-lease", **ENABLED), False),
        (_namespace("envoy-injector", **ENABLED), False),
    ],
    ids=["labelled", "unlabelled", "disabled", "kube-system", "kube-public", "kube-node-lease",
         "own-namespace"],
)  # fmt: skip
def test_the_shipped_namespace_selector_excludes_system_namespaces_even_when_labelled(
    labels: dict[str, str], expected: bool
) -> None:
    assert matches(WEBHOOK["namespaceSelector"], labels) is expected


def test_the_shipped_object_selector_lets_a_pod_opt_out() -> None:
    assert matches(WEBHOOK["objectSelector"], {"app": "web"})
    assert not matches(WEBHOOK["objectSelector"], {"envoy-inject": "disabled"})
    assert failing(WEBHOOK["objectSelector"], {"envoy-inject": "disabled"}) == [
        "envoy-inject NotIn (disabled)"
    ]


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ({"matchExpressions": [{"key": "t", "operator": "Equals", "values": ["x"]}]},
         "operator 'Equals' is not one of In, NotIn, Exists, DoesNotExist"),
        ({"matchExpressions": [{"key": "t", "operator": "In"}]}, "In needs at least one value"),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": []}]},
         "NotIn needs at least one value"),
        ({"matchExpressions": [{"key": "t", "operator": "Exists", "values": ["x"]}]},
         "Exists takes no values"),
        ({"matchExpressions": [{"operator": "Exists"}]}, "matchExpressions[0].key must be"),
        ({"matchLabels": {"a": 1}}, "matchLabels['a'] must be a string"),
        ({"matchLabels": ["a"]}, "matchLabels must be a map"),
    ],
)  # fmt: skip
def test_a_selector_the_api_server_would_refuse_is_an_error_naming_the_problem(
    selector: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.InvalidSelector, match=message.replace("[", r"\[")):
        matches(selector, {})
