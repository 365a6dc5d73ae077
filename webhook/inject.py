"""The pure core: whether a Pod gets the sidecar, and the JSON Patch ops that add it.

Works on the raw Pod dict as the API server sent it. A typed model would drop fields it does
not know, and a patch computed from it would then remove them.
"""

import dataclasses
import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from webhook import errors, limits, overrides, patch, render
from webhook.patch import PatchOp
from webhook.spec import (
    ANNOTATION_PREFIX,
    CONTAINER_NAME,
    INJECT_LABEL,
    RESOURCE_OVERRIDES,
    STATUS_ANNOTATION,
    VOLUME_NAME,
    WARNED_LABEL,
    Policy,
    SidecarSpec,
)

JSONDict = dict[str, Any]

# The API server's own namespaces: a broken webhook there could stop the control plane.
SYSTEM_NAMESPACES: Final = frozenset({"kube-system", "kube-public", "kube-node-lease"})


class SkipReason(StrEnum):
    """Why a Pod passes through unchanged; the values are shared by logs, metrics and messages."""

    NOT_POD_CREATE = "not_pod_create"
    EXCLUDED_NAMESPACE = "excluded_namespace"
    LABEL_DISABLED = "label_disabled"
    ANNOTATION_DISABLED = "annotation_disabled"
    ALREADY_INJECTED = "already_injected"
    HOST_NETWORK = "host_network"
    WINDOWS = "windows_pod"


EXPLANATIONS: Final[Mapping[SkipReason, str]] = {
    SkipReason.NOT_POD_CREATE: "only Pod CREATE requests are mutated",
    SkipReason.EXCLUDED_NAMESPACE: "the namespace is excluded from injection",
    SkipReason.LABEL_DISABLED: f"the Pod is labelled {INJECT_LABEL}=disabled",
    SkipReason.ANNOTATION_DISABLED: f'the Pod is annotated {ANNOTATION_PREFIX}inject: "false"',
    SkipReason.ALREADY_INJECTED: f"the Pod already carries {STATUS_ANNOTATION}",
    SkipReason.HOST_NETWORK: "the Pod uses the host network, where the proxy's ports would "
    "collide with the node's",
    SkipReason.WINDOWS: "the Pod runs on Windows nodes (spec.os.name: windows), and the Envoy "
    "sidecar image is Linux only",
}


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: SkipReason | None = None

    @property
    def explanation(self) -> str:
        return EXPLANATIONS[self.reason] if self.reason else "the sidecar is injected"


INJECT: Final = Decision(True)


_EMPTY: Final[Mapping[str, Any]] = {}


def _map(obj: Any, key: str) -> Mapping[str, Any]:
    # dict, not the Mapping ABC: parsed JSON is made of dicts, and an ABC check costs ~10x.
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else _EMPTY


def decide(pod: Mapping[str, Any], *, namespace: str, excluded: Collection[str] = ()) -> Decision:
    """Whether ``pod`` (being created in ``namespace``) should get the sidecar."""
    meta = _map(pod, "metadata")
    if namespace in SYSTEM_NAMESPACES or namespace in excluded:
        return Decision(False, SkipReason.EXCLUDED_NAMESPACE)
    if _map(meta, "labels").get(INJECT_LABEL) == "disabled":
        return Decision(False, SkipReason.LABEL_DISABLED)
    annotations = _map(meta, "annotations")
    if annotations.get(ANNOTATION_PREFIX + "inject") == "false":
        return Decision(False, SkipReason.ANNOTATION_DISABLED)
    if STATUS_ANNOTATION in annotations:
        return Decision(False, SkipReason.ALREADY_INJECTED)
    pod_spec = _map(pod, "spec")
    if pod_spec.get("hostNetwork") is True:
        return Decision(False, SkipReason.HOST_NETWORK)
    if _map(pod_spec, "os").get("name") == "windows":
        return Decision(False, SkipReason.WINDOWS)
    return INJECT


def service_cluster(pod: Mapping[str, Any], *, fallback: str = "") -> str:
    """The Pod's app label, else its controller's name, else its own (generate)name.

    A ReplicaSet owner is named <deployment>-<pod-template-hash>; the hash is dropped so every
    Pod of a Deployment reports the same cluster across rollouts.
    """
    meta = _map(pod, "metadata")
    labels = _map(meta, "labels")
    for key in ("app", "app.kubernetes.io/name"):
        if isinstance(labels.get(key), str) and labels[key]:
            return str(labels[key])
    owners = meta.get("ownerReferences")
    for owner in owners if isinstance(owners, list) else []:
        if isinstance(owner, dict) and owner.get("controller") is True:
            name = owner.get("name")
            if isinstance(name, str) and name:
                template_hash = labels.get("pod-template-hash")
                if owner.get("kind") == "ReplicaSet" and isinstance(template_hash, str):
                    return name.removesuffix("-" + template_hash) or name
                return name
    for candidate in (meta.get("name"), str(meta.get("generateName") or "").rstrip("-"), fallback):
        if isinstance(candidate, str) and candidate:
            return candidate
    return "envoy-sidecar"


