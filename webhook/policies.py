"""The admission policies that inject the sidecar without a webhook (Kubernetes >= 1.36).

`render(defaults, policy, excluded)` returns six objects, from the same settings the webhook
reads:
- MutatingAdmissionPolicy ``envoy-injector`` and its binding: adds the sidecar, volume and status
  annotation (JSON Patch written in CEL, pieces from cel.py) to a Pod that has no problem, and
  only the label envoy-inject.io/refused to a Pod the webhook would refuse;
- ValidatingAdmissionPolicy ``envoy-injector`` (binding: Deny, only Pods with that label):
  refuses them with the webhook's message;
- ValidatingAdmissionPolicy ``envoy-injector-warnings`` (binding: Warn, only Pods labelled
  envoy-inject.io/warned, which the mutating policy adds as the webhook does): the webhook's
  warnings.

The bindings select what the webhook configuration selects: labelled namespaces but not the
system ones or the excluded ones, and not Pods labelled envoy-inject=disabled. The skips that
selectors cannot express are a variable (``served``), not matchConditions.

Why the shape: the API server converts the whole Pod for CEL once per evaluation step of each
policy (match conditions, validations, messages, audit annotations, mutation), and that, not our
CEL, is most of a policy's cost (profiles: BENCHMARKS.md, "Injection engines"). So no policy has
matchConditions, and the validating policies run only on the Pods they refuse or warn about.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Final

import yaml

from webhook import cel, inject, overrides
from webhook.spec import (
    ANNOTATION_PREFIX,
    INJECT_LABEL,
    STATUS_ANNOTATION,
    WARNED_LABEL,
    Policy,
    SidecarSpec,
)

API_VERSION: Final = "admissionregistration.k8s.io/v1"
# The mutating policy marks a Pod it leaves uninjected because the webhook would refuse it; only
# such Pods are selected for the refusing policy. Every policy the API server runs on a Pod costs
# a conversion of the whole Pod per evaluation step, so valid Pods (nearly all) skip it. A mark
# never outlives admission: the refusing policy checks the Pod itself, not the label, and finds
# the problem that made the mark (a valid Pod carrying the label of its own is admitted).
REFUSAL_LABEL: Final = ANNOTATION_PREFIX + "refused"
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


def served() -> str:
    """CEL: true unless the webhook would skip the Pod for a reason selectors cannot express.

    A variable, not matchConditions: the API server converts the whole Pod for CEL once per
    evaluation step, and matchConditions are a step of their own (one more conversion per Pod
    and policy; see BENCHMARKS.md, "Injection engines")."""
    return " && ".join(f"({expression})" for expression in cel.SKIPS.values())


def variables(defaults: SidecarSpec, policy: Policy) -> list[JSONDict]:
    found = [
        ("annotations", "object.metadata.?annotations.orValue({})"),
        ("served", served()),
        ("overridden", cel.OVERRIDDEN),
    ]
    found += cel.values(defaults)
    found += cel.problems(policy, defaults)
    found.append(("warned", warned()))
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


def warned() -> str:
    """CEL: true when the webhook would warn about the Pod (and so label it WARNED_LABEL)."""
    unknown, _ = cel.unknown_warning()
    ignored = " || ".join(f"!({cel.ignored_port_warning(name)})" for name in overrides.PORT_KEYS)
    return f"variables.overridden && ({unknown}.size() > 0 || {ignored})"


def _label(key: str, *, unless_present: bool) -> str:
    """JSON Patch ops (CEL) that add the label ``key``: "true", creating the labels first."""
    escaped = f"jsonpatch.escapeKey({cel.quote(key)})"
    add = f"[JSONPatch{{op: 'add', path: '/metadata/labels/' + {escaped}, value: 'true'}}]"
    if unless_present:
        add = f"({cel.quote(key)} in variables.labels ? [] : {add})"
    return (
        "(has(object.metadata.labels) ? [] :\n"
        "    [JSONPatch{op: 'add', path: '/metadata/labels', value: {}}]) +\n"
        f"  {add}"
    )


def _by_overrides(piece: Callable[[SidecarSpec | None], str], defaults: SidecarSpec) -> str:
    """A Pod without override annotations gets the piece with the defaults written in as
    constants; only a Pod with some pays for building it from the per-Pod variables."""
    return f"(variables.overridden ? ({piece(None)}) : ({piece(defaults)}))"


def _patch(defaults: SidecarSpec) -> str:
    """The JSON Patch: container (native: first init container), volume, status annotation.
    Absent arrays and maps are added first: JSON Patch cannot append to what is not there."""
    init = _by_overrides(lambda d: cel.container(native=True, defaults=d), defaults)
    regular = _by_overrides(lambda d: cel.container(native=False, defaults=d), defaults)
    volume = _by_overrides(cel.volume, defaults)
    status = _by_overrides(cel.status, defaults)
    status_key = f"jsonpatch.escapeKey({cel.quote(STATUS_ANNOTATION)})"
    # Absent arrays are added empty first, then the item as into an existing one. (A list of
    # typed CEL objects as a patch value panics kube-apiserver 1.36.3, in cel-go's list
    # ConvertToNative to structpb.Value; the values are maps now, but one shape of op is simpler.)
    return (
        "!variables.served ? [] :\n"
        # A Pod the webhook would refuse is left uninjected and marked for the refusing policy.
        f"!variables.ok ? (\n  {_label(REFUSAL_LABEL, unless_present=False)}\n) :\n"
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
        f"{status_key}, value: {status}}}] +\n"
        f"(!variables.warned ? [] : (\n  {_label(WARNED_LABEL, unless_present=True)}\n))"
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
            "variables": variables(defaults, policy),
            "mutations": [
                {"patchType": "JSONPatch", "jsonPatch": {"expression": _patch(defaults)}}
            ],
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
        condition = " || ".join(["!variables.served", *earlier, f"variables.{name}.size() == 0"])
        validations.append(_validation(condition, message, reason))
        earlier.append(f"variables.{name}.size() > 0")
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(NAME),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": _PODS,
            "variables": variables(defaults, policy),
            "validations": validations,
        },
    }


def warnings() -> JSONDict:
    """The webhook's warnings for a Pod it injected: unknown envoy-inject.io/* annotations and
    port overrides without a config map. Validation runs after mutation, so an injected Pod is
    the one that now carries the status annotation."""
    unknown, text = cel.unknown_warning()
    passed = "!variables.injected || "  # only an injected Pod is warned about (no matchConditions)
    validations = [_validation(f"{passed}{unknown}.size() == 0", text)]
    validations += [
        _validation(
            f"{passed}{cel.ignored_port_warning(name)}", cel.quote(cel.ignored_port_text(name))
        )
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
            "variables": [
                {"name": "annotations", "expression": "object.metadata.?annotations.orValue({})"},
                {"name": "injected", "expression": injected},
            ],
            "validations": validations,
        },
    }


def _binding(kind: str, name: str, match: JSONDict, **extra: Any) -> JSONDict:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": _meta(name),
        "spec": {"policyName": name, "matchResources": match, **extra},
    }


def labelled_match(excluded: Collection[str], label: str) -> JSONDict:
    """A validating policy's selectors: the mutating policy's, and only Pods it labelled."""
    match = match_resources(excluded)
    match["objectSelector"]["matchExpressions"].append({"key": label, "operator": "Exists"})
    return match


def render(defaults: SidecarSpec, policy: Policy, excluded: Collection[str]) -> list[JSONDict]:
    return [
        mutating(defaults, policy),
        _binding("MutatingAdmissionPolicyBinding", NAME, match_resources(excluded)),
        validating(defaults, policy),
        _binding(
            "ValidatingAdmissionPolicyBinding",
            NAME,
            labelled_match(excluded, REFUSAL_LABEL),
            validationActions=["Deny"],
        ),
        warnings(),
        _binding(
            "ValidatingAdmissionPolicyBinding",
            WARNINGS,
            labelled_match(excluded, WARNED_LABEL),
            validationActions=["Warn"],
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
