"""The controller's decision: namespaces + config + existing ConfigMaps -> actions. Pure.

Works on the raw namespace and ConfigMap dicts the API server sent. The rules:

- A namespace is *selected* when it is labelled ``envoy-inject=enabled``, is not a system or
  excluded namespace, and is not being deleted. The webhook injects exactly there.
- In a selected namespace the ConfigMap ``<sidecar.configMap>`` must hold the rendered
  bootstrap. Absent: create it. Ours (managed-by label) but different from the target (the
  default changed, or someone edited it): update it. Not ours: leave it alone and report a
  conflict, because a same-named ConfigMap of the user's is their choice of Envoy config.
- Ours, in a namespace that is no longer selected (label removed, excluded, deleted): delete
  it. The label is the switch; what it turned on, turning it off removes. Running Pods keep
  the files the kubelet already wrote, and new Pods there are no longer injected.
- Ours but under an old name (``sidecar.configMap`` was renamed) in a selected namespace: left
  in place, since Pods admitted before the webhook saw the rename still mount it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook import bootstrap
from webhook.inject import SYSTEM_NAMESPACES
from webhook.spec import ANNOTATION_PREFIX, CONFIG_KEY, INJECT_LABEL, SidecarSpec

JSONDict = dict[str, Any]

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGER: Final = "envoy-injector-controller"
MANAGED_SELECTOR: Final = f"{MANAGED_BY_LABEL}={MANAGER}"
NAMESPACE_SELECTOR: Final = f"{INJECT_LABEL}=enabled"
DIGEST_ANNOTATION: Final = ANNOTATION_PREFIX + "config-digest"
_OUR_LABELS: Final = {MANAGED_BY_LABEL: MANAGER, "app.kubernetes.io/part-of": "envoy-injector"}


@dataclass(frozen=True)
class Target:
    """What every selected namespace should hold."""

    name: str
    data: Mapping[str, str]
    digest: str
    excluded: frozenset[str] = frozenset()


def target(
    spec: SidecarSpec,
    source: Mapping[str, Any] = bootstrap.DEFAULT_TEMPLATE,
    *,
    excluded: Iterable[str] = (),
) -> Target:
    data = {CONFIG_KEY: bootstrap.render(spec, source)}
    return Target(spec.config_map, data, bootstrap.digest(data), frozenset(excluded))


@dataclass(frozen=True)
class Create:
    namespace: str
    body: JSONDict
    kind: str = "create"


@dataclass(frozen=True)
class Update:
    namespace: str
    name: str
    body: JSONDict  # carries the resourceVersion it was computed from: a stale write gets 409
    why: str
    kind: str = "update"


@dataclass(frozen=True)
class Delete:
    namespace: str
    name: str
    uid: str
    resource_version: str  # a precondition: never delete a version we have not seen
    kind: str = "delete"


@dataclass(frozen=True)
class Conflict:
    namespace: str
    name: str
    uid: str
    message: str
    kind: str = "conflict"


Action = Create | Update | Delete | Conflict


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, dict) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("namespace", ""))


def owned(configmap: Mapping[str, Any]) -> bool:
    return _labels(configmap).get(MANAGED_BY_LABEL) == MANAGER


def terminating(namespace: Mapping[str, Any]) -> bool:
    status = namespace.get("status")
    phase = status.get("phase") if isinstance(status, dict) else None
    return bool(_meta(namespace).get("deletionTimestamp")) or phase == "Terminating"


def selected(namespace: Mapping[str, Any], excluded: Iterable[str] = ()) -> bool:
    name = name_of(namespace)
    return (
        _labels(namespace).get(INJECT_LABEL) == "enabled"
        and name not in SYSTEM_NAMESPACES
        and name not in excluded
        and not terminating(namespace)
    )


def desired(namespace: str, tgt: Target) -> JSONDict:
    """The ConfigMap we create in ``namespace``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": tgt.name,
            "namespace": namespace,
            "labels": dict(_OUR_LABELS),
            "annotations": {DIGEST_ANNOTATION: tgt.digest},
        },
        "data": dict(tgt.data),
    }