def _run_by_job(pod: Mapping[str, Any]) -> bool:
    owners = _map(pod, "metadata").get("ownerReferences")
    return any(
        isinstance(o, dict) and o.get("controller") is True and o.get("kind") == "Job"
        for o in (owners if isinstance(owners, list) else [])
    )


def _names(spec: Mapping[str, Any], key: str) -> set[str]:
    items = spec.get(key)
    if not isinstance(items, list):
        return set()
    return {item["name"] for item in items if isinstance(item, dict) and "name" in item}


def _check_clashes(pod: Mapping[str, Any]) -> None:
    pod_spec = _map(pod, "spec")
    taken = []
    if CONTAINER_NAME in _names(pod_spec, "containers") | _names(pod_spec, "initContainers"):
        taken.append(f"a container named {CONTAINER_NAME!r}")
    if VOLUME_NAME in _names(pod_spec, "volumes"):
        taken.append(f"a volume named {VOLUME_NAME!r}")
    if taken:
        raise errors.NameClash(
            f"the Pod already has {' and '.join(taken)} but no {STATUS_ANNOTATION} annotation; "
            "rename it, or opt out with the label envoy-inject=disabled"
        )


def _check_ports(pod: Mapping[str, Any], spec: SidecarSpec) -> None:
    """Refuse a Pod whose containers already declare a port the sidecar binds: they share one
    network namespace, so the Pod would be created and Envoy would then fail to start."""
    ours = {spec.proxy_port: "proxy-port", spec.admin_port: "admin-port"}
    pod_spec = _map(pod, "spec")
    clashes = []
    for key in ("containers", "initContainers"):
        items = pod_spec.get(key)
        for container in items if isinstance(items, list) else []:
            ports = container.get("ports") if isinstance(container, dict) else None
            for port in ports if isinstance(ports, list) else []:
                if not isinstance(port, dict) or port.get("protocol", "TCP") != "TCP":
                    continue
                number = port.get("containerPort")
                if number in ours:
                    clashes.append(
                        f"container {container.get('name')!r} declares port {number}, where the "
                        f"Envoy sidecar listens ({ANNOTATION_PREFIX}{ours[number]})"
                    )
    if clashes:
        raise errors.PortClash(
            "; ".join(clashes) + f"; move the sidecar with {ANNOTATION_PREFIX}proxy-port or "
            f"{ANNOTATION_PREFIX}admin-port (with {ANNOTATION_PREFIX}config-map naming an Envoy "
            "config that listens there), or opt out with the label envoy-inject=disabled"
        )


def _grace_seconds(pod: Mapping[str, Any]) -> int:
    grace = _map(pod, "spec").get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and not isinstance(grace, bool) and grace >= 0:
        return grace
    return render.DEFAULT_GRACE_SECONDS


def inject(
    pod: Mapping[str, Any],
    spec: SidecarSpec,
    *,
    prefix: Sequence[str | int] = (),
    fallback_cluster: str = "",
) -> list[PatchOp]:
    """The ops that add the sidecar to ``pod``; [] when it already has it.

    Ops are only ``add``: absent arrays and maps are created, nothing the Pod has is replaced.
    ``prefix`` locates ``pod`` inside a larger document (a workload's pod template).
    """
    return sidecar_patch(pod, spec, prefix=prefix, fallback_cluster=fallback_cluster).ops()


def sidecar_patch(
    pod: Mapping[str, Any],
    spec: SidecarSpec,
    *,
    prefix: Sequence[str | int] = (),
    fallback_cluster: str = "",
) -> patch.Encoded:
    """``inject``'s ops, encoded: what the webhook sends.

    The ops depend on the Pod only through the checks, the service cluster, the grace period
    and the slots the three adds land in, so the encoding is cached by those.
    """
    annotations = _map(_map(pod, "metadata"), "annotations")
    if STATUS_ANNOTATION in annotations:
        return patch.NO_OPS
    _check_clashes(pod)
    _check_ports(pod, spec)
    cluster = spec.cluster or service_cluster(pod, fallback=fallback_cluster)
    if spec.native:
        # First of the init containers, so it is up before they run and before the app.
        container_slot = patch.list_slot(pod, ("spec", "initContainers"), at=0)
    else:
        container_slot = patch.list_slot(pod, ("spec", "containers"))
    slots = (
        container_slot,
        patch.list_slot(pod, ("spec", "volumes")),
        patch.map_slot(pod, ("metadata", "annotations"), (STATUS_ANNOTATION,)),
    )
    base = patch.pointer(*prefix) if prefix else ""
    return _rendered(spec, cluster, _grace_seconds(pod), slots, base)


