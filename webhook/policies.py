"""The admission policies that inject the sidecar without a webhook (Kubernetes >= 1.36).

`render(defaults, policy, excluded)` returns six objects, from the same settings the webhook
reads:
- MutatingAdmissionPolicy ``envoy-injector`` and its binding: adds the sidecar, volume and status
  annotation (JSON Patch written in CEL, pieces from cel.py) to a Pod that has no problem;
- ValidatingAdmissionPolicy ``envoy-injector`` (binding: Deny): refuses the Pods the webhook
  refuses, with the webhook's message;
- ValidatingAdmissionPolicy ``envoy-injector-warnings`` (binding: Warn): the webhook's warnings.

The bindings select what the webhook configuration selects: labelled namespaces but not the
system ones or the excluded ones, and not Pods labelled envoy-inject=disabled.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

import yaml

from webhook import cel, inject, overrides
from webhook.spec import INJECT_LABEL, STATUS_ANNOTATION, Policy, SidecarSpec

API_VERSION: Final = "admissionregistration.k8s.io/v1"
NAME: Final = "envoy-injector"
WARNINGS: Final = "envoy-injector-warnings"
LABELS: Final = {
    "app.kubernetes.io/name": "envoy-injector",
    "app.kubernetes.io/component": "policy",
    "app.kubernetes.io/part-of": "envoy-injector",
}
_PODS: Final = {
    "resourceRules": [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
        }
    ]
}

JSONDict = dict[str, Any]


def _meta(name: str) -> JSONDict:
    return {"name": name, "labels": dict(LABELS)}


def match_resources(excluded: Collection[str]) -> JSONDict:
    """The webhook configuration's selectors (mutatingwebhookconfiguration.yaml)."""
    never = sorted(set(inject.SYSTEM_NAMESPACES) | set(excluded))
    return {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": INJECT_LABEL, "operator": "In", "values": ["enabled"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": never},
            ]
        },
        "objectSelector": {
            "matchExpressions": [{"key": INJECT_LABEL, "operator": "NotIn", "values": ["disabled"]}]
        },
    }


def _skips() -> list[JSONDict]:
    return [
        {"name": f"not-{reason.replace('_', '-')}", "expression": expression}
        for reason, expression in cel.SKIPS.items()
    ]


def variables(defaults: SidecarSpec, policy: Policy) -> list[JSONDict]:
    found = [("annotations", "object.metadata.?annotations.orValue({})")]
    found += cel.values(defaults)
    found += cel.problems(policy)
    found.append(
        (
            "ok",
            " && ".join(
                f"variables.{name}.size() == 0"
                for name in ("invalid", "conflicts", "forbidden", "nameClash", "portClash")
            ),
        )
    )
    return [{"name": name, "expression": expression} for name, expression in found]


def _patch() -> str:
    """The JSON Patch: container (native: first init container), volume, status annotation.
    Absent arrays and maps are added first: JSON Patch cannot append to what is not there."""
    init = cel.container("Object.spec.initContainers", native=True)
    regular = cel.container("Object.spec.containers", native=False)
    volume = cel.volume()
    status_key = f"jsonpatch.escapeKey({cel.quote(STATUS_ANNOTATION)})"
    # Absent arrays are added empty first, then the item: a list of typed objects as a patch
    # value panics kube-apiserver 1.36.3 (cel-go's list ConvertToNative to structpb.Value).
    return (
        "!variables.ok ? [] :\n"
        "(variables.native ? (\n"
        "  (has(object.spec.initContainers) ? [] :\n"
        "    [JSONPatch{op: 'add', path: '/spec/initContainers', value: []}]) +\n"
        f"  [JSONPatch{{op: 'add', path: '/spec/initContainers/0', value: {init}}}]\n"
        f") : [JSONPatch{{op: 'add', path: '/spec/containers/-', value: {regular}}}]) +\n"
        "(has(object.spec.volumes) ? [] :\n"
        "  [JSONPatch{op: 'add', path: '/spec/volumes', value: []}]) +\n"
        f"[JSONPatch{{op: 'add', path: '/spec/volumes/-', value: {volume}}}] +\n"
        "(has(object.metadata.annotations) ? [] :\n"
        "  [JSONPatch{op: 'add', path: '/metadata/annotations', value: {}}]) +\n"
        "[JSONPatch{op: 'add', path: '/metadata/annotations/' + "
        f"{status_key}, value: {cel.status()}}}]"
    )


