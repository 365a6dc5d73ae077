"""Make the sidecar's resources fit the namespace and the Pod it joins, or say why they cannot.

The API server checks a Pod's resources after every mutating webhook has run, in three places
this module mirrors so that a valid Pod never comes back invalid because of our container:

- the namespace's LimitRanges (LimitRanger validates the final Pod; its defaults were applied to
  the user's containers before we saw them, never to ours): per-container ``max``, ``min`` and
  ``maxLimitRequestRatio``, and the per-Pod ``max`` of the summed limits;
- the Pod's own ``spec.resources`` (pod-level resources): the containers' summed requests must
  stay within the Pod's, and no container's limit may exceed the Pod's;
- ResourceQuotas that track a compute resource: every container must then state it, and the
  Pod's total must fit in what the quota has left.

Defaults are moved to fit, each move reported as a warning (kubectl prints it). A value the Pod
chose by annotation is never moved: that is refused, naming the object and the annotation, as is
anything that would leave Envoy less than it needs to run at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Final

from webhook import errors, quantity
from webhook.spec import ANNOTATION_PREFIX, RESOURCE_OVERRIDES, Resources

# Below these Envoy does not start or cannot serve; a fit that goes lower is refused.
FLOORS: Final = {"cpu": Decimal("0.01"), "memory": Decimal(64 * 2**20)}
# What the sidecar states for ephemeral storage when a LimitRange or a quota makes it say
# something: Envoy writes nothing (its root filesystem is read-only), only its log.
EPHEMERAL_DEFAULT: Final = {"request": "16Mi", "limit": "64Mi"}
_FIELD: Final = {
    ("cpu", "request"): "cpu_request",
    ("cpu", "limit"): "cpu_limit",
    ("memory", "request"): "memory_request",
    ("memory", "limit"): "memory_limit",
    ("ephemeral-storage", "request"): "ephemeral_storage_request",
    ("ephemeral-storage", "limit"): "ephemeral_storage_limit",
}
COMPUTE: Final = ("cpu", "memory", "ephemeral-storage")


@dataclass(frozen=True)
class Fitted:
    resources: Resources
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Namespace:
    """What the webhook knows of a namespace besides the Pod: LimitRanges and ResourceQuotas,
    as the API server returns them (raw dicts)."""

    limit_ranges: Sequence[Mapping[str, Any]] = ()
    quotas: Sequence[Mapping[str, Any]] = ()


EMPTY: Final = Namespace()


def _q(text: Any) -> Decimal | None:
    try:
        return quantity.parse(str(text))
    except ValueError:
        return None


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


class _Work:
    """The sidecar's amounts as they are being fitted, with what changed and what cannot."""

    def __init__(self, resources: Resources, explicit: frozenset[str]) -> None:
        self.res = resources
        self.explicit = explicit
        self.warnings: list[str] = []
        self.problems: list[str] = []

    def get(self, resource: str, which: str) -> str | None:
        value: str | None = getattr(self.res, _FIELD[(resource, which)])
        return value

    def value(self, resource: str, which: str) -> Decimal | None:
        text = self.get(resource, which)
        return None if text is None else _q(text)

    def annotation(self, resource: str, which: str) -> str:
        return f"{ANNOTATION_PREFIX}{resource}-{which}"

    def move(self, resource: str, which: str, to: str, *, because: str) -> None:
        """Set an amount, or record a problem when the Pod chose it by annotation."""
        current = self.get(resource, which)
        key = f"{resource}-{which}"
        if key in self.explicit:
            self.problems.append(
                f"{self.annotation(resource, which)}: {current!r} does not fit: {because}; "
                f"set it to {to!r} or remove the annotation"
            )
            return
        self.res = dataclasses.replace(self.res, **{_FIELD[(resource, which)]: to})
        was = f"{current}" if current is not None else "unset"
        choose = (
            f"; set {self.annotation(resource, which)} to choose another value"
            if key in RESOURCE_OVERRIDES
            else ""
        )
        self.warnings.append(
            f"the envoy-sidecar {resource} {which} was set to {to} (default {was}) because "
            f"{because}{choose}"
        )


def _container_items(
    ranges: Iterable[Mapping[str, Any]], kind: str
) -> list[tuple[str, dict[str, Any]]]:
    items = []
    for limit_range in ranges:
        spec = limit_range.get("spec")
        for item in spec.get("limits", []) if isinstance(spec, dict) else []:
            if isinstance(item, dict) and item.get("type") == kind:
                items.append((_name(limit_range), item))
    return items


def _amounts(container: Mapping[str, Any], which: str) -> Mapping[str, Any]:
    resources = container.get("resources")
    amounts = resources.get(which) if isinstance(resources, dict) else None
    return amounts if isinstance(amounts, dict) else {}