@functools.lru_cache(maxsize=256)  # a few specs x the clusters (apps) x the Pod shapes seen
def _rendered(
    spec: SidecarSpec,
    cluster: str,
    grace_seconds: int,
    slots: tuple[patch.Slot, patch.Slot, patch.Slot],
    base: str,
) -> patch.Encoded:
    container = render.sidecar_container(spec, cluster, grace_seconds=grace_seconds)
    ops = patch.fill(slots[0], [container])
    ops += patch.fill(slots[1], [render.config_volume(spec)])
    ops += patch.fill(slots[2], {STATUS_ANNOTATION: render.status(spec)})
    return patch.encode(_under(base, ops))


def _under(base: str, ops: list[PatchOp]) -> list[PatchOp]:
    """``ops`` moved below ``base`` (a workload's pod template)."""
    if not base:
        return ops
    return [{**op, "path": base + op["path"]} for op in ops]


@dataclass(frozen=True)
class Plan:
    """What to do with one Pod: the decision, the patch, and warnings for the user."""

    decision: Decision
    encoded: patch.Encoded = patch.NO_OPS  # the ops, as the webhook sends them
    warnings: tuple[str, ...] = ()

    @property
    def ops(self) -> list[PatchOp]:
        """The ops as new objects, which the caller may change."""
        return self.encoded.ops()


def plan(
    pod: Mapping[str, Any],
    defaults: SidecarSpec,
    policy: Policy,
    *,
    namespace: str,
    excluded: Collection[str] = (),
    prefix: Sequence[str | int] = (),
    fallback_cluster: str = "",
    job: bool = False,
    namespace_limits: limits.Namespace = limits.EMPTY,
) -> Plan:
    """decide -> resolve annotations -> inject: the one path the webhook and the CLI share.

    ``job`` says the Pod belongs to a Job (the CLI knows from the workload's kind; the webhook
    sees the Pod's controller owner), which makes the native sidecar the default.

    ``namespace_limits`` holds the namespace's LimitRanges and ResourceQuotas (the webhook
    watches them; offline there are none): the sidecar's resources are fitted to them.

    Raises PodRejected (AnnotationError, PolicyViolation, NameClash, PortClash,
    ResourcesDoNotFit, MalformedObject).
    """
    decision = decide(pod, namespace=namespace, excluded=excluded)
    if not decision.inject:
        return Plan(decision)
    if job or _run_by_job(pod):
        # A regular sidecar never exits, so the Job would never complete; a native one does not
        # hold the Pod open. The native-sidecar annotation can still say "false".
        defaults = dataclasses.replace(defaults, native=True)
    annotations = _map(_map(pod, "metadata"), "annotations")
    resolution = overrides.resolve(defaults, annotations, policy)
    spec, warnings = resolution.spec, resolution.warnings
    if namespace_limits is not limits.EMPTY or _map(pod, "spec").get("resources"):
        explicit = frozenset(overrides.ours(annotations)) & RESOURCE_OVERRIDES
        fitted = limits.fit(spec.resources, pod, namespace_limits, explicit=explicit)
        if fitted.resources != spec.resources:
            spec = dataclasses.replace(spec, resources=fitted.resources)
        warnings += fitted.warnings
    encoded = sidecar_patch(pod, spec, prefix=prefix, fallback_cluster=fallback_cluster)
    if warnings and encoded.count:
        encoded = _marked_warned(pod, encoded, prefix)
    return Plan(decision, encoded, warnings)


def _marked_warned(
    pod: Mapping[str, Any], encoded: patch.Encoded, prefix: Sequence[str | int]
) -> patch.Encoded:
    """The patch, plus the label WARNED_LABEL (kept as it is when the Pod has it already)."""
    if WARNED_LABEL in _map(_map(pod, "metadata"), "labels"):
        return encoded
    slot = patch.map_slot(pod, ("metadata", "labels"), (WARNED_LABEL,))
    base = patch.pointer(*prefix) if prefix else ""
    label = _under(base, patch.fill(slot, {WARNED_LABEL: "true"}))
    return patch.encode([*encoded.ops(), *label])