def mutating(defaults: SidecarSpec, policy: Policy) -> JSONDict:
    return {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": _meta(NAME),
        "spec": {
            # As the webhook's failurePolicy: a Pod the policy cannot evaluate is not created.
            "failurePolicy": "Fail",
            # Once per Pod, as the webhook: a second run could only be a no-op (status annotation).
            "reinvocationPolicy": "Never",
            "matchConstraints": _PODS,
            "matchConditions": _skips(),
            "variables": variables(defaults, policy),
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": _patch()}}],
        },
    }


def _validation(condition: str, message: str, reason: str = "Invalid") -> JSONDict:
    return {"expression": condition, "messageExpression": message, "reason": reason}


def validating(defaults: SidecarSpec, policy: Policy) -> JSONDict:
    """Refuses what the mutating policy left alone because the webhook would refuse it. At most
    one validation fails, the first kind of problem the webhook finds, with its message."""
    earlier: list[str] = []
    validations = []
    kinds = (
        ("invalid", "'invalid annotations: ' + variables.invalid.join('; ')", "Invalid"),
        ("conflicts", "'invalid annotations: ' + variables.conflicts.join('; ')", "Invalid"),
        (
            "forbidden",
            "\"refused by the injector's policy: \" + variables.forbidden.join('; ')",
            "Forbidden",
        ),
        ("nameClash", "variables.nameClash[0]", "Invalid"),
        (
            "portClash",
            f"variables.portClash.join('; ') + {cel.quote(cel.PORT_CLASH_ADVICE)}",
            "Invalid",
        ),
    )
    for name, message, reason in kinds:
        # Only when every earlier kind is empty, as the webhook stops at the first.
        condition = " || ".join([*earlier, f"variables.{name}.size() == 0"])
        validations.append(_validation(condition, message, reason))
        earlier.append(f"variables.{name}.size() > 0")
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(NAME),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": _PODS,
            "matchConditions": _skips(),
            "variables": variables(defaults, policy),
            "validations": validations,
        },
    }


def warnings() -> JSONDict:
    """The webhook's warnings for a Pod it injected: unknown envoy-inject.io/* annotations and
    port overrides without a config map. Validation runs after mutation, so an injected Pod is
    the one that now carries the status annotation."""
    unknown, text = cel.unknown_warning()
    validations = [_validation(f"{unknown}.size() == 0", text)]
    validations += [
        _validation(cel.ignored_port_warning(name), cel.quote(cel.ignored_port_text(name)))
        for name in overrides.PORT_KEYS
    ]
    injected = cel.SKIPS["already_injected"].removeprefix("!")
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(WARNINGS),
        "spec": {
            "failurePolicy": "Ignore",  # a warning must never stop a Pod
            "matchConstraints": _PODS,
            "matchConditions": [{"name": "injected", "expression": injected}],
            "variables": [{"name": "annotations", "expression": "object.metadata.annotations"}],
            "validations": validations,
        },
    }


def _binding(kind: str, name: str, excluded: Collection[str], **extra: Any) -> JSONDict:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": _meta(name),
        "spec": {"policyName": name, "matchResources": match_resources(excluded), **extra},
    }


def render(defaults: SidecarSpec, policy: Policy, excluded: Collection[str]) -> list[JSONDict]:
    return [
        mutating(defaults, policy),
        _binding("MutatingAdmissionPolicyBinding", NAME, excluded),
        validating(defaults, policy),
        _binding("ValidatingAdmissionPolicyBinding", NAME, excluded, validationActions=["Deny"]),
        warnings(),
        _binding(
            "ValidatingAdmissionPolicyBinding", WARNINGS, excluded, validationActions=["Warn"]
        ),
    ]


class _Dumper(yaml.SafeDumper):
    """Multi-line CEL as YAML block text, so a reviewer reads it as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)

HEADER: Final = (
    "# Generated by `envoy-injector policy` from the injector's settings; do not edit.\n"
    "# Regenerate: envoy-injector policy --config <config.yaml> -o manifests/policy\n"
)


def dump(docs: list[JSONDict]) -> str:
    body = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, width=100)
    return HEADER + body