def drift(configmap: Mapping[str, Any], tgt: Target) -> str | None:
    """Why an owned ConfigMap differs from the target, or None when it does not."""
    annotations = _meta(configmap).get("annotations") or {}
    if configmap.get("data") != dict(tgt.data) or configmap.get("binaryData"):
        if annotations.get(DIGEST_ANNOTATION) == tgt.digest:
            return "edited"  # someone changed the content we wrote
        return "config_changed"
    if annotations.get(DIGEST_ANNOTATION) != tgt.digest:
        return "digest_missing"
    if any(_labels(configmap).get(k) != v for k, v in _OUR_LABELS.items()):
        return "labels_changed"
    return None


def _updated(configmap: Mapping[str, Any], tgt: Target) -> JSONDict:
    """The owned ConfigMap brought back to the target, keeping what others added to metadata."""
    meta = dict(_meta(configmap))
    meta["labels"] = {**_labels(configmap), **_OUR_LABELS}
    meta["annotations"] = {**(meta.get("annotations") or {}), DIGEST_ANNOTATION: tgt.digest}
    body = {k: v for k, v in configmap.items() if k not in ("data", "binaryData", "metadata")}
    return {**body, "metadata": meta, "data": dict(tgt.data)}


def conflict_message(namespace: str, name: str) -> str:
    return (
        f"ConfigMap {namespace}/{name} already exists and is not managed by envoy-injector "
        f"(no label {MANAGED_SELECTOR}); it is left as it is, and injected Pods in "
        f"{namespace} load it as their Envoy configuration"
    )


def plan_namespace(
    name: str,
    namespace: Mapping[str, Any] | None,
    configmaps: Iterable[Mapping[str, Any]],
    tgt: Target,
) -> list[Action]:
    """Actions for one namespace. ``namespace`` is None when it is gone or not labelled."""
    if namespace is not None and terminating(namespace):
        return []  # the namespace controller removes everything in it
    want = namespace is not None and selected(namespace, tgt.excluded)
    actions: list[Action] = []
    current: Mapping[str, Any] | None = None
    for cm in configmaps:
        cm_name = name_of(cm)
        if cm_name == tgt.name:
            current = cm
        if not owned(cm):
            continue
        meta = _meta(cm)
        if not want:
            uid, rv = str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
            actions.append(Delete(name, cm_name, uid, rv))
        elif cm_name == tgt.name and (why := drift(cm, tgt)):
            actions.append(Update(name, cm_name, _updated(cm, tgt), why))
    if want and current is None:
        actions.append(Create(name, desired(name, tgt)))
    elif want and current is not None and not owned(current):
        uid = str(_meta(current).get("uid", ""))
        actions.append(Conflict(name, tgt.name, uid, conflict_message(name, tgt.name)))
    return actions


def plan(
    namespaces: Iterable[Mapping[str, Any]],
    configmaps: Iterable[Mapping[str, Any]],
    tgt: Target,
) -> list[Action]:
    """Actions for every namespace named by either input, in namespace order."""
    by_name = {name_of(ns): ns for ns in namespaces}
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for cm in configmaps:
        grouped.setdefault(namespace_of(cm), []).append(cm)
    actions: list[Action] = []
    for ns in sorted(by_name.keys() | grouped.keys()):
        actions += plan_namespace(ns, by_name.get(ns), grouped.get(ns, []), tgt)
    return actions


def event(conflict: Conflict, *, now: str, reporter: str) -> JSONDict:
    """A core/v1 Event about the user's ConfigMap, in its namespace (``kubectl get events``).

    Its name is derived from the ConfigMap's uid, so a second replica, a restart or the next
    resync finds it already recorded (409 AlreadyExists) instead of piling up copies.
    """
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{conflict.name}.envoy-injector-{conflict.uid[:8] or 'unknown'}",
            "namespace": conflict.namespace,
            "labels": dict(_OUR_LABELS),
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "namespace": conflict.namespace,
            "name": conflict.name,
            "uid": conflict.uid,
        },
        "type": "Warning",
        "reason": "ConfigMapNotManaged",
        "message": conflict.message,
        "source": {"component": MANAGER},
        "reportingComponent": MANAGER,
        "reportingInstance": reporter,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
