"""Hypothesis strategies for Pods, annotation maps and AdmissionReviews, valid and hostile."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from webhook.overrides import TABLE

PREFIX = "envoy-inject.io/"
dns_label = st.from_regex(r"[a-z]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
# Keys with '/', '~' and non-ASCII, which JSON pointers must escape.
hostile_keys = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from(
        ["a/b", "~", "~1", "~0/", "x.io/y~z", "ключ/значение", "/", "envoy-inject.io/"]
    ),
)
VALID_VALUES: dict[str, list[str]] = {
    "inject": ["true", "false"],
    "image": ["envoyproxy/envoy:v1.40.1", "evil.example/envoy:1", "docker.io/envoyproxy/envoy:dev"],
    "proxy-port": ["15001", "0", "99999"],
    "app-port": ["9000", "8080"],
    "admin-port": ["15000", "9901"],
    "config-map": ["own-config", "Bad_Name"],
    "service-cluster": ["checkout", "$(X)"],
    "cpu-request": ["10m", "1", "3"],
    "cpu-limit": ["1", "500m", "4"],
    "memory-request": ["64Mi", "2Gi"],
    "memory-limit": ["256Mi", "4Gi"],
    "log-level": ["debug", "loud"],
    "concurrency": ["1", "0", "many"],
    "native-sidecar": ["true", "false", "yes"],
    "hold-application": ["true", "false"],
}


@st.composite
def override_annotations(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(st.sampled_from(sorted(TABLE)), unique=True, max_size=6))
    chosen = {
        PREFIX + n: draw(st.one_of(st.sampled_from(VALID_VALUES[n]), st.text(max_size=8)))
        for n in names
    }
    others = draw(st.dictionaries(hostile_keys, st.text(max_size=8), max_size=4))
    return {**others, **chosen}


def _container(name: str, env_size: int) -> dict[str, Any]:
    return {
        "name": name,
        "image": "example/app:1",
        "env": [{"name": f"V{i}", "value": str(i)} for i in range(env_size)],
    }


@st.composite
def valid_pods(draw: st.DrawFn) -> dict[str, Any]:
    """Schema-valid Pods with random shapes: what the API server could send."""
    names = draw(st.lists(dns_label, min_size=1, max_size=4, unique=True))
    env_size = draw(st.sampled_from([0, 1, 5, 300]))
    meta: dict[str, Any] = {}
    if draw(st.booleans()):
        meta["name"] = draw(dns_label)
    else:
        meta["generateName"] = draw(dns_label) + "-"
    if draw(st.booleans()):
        meta["labels"] = draw(
            st.dictionaries(st.sampled_from(["app", "tier", "envoy-inject"]), dns_label, max_size=3)
        )
    if draw(st.booleans()):
        meta["annotations"] = draw(override_annotations())
    spec: dict[str, Any] = {"containers": [_container(n, env_size) for n in names[:2]]}
    if len(names) > 2:
        spec["initContainers"] = [_container(n, 0) for n in names[2:]]
    if draw(st.booleans()):
        spec["volumes"] = [{"name": draw(dns_label), "emptyDir": {}}]
    if draw(st.booleans()):
        spec["hostNetwork"] = draw(st.booleans())
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(hostile_keys, children, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def hostile_pods(draw: st.DrawFn) -> dict[str, Any]:
    """Pods with missing fields and wrong types in the places the injector reads and writes."""
    pod = draw(valid_pods())
    for path in draw(
        st.lists(
            st.sampled_from(
                [
                    ("metadata",),
                    ("metadata", "annotations"),
                    ("metadata", "labels"),
                    ("spec", "volumes"),
                    ("spec", "containers"),
                    ("spec", "initContainers"),
                    ("spec",),
                    ("metadata", "ownerReferences"),
                ]
            ),
            max_size=3,
        )
    ):
        target: Any = pod
        for token in path[:-1]:
            target = target.setdefault(token, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            if draw(st.booleans()):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(json_values)
    return pod


def review_for(pod: Any, *, uid: str = "fuzz-uid", namespace: Any = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": namespace,
            "operation": "CREATE",
            "object": pod,
        },
    }


@st.composite
def hostile_reviews(draw: st.DrawFn) -> Any:
    """AdmissionReview-shaped JSON with random holes and wrong types in the envelope."""
    review: dict[str, Any] = review_for(draw(hostile_pods()))
    request = review["request"]
    for key in draw(st.lists(st.sampled_from(sorted(request)), max_size=3)):
        if draw(st.booleans()):
            request.pop(key, None)
        else:
            request[key] = draw(json_values)
    for key in draw(st.lists(st.sampled_from(["apiVersion", "kind", "request"]), max_size=1)):
        review[key] = draw(json_values)
    return review
