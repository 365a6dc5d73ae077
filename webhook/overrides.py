"""The envoy-inject.io/* annotations that override the sidecar: key -> parser -> accepted form.

``resolve`` turns the operator's defaults plus a Pod's annotations into the spec for that Pod.
It collects every bad value before raising, so a user fixes them all in one round, and it
returns warnings for annotations it recognises but ignores (kubectl prints those).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook import errors, quantity
from webhook.spec import ANNOTATION_PREFIX, STATUS_ANNOTATION, Policy, SidecarSpec

_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
# No '$': the kubelet expands $(VAR) in args, and the cluster name is an argument.
_CLUSTER: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
# Registry/repository[:tag][@digest]; no whitespace or shell-ish characters.
_IMAGE: Final = re.compile(
    r"[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)
LOG_LEVELS: Final = ("trace", "debug", "info", "warning", "warn", "error", "critical", "off")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("expected a port number from 1 to 65535")
    return int(text)


def _bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError('expected "true" or "false"')
    return text == "true"


def _image(text: str) -> str:
    if len(text) > 512 or not _IMAGE.fullmatch(text):
        raise ValueError("expected an image reference such as envoyproxy/envoy:v1.40.0")
    return text


def _config_map(text: str) -> str:
    if len(text) > 253 or not _DNS_SUBDOMAIN.fullmatch(text):
        raise ValueError("expected a ConfigMap name (lower-case DNS subdomain, at most 253)")
    return text


def _cluster(text: str) -> str:
    if not _CLUSTER.fullmatch(text):
        raise ValueError("expected 1-253 letters, digits, '.', '_' or '-'")
    return text


def _quantity(text: str) -> str:
    try:
        quantity.parse(text)
    except ValueError:
        raise ValueError(f"expected {quantity.FORM}") from None
    return text


def _log_level(text: str) -> str:
    if text not in LOG_LEVELS:
        raise ValueError("expected one of " + ", ".join(LOG_LEVELS))
    return text


def _concurrency(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ValueError("expected a whole number of worker threads from 1 to 64")
    return int(text)


@dataclass(frozen=True)
class Override:
    parse: Callable[[str], Any]
    field: str  # SidecarSpec field, or "resources.<field>"


TABLE: Final[Mapping[str, Override]] = {
    "inject": Override(_bool, ""),  # read by decide(); validated here like the rest
    "image": Override(_image, "image"),
    "proxy-port": Override(_port, "proxy_port"),
    "app-port": Override(_port, "app_port"),
    "admin-port": Override(_port, "admin_port"),
    "config-map": Override(_config_map, "config_map"),
    "service-cluster": Override(_cluster, "cluster"),
    "cpu-request": Override(_quantity, "resources.cpu_request"),
    "cpu-limit": Override(_quantity, "resources.cpu_limit"),
    "memory-request": Override(_quantity, "resources.memory_request"),
    "memory-limit": Override(_quantity, "resources.memory_limit"),
    "log-level": Override(_log_level, "log_level"),
    "concurrency": Override(_concurrency, "concurrency"),
    "native-sidecar": Override(_bool, "native"),
    "hold-application": Override(_bool, "hold_application"),
}
PORT_KEYS: Final = ("proxy-port", "app-port", "admin-port")


@dataclass(frozen=True)
class Resolution:
    spec: SidecarSpec
    warnings: tuple[str, ...] = ()


def ours(annotations: Mapping[str, Any]) -> dict[str, Any]:
    """The envoy-inject.io/* annotations, without the prefix (the status record excluded)."""
    return {
        key[len(ANNOTATION_PREFIX) :]: value
        for key, value in annotations.items()
        if key.startswith(ANNOTATION_PREFIX) and key != STATUS_ANNOTATION
    }


def _parse_all(given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    values: dict[str, Any] = {}
    problems: list[str] = []
    warnings: list[str] = []
    for name, raw in sorted(given.items()):
        key = ANNOTATION_PREFIX + name
        override = TABLE.get(name)
        if override is None:
            warnings.append(
                f"{key} is not a known annotation and was ignored; known: "
                + ", ".join(sorted(TABLE))
            )
            continue
        if not isinstance(raw, str):
            problems.append(f"{key}: {raw!r} is not a string")
            continue
        try:
            values[name] = override.parse(raw)
        except ValueError as exc:
            problems.append(f"{key}: {raw!r} is invalid; {exc}")
    return values, problems, warnings


def check_combinations(values: Mapping[str, Any], spec: SidecarSpec) -> list[str]:
    """The problems of the final spec that no single value has alone (defaults included)."""
    problems = []
    if values.get("hold-application") and values.get("native-sidecar") is False:
        problems.append(
            f'{ANNOTATION_PREFIX}hold-application: "true" needs the native sidecar, but '
            f'{ANNOTATION_PREFIX}native-sidecar is "false"; remove one of them'
        )
    ports = {"proxy-port": spec.proxy_port, "app-port": spec.app_port}
    ports["admin-port"] = spec.admin_port
    if len(set(ports.values())) < len(ports):
        problems.append(
            "the proxy, app and admin ports must differ; got "
            + ", ".join(f"{k}={v}" for k, v in ports.items())
        )
    res = spec.resources
    for kind, request, limit in (
        ("cpu", res.cpu_request, res.cpu_limit),
        ("memory", res.memory_request, res.memory_limit),
    ):
        if quantity.parse(request) > quantity.parse(limit):
            problems.append(
                f"{ANNOTATION_PREFIX}{kind}-request {request!r} is above the {kind} limit "
                f"{limit!r}; a request must not exceed its limit"
            )
    return problems


def _check_policy(values: Mapping[str, Any], spec: SidecarSpec, policy: Policy) -> list[str]:
    violations = [
        f"{ANNOTATION_PREFIX}{name}: overriding {name} is not allowed by the injector's policy"
        f" (allowed: {', '.join(sorted(policy.allowed_overrides)) or 'none'})"
        for name in sorted(values)
        if name not in policy.allowed_overrides
    ]
    if "image" in values and not spec.image.startswith(policy.allowed_image_prefixes):
        violations.append(
            f"{ANNOTATION_PREFIX}image: {spec.image!r} is not from an allowed registry; allowed "
            "prefixes: " + ", ".join(policy.allowed_image_prefixes)
        )
    res = spec.resources
    for kind, ceiling, amounts in (
        ("cpu", policy.max_cpu, (res.cpu_request, res.cpu_limit)),
        ("memory", policy.max_memory, (res.memory_request, res.memory_limit)),
    ):
        for which, amount in zip(("request", "limit"), amounts, strict=True):
            name = f"{kind}-{which}"
            if name in values and ceiling and quantity.parse(amount) > quantity.parse(ceiling):
                violations.append(
                    f"{ANNOTATION_PREFIX}{name}: {amount!r} is above the policy's ceiling "
                    f"{ceiling!r} for {kind}"
                )
    return violations


def _apply(spec: SidecarSpec, values: Mapping[str, Any]) -> SidecarSpec:
    if not values:
        return spec
    top: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    for name, value in values.items():
        target = TABLE[name].field
        if target.startswith("resources."):
            resources[target.removeprefix("resources.")] = value
        elif target:
            top[target] = value
    if values.get("hold-application"):
        top["native"] = True  # only a native sidecar's startupProbe makes the kubelet wait
    if resources:
        top["resources"] = dataclasses.replace(spec.resources, **resources)
    return dataclasses.replace(spec, **top)


def resolve(defaults: SidecarSpec, annotations: Mapping[str, Any], policy: Policy) -> Resolution:
    """The spec for one Pod. Raises AnnotationError (every bad value) or PolicyViolation."""
    given = ours(annotations)
    if not given:
        return _resolve_defaults(defaults, policy)  # most Pods: nothing to parse or check
    return _resolve(defaults, given, policy)


@functools.lru_cache(maxsize=16)
def _resolve_defaults(defaults: SidecarSpec, policy: Policy) -> Resolution:
    """resolve() without annotations: the same checks, once per (frozen) config."""
    return _resolve(defaults, {}, policy)


def _resolve(defaults: SidecarSpec, given: Mapping[str, Any], policy: Policy) -> Resolution:
    values, problems, warnings = _parse_all(given)
    if problems:
        raise errors.AnnotationError(problems)
    ports_given = [k for k in PORT_KEYS if k in values]
    if ports_given and "config-map" not in values:
        # The sidecar's declared ports must match the Envoy config it runs; only a pod that
        # brings its own config can move them.
        warnings.extend(
            f"{ANNOTATION_PREFIX}{k} was ignored: a port override takes effect only together "
            f"with {ANNOTATION_PREFIX}config-map naming a config that listens there"
            for k in ports_given
        )
        values = {k: v for k, v in values.items() if k not in PORT_KEYS}
    spec = _apply(defaults, values)
    problems = check_combinations(values, spec)
    if problems:
        raise errors.AnnotationError(problems)
    violations = _check_policy(values, spec, policy)
    if violations:
        raise errors.PolicyViolation(violations)
    return Resolution(spec, tuple(warnings))
