"""Typed builders for Pods and AdmissionReviews, and the invariants every injection must keep."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import kubernetes_validate

from webhook import patch
from webhook.patch import PatchOp
from webhook.spec import WARNED_LABEL

KUBE_VERSION: Final = "1.32"
REPO: Final = Path(__file__).resolve().parents[2]
#: Istio's and Linkerd's injector test inputs, vendored byte-for-byte (see its README.md).
CORPUS: Final = REPO / "tests" / "data" / "peer-corpus"


def make_pod(
    *,
    name: str | None = "web-1",
    generate_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    containers: Sequence[Mapping[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if name is not None:
        meta["name"] = name
    if generate_name is not None:
        meta["generateName"] = generate_name
    if labels is not None:
        meta["labels"] = dict(labels)
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    pod_spec: dict[str, Any] = {
        "containers": [dict(c) for c in containers]
        if containers is not None
        else [{"name": "app", "image": "example/app:1.0", "ports": [{"containerPort": 8080}]}],
        **spec,
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec}


def make_review(
    obj: Mapping[str, Any] | None,
    *,
    uid: str = "7f0b2891-916f-4ed6-b7cd-27bff1815a8c",
    namespace: str = "shop",
    operation: str = "CREATE",
    kind: str = "Pod",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "tester"},
        "object": obj,
        "oldObject": None,
        "dryRun": False,
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def body(review: Mapping[str, Any]) -> bytes:
    return json.dumps(review).encode()


def validate(obj: Mapping[str, Any]) -> None:
    """Raise if ``obj`` breaks the official Kubernetes OpenAPI schema (strict: unknown fields)."""
    kubernetes_validate.validate(dict(obj), KUBE_VERSION, strict=True)


def _by_name(items: Any) -> dict[str, Any]:
    return {i["name"]: i for i in items or [] if isinstance(i, dict) and "name" in i}


def check_injection_invariants(
    original: Mapping[str, Any], ops: Sequence[PatchOp], *, warned: bool = False
) -> Any:
    """The properties every injection keeps, independent of any golden file.

    Returns the patched object. Checks: only ``add`` ops; the patch applies; every container,
    init container, volume, annotation and label the Pod had is unchanged; no label is added but
    envoy-inject.io/warned, exactly when the injection ``warned`` (and the Pod lacked it);
    nothing else in the object changed; the patched object is not the same as the original when
    ops were given.
    """
    assert all(op["op"] == "add" for op in ops), ops
    before = copy.deepcopy(dict(original))
    after = patch.apply(before, ops)
    assert before == original, "apply() must not mutate its input"
    spec_b, spec_a = before.get("spec") or {}, after.get("spec") or {}
    for key in ("containers", "initContainers", "volumes"):
        old, new = _by_name(spec_b.get(key)), _by_name(spec_a.get(key))
        for name, item in old.items():
            assert new.get(name) == item, f"{key} {name!r} was changed"
    meta_b, meta_a = before.get("metadata") or {}, after.get("metadata") or {}
    for key in ("annotations", "labels"):
        for k, v in (meta_b.get(key) or {}).items():
            assert (meta_a.get(key) or {}).get(k) == v, f"{key} {k!r} was changed"
    labels_b = meta_b.get("labels") or {}
    expected = {WARNED_LABEL: "true", **labels_b} if warned and ops else labels_b
    assert (meta_a.get("labels") or {}) == expected, "labels changed"
    untouched = {
        k: v for k, v in spec_b.items() if k not in ("containers", "initContainers", "volumes")
    }
    assert {k: spec_a[k] for k in untouched} == untouched, "other pod spec fields changed"
    return after
