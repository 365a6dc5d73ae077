"""The part of an AdmissionReview the injector reads, decoded without the rest (msgspec).

A Pod's managedFields, env lists, probes and the like are most of its bytes and are never read;
building Python objects for them was most of a review's cost. The view is a plain dict of the
raw Pod's shape holding only the fields the core and the log line read (names, labels,
annotations, owners; containers' names, ports, resources and restartPolicy; volume names;
hostNetwork, os, terminationGracePeriodSeconds and Pod-level resources), so the pure core is
unchanged. A field the core starts to read must be added here: the property test that compares
this view's answers with a full decode's, on Pods that carry every such field, says when.
It is safe because ops are explicit adds at positions these fields decide; nothing is computed
by diffing or re-serialising the object. Absent fields stay absent; a field of an unexpected
type makes ``parse`` return None, and the caller decodes everything.
"""

from __future__ import annotations

from typing import Any

import msgspec

UNSET: Any = msgspec.UNSET


class Named(msgspec.Struct):
    name: Any = UNSET


class Container(msgspec.Struct):
    name: Any = UNSET
    ports: Any = UNSET  # port clashes
    resources: Any = UNSET  # fitting the sidecar into LimitRanges and Pod-level resources
    restartPolicy: Any = UNSET  # noqa: N815 - a restartable init container runs beside ours


class OwnerRef(msgspec.Struct):
    kind: Any = UNSET
    name: Any = UNSET
    controller: Any = UNSET


class Meta(msgspec.Struct):
    name: Any = UNSET
    generateName: Any = UNSET  # noqa: N815 - the JSON field's name
    labels: Any = UNSET
    annotations: Any = UNSET
    ownerReferences: list[OwnerRef] | None = None  # noqa: N815


class Spec(msgspec.Struct):
    containers: list[Container] | None = None
    initContainers: list[Container] | None = None  # noqa: N815
    volumes: list[Named] | None = None
    hostNetwork: Any = UNSET  # noqa: N815
    os: Any = UNSET
    terminationGracePeriodSeconds: Any = UNSET  # noqa: N815
    resources: Any = UNSET


class Object(msgspec.Struct):
    kind: Any = UNSET
    metadata: Meta | None = None
    spec: Spec | None = None


class Request(msgspec.Struct):
    uid: Any = UNSET
    kind: Any = UNSET  # a GroupVersionKind: small, taken whole
    operation: Any = UNSET
    namespace: Any = UNSET
    subResource: Any = UNSET  # noqa: N815
    object: Object | None = UNSET


class Review(msgspec.Struct):
    kind: Any = UNSET
    apiVersion: Any = UNSET  # noqa: N815
    request: Request | None = UNSET


_DECODER = msgspec.json.Decoder(Review)


def parse(body: bytes) -> dict[str, Any] | None:
    """The review as orjson.loads would give it, minus every field the injector never reads;
    None when the body is not JSON or a field we type has an unexpected type."""
    try:
        review = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    out: dict[str, Any] = {}
    _set(out, "kind", review.kind)
    _set(out, "apiVersion", review.apiVersion)
    request = review.request
    if request is None or request is UNSET:
        _set(out, "request", request)
        return out
    r: dict[str, Any] = {}
    for name in ("uid", "kind", "operation", "namespace", "subResource"):
        _set(r, name, getattr(request, name))
    obj = request.object
    if obj is None or obj is UNSET:
        _set(r, "object", obj)
    else:
        r["object"] = pod_dict(obj)
    out["request"] = r
    return out


def _set(out: dict[str, Any], key: str, value: Any) -> None:
    if value is not UNSET:
        out[key] = value


def _named(items: list[Named]) -> list[dict[str, Any]]:
    return [{"name": i.name} if i.name is not UNSET else {} for i in items]


def _containers(items: list[Container]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        c: dict[str, Any] = {}
        if item.name is not UNSET:
            c["name"] = item.name
        if item.ports is not UNSET:
            c["ports"] = item.ports
        if item.resources is not UNSET:
            c["resources"] = item.resources
        if item.restartPolicy is not UNSET:
            c["restartPolicy"] = item.restartPolicy
        out.append(c)
    return out


def pod_dict(obj: Object) -> dict[str, Any]:
    """The view as the raw Pod dict would look with only these fields."""
    # Written out rather than looped over field names: this runs for every review.
    pod: dict[str, Any] = {}
    if obj.kind is not UNSET:
        pod["kind"] = obj.kind
    meta = obj.metadata
    if meta is not None:
        m: dict[str, Any] = {}
        if meta.name is not UNSET:
            m["name"] = meta.name
        if meta.generateName is not UNSET:
            m["generateName"] = meta.generateName
        if meta.labels is not UNSET:
            m["labels"] = meta.labels
        if meta.annotations is not UNSET:
            m["annotations"] = meta.annotations
        if meta.ownerReferences is not None:
            refs = []
            for ref in meta.ownerReferences:
                r: dict[str, Any] = {}
                _set(r, "kind", ref.kind)
                _set(r, "name", ref.name)
                _set(r, "controller", ref.controller)
                refs.append(r)
            m["ownerReferences"] = refs
        pod["metadata"] = m
    spec = obj.spec
    if spec is not None:
        s: dict[str, Any] = {}
        if spec.containers is not None:
            s["containers"] = _containers(spec.containers)
        if spec.initContainers is not None:
            s["initContainers"] = _containers(spec.initContainers)
        if spec.volumes is not None:
            s["volumes"] = _named(spec.volumes)
        if spec.hostNetwork is not UNSET:
            s["hostNetwork"] = spec.hostNetwork
        if spec.terminationGracePeriodSeconds is not UNSET:
            s["terminationGracePeriodSeconds"] = spec.terminationGracePeriodSeconds
        if spec.resources is not UNSET:
            s["resources"] = spec.resources
        if spec.os is not UNSET:
            s["os"] = spec.os
        pod["spec"] = s
    return pod
