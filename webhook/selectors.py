"""Kubernetes label selectors (metav1.LabelSelector), evaluated the way the API server does.

Semantics, from the API reference (Common Definitions → LabelSelector) and the labels concept
page ("Label selectors"):

- ``matchLabels`` ``{k: v}`` is the requirement ``k In (v)``; every requirement, from both
  fields, must hold (AND).
- ``In``: the label is present and its value is one of ``values``. ``NotIn``: the label is
  absent, or its value is none of ``values``. ``Exists`` / ``DoesNotExist``: the key is present /
  absent, whatever its value.
- ``values`` must be non-empty for In and NotIn and empty for Exists and DoesNotExist.
- An empty selector ``{}`` matches everything. A webhook's absent ``namespaceSelector`` or
  ``objectSelector`` is defaulted to ``{}`` by the API server, so it matches everything too
  (only a null selector in other APIs, such as a PodDisruptionBudget's, means "nothing").

Pure: the check command calls it on labels read from the cluster, the controller on namespaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from webhook import errors

OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")


def _requirements(selector: Mapping[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(key, operator, values) for every requirement; InvalidSelector names each problem."""
    problems: list[str] = []
    found: list[tuple[str, str, tuple[str, ...]]] = []
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        problems.append(f"matchLabels must be a map of label: value, not {match_labels!r}")
        match_labels = {}
    for key, value in match_labels.items():
        if not isinstance(value, str):
            problems.append(f"matchLabels[{key!r}] must be a string, not {value!r}")
            continue
        found.append((str(key), "In", (value,)))
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        problems.append(f"matchExpressions must be a list, not {expressions!r}")
        expressions = []
    for index, expression in enumerate(expressions):
        where = f"matchExpressions[{index}]"
        if not isinstance(expression, Mapping):
            problems.append(f"{where} must be a map with key, operator and values")
            continue
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if not isinstance(key, str) or not key:
            problems.append(f"{where}.key must be a label key")
        elif operator not in OPERATORS:
            problems.append(f"{where}.operator {operator!r} is not one of {', '.join(OPERATORS)}")
        elif not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            problems.append(f"{where}.values must be a list of strings")
        elif operator in ("In", "NotIn") and not values:
            problems.append(f"{where}: {operator} needs at least one value")
        elif operator in ("Exists", "DoesNotExist") and values:
            problems.append(f"{where}: {operator} takes no values")
        else:
            found.append((key, operator, tuple(values)))
    if problems:
        raise errors.InvalidSelector("invalid label selector: " + "; ".join(problems))
    return found


def _holds(labels: Mapping[str, str], key: str, operator: str, values: tuple[str, ...]) -> bool:
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    return key not in labels  # DoesNotExist


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether ``labels`` satisfy a webhook's ``selector`` (None: absent, which matches all)."""
    if selector is None:
        return True
    if not isinstance(selector, Mapping):
        raise errors.InvalidSelector(f"a label selector is a map, not {selector!r}")
    have = labels or {}
    return all(_holds(have, *requirement) for requirement in _requirements(selector))


def failing(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> list[str]:
    """The requirements ``labels`` do not meet, as a user would write them (for explanations)."""
    if selector is None:
        return []
    have = labels or {}
    out = []
    for key, operator, values in _requirements(selector):
        if not _holds(have, key, operator, values):
            shown = f" ({', '.join(values)})" if values else ""
            out.append(f"{key} {operator}{shown}")
    return out
