"""Pods for the property "injection never turns a valid Pod into an invalid one".

Each strategy draws Pods that the API server may or may not accept on their own; the property
test keeps those it accepts in an unlabelled namespace and asks the same of the injected copy.
They cover what issue 15 lists: grace periods 0-60 s, app ports on 10000/9901/8080 and host
ports, a container or volume already named like ours, an existing POD_NAME, Pod-level
resources, Pod-level runAsUser/runAsNonRoot/fsGroup, restricted-compliant containers (for a
namespace enforcing Pod Security `restricted`) and resources of every shape.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CPU = st.sampled_from(["10m", "50m", "100m", "250m", "1", "2"])
_MEMORY = st.sampled_from(["16Mi", "64Mi", "128Mi", "300Mi", "1Gi"])


@st.composite
def _resources(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for which in draw(st.sets(st.sampled_from(["requests", "limits"]))):
        amounts = {}
        if draw(st.booleans()):
            amounts["cpu"] = draw(_CPU)
        if draw(st.booleans()):
            amounts["memory"] = draw(_MEMORY)
        if amounts:
            out[which] = amounts
    return out


@st.composite
def _container(draw: st.DrawFn, index: int, *, restricted: bool) -> dict[str, Any]:
    name = draw(st.sampled_from([f"app-{index}", f"app-{index}", "envoy-sidecar"]))
    container: dict[str, Any] = {"name": name, "image": "example.com/app:1"}
    ports = draw(
        st.lists(
            st.fixed_dictionaries(
                {"containerPort": st.sampled_from([8080, 10000, 9901, 3000, 15001])},
                optional={
                    "protocol": st.sampled_from(["TCP", "UDP"]),
                    "hostPort": st.sampled_from([10000, 8080, 31000]),
                },
            ),
            max_size=2,
            unique_by=lambda p: (p["containerPort"], p.get("protocol", "TCP")),
        )
    )
    if ports:
        container["ports"] = ports
    if draw(st.booleans()):
        container["env"] = [{"name": "POD_NAME", "value": "mine"}]
    resources = draw(_resources())
    if resources:
        container["resources"] = resources
    if restricted:
        container["securityContext"] = dict(_RESTRICTED_CONTAINER)
    return container


@st.composite
def admissible_pods(draw: st.DrawFn, *, restricted: bool = False) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=3))
    containers = [draw(_container(i, restricted=restricted)) for i in range(count)]
    spec: dict[str, Any] = {"containers": containers}
    if draw(st.booleans()):
        spec["terminationGracePeriodSeconds"] = draw(st.integers(min_value=0, max_value=60))
    volumes = draw(
        st.sampled_from(
            [
                [],
                [{"name": "envoy-config-volume", "emptyDir": {}}],
                [{"name": "data", "emptyDir": {}}],
            ]
        )
    )
    if volumes:
        spec["volumes"] = volumes
    security: dict[str, Any] = {}
    if draw(st.booleans()):
        security["runAsUser"] = draw(st.sampled_from([0, 1000, 65534]))
    if draw(st.booleans()):
        security["runAsNonRoot"] = draw(st.booleans())
    if draw(st.booleans()):
        security["fsGroup"] = draw(st.sampled_from([1000, 2000]))
    if restricted:
        security["runAsNonRoot"] = True
        security.pop("runAsUser", None)
        security["seccompProfile"] = {"type": "RuntimeDefault"}
    if security:
        spec["securityContext"] = security
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        pod_resources = draw(_resources())
        if pod_resources:
            spec["resources"] = pod_resources
    labels = {"app": "generated"}
    annotations = {}
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        annotations["envoy-inject.io/cpu-limit"] = draw(st.sampled_from(["150m", "400m", "1"]))
    metadata: dict[str, Any] = {"generateName": "prop-", "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