def _app_containers(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers that run beside the sidecar: app containers and restartable inits."""
    spec = pod.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    found: list[Mapping[str, Any]] = [
        c for c in spec.get("containers") or [] if isinstance(c, dict)
    ]
    found += [
        c
        for c in spec.get("initContainers") or []
        if isinstance(c, dict) and c.get("restartPolicy") == "Always"
    ]
    return found


def _summed(pod: Mapping[str, Any], which: str, resource: str) -> Decimal:
    total = Decimal(0)
    for container in _app_containers(pod):
        amount = _q(_amounts(container, which).get(resource, "0"))
        total += amount or 0
    return total


def _ratio_exceeded(request: Decimal | None, limit: Decimal | None, ratio: Decimal | None) -> bool:
    """LimitRanger's maxLimitRequestRatio: limit/request above the ratio, or no request at all
    under a limit (a ratio of 0 or an amount not stated constrains nothing)."""
    if not ratio or request is None or limit is None:
        return False
    return request == 0 or limit / request > ratio


def _fit_container_ranges(work: _Work, ranges: Sequence[Mapping[str, Any]]) -> None:
    for owner, item in _container_items(ranges, "Container"):
        where = f'the LimitRange "{owner}"'
        for resource, text in (item.get("max") or {}).items():
            if resource not in COMPUTE:
                work.problems.append(
                    f"{where} requires every container to set a limit for {resource}, which "
                    "the Envoy sidecar does not use; exempt this Pod with the label "
                    "envoy-inject=disabled or change the LimitRange"
                )
                continue
            ceiling = _q(text)
            limit = work.value(resource, "limit")
            if ceiling is not None and (limit is None or limit > ceiling):
                work.move(
                    resource,
                    "limit",
                    str(text),
                    because=f"{where} allows at most {text} per container",
                )
        for resource, text in (item.get("min") or {}).items():
            floor = _q(text)
            if resource not in COMPUTE or floor is None:
                continue
            for which in ("request", "limit"):
                amount = work.value(resource, which)
                if amount is not None and amount < floor:
                    work.move(
                        resource,
                        which,
                        str(text),
                        because=f"{where} needs at least {text} per container",
                    )
        for resource, text in (item.get("maxLimitRequestRatio") or {}).items():
            ratio, limit = _q(text), work.value(resource, "limit")
            request = work.value(resource, "request")
            if ratio is None or limit is None or not _ratio_exceeded(request, limit, ratio):
                continue
            work.move(
                resource,
                "request",
                _format(resource, limit / ratio),
                because=f"{where} allows a limit at most {text} times the request",
            )


def _fit_pod_ranges(
    work: _Work, pod: Mapping[str, Any], ranges: Sequence[Mapping[str, Any]]
) -> None:
    for owner, item in _container_items(ranges, "Pod"):
        for resource, text in (item.get("max") or {}).items():
            ceiling, limit = _q(text), work.value(resource, "limit")
            if resource not in COMPUTE or ceiling is None or limit is None:
                continue
            room = ceiling - _summed(pod, "limits", resource)
            if limit > room:
                work.move(
                    resource,
                    "limit",
                    _format(resource, max(room, Decimal(0))),
                    because=f'the LimitRange "{owner}" allows at most {text} per Pod and the '
                    f"Pod's containers already use {_format(resource, ceiling - room)}",
                )


def _fit_pod_level(work: _Work, pod: Mapping[str, Any]) -> None:
    spec = pod.get("spec")
    pod_resources = spec.get("resources") if isinstance(spec, dict) else None
    if not isinstance(pod_resources, dict):
        return
    for resource, text in (pod_resources.get("limits") or {}).items():
        ceiling, limit = _q(text), work.value(resource, "limit")
        if resource in COMPUTE and ceiling is not None and limit is not None and limit > ceiling:
            work.move(
                resource,
                "limit",
                str(text),
                because=f"the Pod's spec.resources limits {resource} to {text}",
            )
    for resource, text in (pod_resources.get("requests") or {}).items():
        total, request = _q(text), work.value(resource, "request")
        if resource not in COMPUTE or total is None or request is None:
            continue
        room = total - _summed(pod, "requests", resource)
        if request > room:
            work.move(
                resource,
                "request",
                _format(resource, max(room, Decimal(0))),
                because=f"the Pod's spec.resources requests {text} {resource} in all and its "
                f"containers already request {_format(resource, total - room)}",
            )


def _state_tracked(work: _Work, namespace: Namespace) -> None:
    """Ephemeral storage, when a quota or a LimitRange makes every container state it.

    A quota on requests.X or limits.X refuses containers that leave X out; LimitRanger refuses a
    container without a limit under ``max`` and without a request under ``min``.
    """
    needed: set[tuple[str, str]] = set()
    for quota in namespace.quotas:
        for key in (quota.get("spec") or {}).get("hard") or {}:
            which, _, resource = str(key).rpartition(".")
            needed.add((resource, "limit" if which == "limits" else "request"))
    for _, item in _container_items(namespace.limit_ranges, "Container"):
        needed.update((str(r), "limit") for r in item.get("max") or {})
        needed.update((str(r), "request") for r in item.get("min") or {})
        for resource in item.get("maxLimitRequestRatio") or {}:
            needed.update({(str(resource), "limit"), (str(resource), "request")})
    for which in ("request", "limit"):
        if ("ephemeral-storage", which) in needed and work.get("ephemeral-storage", which) is None:
            field = _FIELD[("ephemeral-storage", which)]
            work.res = dataclasses.replace(work.res, **{field: EPHEMERAL_DEFAULT[which]})


def _check_quotas(work: _Work, pod: Mapping[str, Any], namespace: Namespace) -> None:
    for quota in namespace.quotas:
        hard = (quota.get("spec") or {}).get("hard") or {}
        used = (quota.get("status") or {}).get("used") or {}
        for key, text in hard.items():
            which, _, resource = str(key).rpartition(".")
            which = which or "requests"
            if resource not in COMPUTE or which not in ("requests", "limits"):
                continue
            ours = work.value(resource, which.removesuffix("s"))
            limit, spent = _q(text), _q(used.get(key, "0")) or Decimal(0)
            if ours is None or limit is None:
                continue
            pod_total = _summed(pod, which, resource) + ours
            if spent + pod_total > limit:
                left = _format(resource, max(limit - spent, Decimal(0)))
                work.problems.append(
                    f'the ResourceQuota "{_name(quota)}" has {left} of {key} left; this Pod '
                    f"needs {_format(resource, pod_total)} with its Envoy sidecar "
                    f"({_format(resource, ours)}); raise the quota, lower "
                    f"{work.annotation(resource, which.removesuffix('s'))}, or opt out with the "
                    "label envoy-inject=disabled"
                )


def _check_container_ranges(work: _Work, ranges: Sequence[Mapping[str, Any]]) -> None:
    """After the Pod-level fit (which may have lowered a request or a limit), the per-container
    rules must still hold; where both cannot, the Pod is refused naming both."""
    for owner, item in _container_items(ranges, "Container"):
        where = f'the LimitRange "{owner}"'
        for resource, text in (item.get("min") or {}).items():
            floor, request = _q(text), work.value(str(resource), "request")
            if floor is not None and request is not None and request < floor:
                left = work.get(resource, "request")
                work.problems.append(
                    f"{where} needs a {resource} request of at least {text} per container, but "
                    f"the Pod's spec.resources leave the sidecar only {left}"
                )
        for resource, text in (item.get("maxLimitRequestRatio") or {}).items():
            limit = work.value(resource, "limit")
            if _ratio_exceeded(work.value(resource, "request"), limit, _q(text)):
                work.problems.append(
                    f"{where} allows a {resource} limit at most {text} times the request, but "
                    f"the Pod's spec.resources leave the sidecar a request of "
                    f"{work.get(resource, 'request')} for a limit of {work.get(resource, 'limit')}"
                )


def _check_floors(work: _Work) -> None:
    for resource, floor in FLOORS.items():
        limit = work.value(resource, "limit")
        if limit is not None and limit < floor:
            work.problems.append(
                f"the Envoy sidecar would get a {resource} limit of {work.get(resource, 'limit')}, "
                f"below the {_format(resource, floor)} it needs to run; "
                "make room in the LimitRange or the Pod's resources, or opt out with the "
                "label envoy-inject=disabled"
            )
    for resource in COMPUTE:
        request, limit = work.value(resource, "request"), work.value(resource, "limit")
        if request is not None and limit is not None and request > limit:
            # Fitting lowered a limit under the default request: the request follows it.
            work.move(
                resource,
                "request",
                work.get(resource, "limit") or "0",
                because="a request must not exceed its limit",
            )


def fit(
    resources: Resources,
    pod: Mapping[str, Any],
    namespace: Namespace,
    *,
    explicit: frozenset[str] = frozenset(),
) -> Fitted:
    """Resources for the sidecar of ``pod`` that the API server will accept.

    ``explicit`` names the overrides the Pod set by annotation ("cpu-limit", ...): those are
    refused rather than moved. Raises ResourcesDoNotFit naming every conflict at once.
    """
    work = _Work(resources, explicit)
    _state_tracked(work, namespace)
    _fit_container_ranges(work, namespace.limit_ranges)
    _fit_pod_ranges(work, pod, namespace.limit_ranges)
    _fit_pod_level(work, pod)
    _check_floors(work)
    _check_container_ranges(work, namespace.limit_ranges)
    if not work.problems:
        _check_quotas(work, pod, namespace)
    if work.problems:
        raise errors.ResourcesDoNotFit(work.problems)
    return Fitted(work.res, tuple(work.warnings))


def _format(resource: str, value: Decimal) -> str:
    """A quantity string: millicores for CPU, Mi (or bytes) for memory and storage."""
    if resource == "cpu":
        millis = (value * 1000).to_integral_value(rounding=ROUND_CEILING)
        return f"{millis}m"
    mebi = value / 2**20
    if mebi == mebi.to_integral_value():
        return f"{int(mebi)}Mi"
    return str(int(value.to_integral_value(rounding=ROUND_CEILING)))
