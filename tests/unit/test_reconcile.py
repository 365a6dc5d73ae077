"""The controller's pure decision, table-driven: the ConfigMap writes a cluster state calls for."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from webhook import bootstrap, reconcile
from webhook.reconcile import Conflict, Create, Delete, Target, Update
from webhook.spec import SidecarSpec

OURS = {"app.kubernetes.io/managed-by": "envoy-injector-controller"}
DEFAULT = reconcile.target(SidecarSpec(), excluded={"legacy"})


def ns(name: str, *, labels: dict[str, str] | None = None, deleting: bool = False) -> Any:
    meta: dict[str, Any] = {"name": name, "labels": {"envoy-inject": "enabled"}}
    if labels is not None:
        meta["labels"] = labels
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def cm(
    namespace: str,
    name: str = "envoy-config",
    *,
    labels: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    digest: str | None = None,
) -> Any:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{namespace}-{name}",
        "resourceVersion": "42",
        "labels": dict(labels or {}),
    }
    if digest is not None:
        meta["annotations"] = {"envoy-inject.io/config-digest": digest}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def ours(namespace: str, tgt: Target = DEFAULT, name: str | None = None, **kw: Any) -> Any:
    """An owned ConfigMap exactly as the controller would have written it for ``tgt``."""
    kw.setdefault("data", dict(tgt.data))
    kw.setdefault("digest", tgt.digest)
    return cm(
        namespace,
        name or tgt.name,
        labels={**OURS, "app.kubernetes.io/part-of": "envoy-injector"},
        **kw,
    )


def summary(actions: list[reconcile.Action]) -> list[tuple[str, str, str]]:
    out = []
    for a in actions:
        name = a.body["metadata"]["name"] if isinstance(a, Create) else a.name
        out.append((a.kind, a.namespace, name))
    return out


PORTS = dataclasses.replace(SidecarSpec(), proxy_port=15001, app_port=3000, admin_port=15000)
RENAMED = dataclasses.replace(SidecarSpec(), config_map="envoy-bootstrap")
CASES: list[tuple[str, list[Any], list[Any], Target, list[tuple[str, str, str]]]] = [
    ("new labelled namespace", [ns("shop")], [], DEFAULT, [("create", "shop", "envoy-config")]),
    ("already in place", [ns("shop")], [ours("shop")], DEFAULT, []),
    ("excluded namespace", [ns("legacy")], [], DEFAULT, []),
    ("system namespace", [ns("kube-system")], [], DEFAULT, []),
    ("not labelled", [ns("plain", labels={})], [], DEFAULT, []),
    ("labelled disabled", [ns("off", labels={"envoy-inject": "disabled"})], [], DEFAULT, []),
    (
        "user-owned configmap with our name",
        [ns("shop")],
        [cm("shop", data={"envoy.yaml": "admin: {}"})],
        DEFAULT,
        [("conflict", "shop", "envoy-config")],
    ),
    (
        "user configmap with another name is none of our business",
        [ns("shop")],
        [ours("shop"), cm("shop", "my-envoy")],
        DEFAULT,
        [],
    ),
    ("label removed", [], [ours("shop")], DEFAULT, [("delete", "shop", "envoy-config")]),
    (
        "label removed, namespace still listed",
        [ns("shop", labels={"team": "a"})],
        [ours("shop")],
        DEFAULT,
        [("delete", "shop", "envoy-config")],
    ),
    (
        "namespace excluded later",
        [ns("legacy")],
        [ours("legacy")],
        DEFAULT,
        [("delete", "legacy", "envoy-config")],
    ),
    ("user's configmap survives the label removal", [], [cm("shop")], DEFAULT, []),
    (
        "terminating namespace is left to Kubernetes",
        [ns("old", deleting=True)],
        [ours("old")],
        DEFAULT,
        [],
    ),
    (
        "config change",
        [ns("a"), ns("b")],
        [
            ours("a", data={"envoy.yaml": "old"}, digest="sha256:old"),
            ours("b", data={"envoy.yaml": "old"}, digest="sha256:old"),
        ],
        DEFAULT,
        [("update", "a", "envoy-config"), ("update", "b", "envoy-config")],
    ),
    (
        "drifted owned configmap",
        [ns("shop")],
        [ours("shop", data={"envoy.yaml": "hand edited"})],
        DEFAULT,
        [("update", "shop", "envoy-config")],
    ),
    (
        "ports changed in sidecar",
        [ns("shop")],
        [ours("shop")],
        reconcile.target(PORTS),
        [("update", "shop", "envoy-config")],
    ),
    (
        "configmap renamed: the new one is created, the old one stays for Pods that mount it",
        [ns("shop")],
        [ours("shop")],
        reconcile.target(RENAMED),
        [("create", "shop", "envoy-bootstrap")],
    ),
    (
        "our label stripped by someone: not ours any more",
        [ns("shop")],
        [cm("shop", data=dict(DEFAULT.data), digest=DEFAULT.digest)],
        DEFAULT,
        [("conflict", "shop", "envoy-config")],
    ),
]


@pytest.mark.parametrize(
    ("namespaces", "configmaps", "tgt", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_gives_the_actions_the_state_calls_for(
    namespaces: list[Any], configmaps: list[Any], tgt: Target, expected: list[tuple[str, str, str]]
) -> None:
    assert summary(reconcile.plan(namespaces, configmaps, tgt)) == expected


def test_a_created_configmap_carries_our_label_digest_and_the_rendered_ports() -> None:
    (action,) = reconcile.plan([ns("shop")], [], reconcile.target(PORTS))
    assert isinstance(action, Create)
    meta = action.body["metadata"]
    assert meta["namespace"] == "shop"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "envoy-injector-controller"
    assert meta["annotations"]["envoy-inject.io/config-digest"].startswith("sha256:")
    envoy = yaml.safe_load(action.body["data"]["envoy.yaml"])
    assert envoy["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 15000,
    }
    (listener,) = envoy["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 15001
    (cluster,) = envoy["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 3000}


def test_an_update_keeps_the_version_it_read_and_what_others_added() -> None:
    drifted = ours("shop", data={"envoy.yaml": "hand edited"})
    drifted["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = "x"
    drifted["metadata"]["labels"]["team"] = "a"
    (action,) = reconcile.plan([ns("shop")], [drifted], DEFAULT)
    assert isinstance(action, Update)
    assert action.why == "edited"
    meta = action.body["metadata"]
    assert meta["resourceVersion"] == "42"  # a concurrent write makes this one fail with 409
    assert meta["uid"] == "uid-shop-envoy-config"
    assert meta["annotations"]["argocd.argoproj.io/tracking-id"] == "x"
    assert meta["labels"]["team"] == "a"
    assert action.body["data"] == dict(DEFAULT.data)
    assert drifted["data"] == {"envoy.yaml": "hand edited"}  # the input is not modified


def test_a_config_change_is_told_apart_from_an_edit() -> None:
    (action,) = reconcile.plan(
        [ns("a")], [ours("a", data={"envoy.yaml": "x"}, digest="sha256:old")], DEFAULT
    )
    assert isinstance(action, Update)
    assert action.why == "config_changed"


def test_a_delete_is_conditional_on_the_version_seen() -> None:
    (action,) = reconcile.plan([], [ours("shop")], DEFAULT)
    assert isinstance(action, Delete)
    assert (action.uid, action.resource_version) == ("uid-shop-envoy-config", "42")


def test_a_conflict_names_the_configmap_and_what_the_user_can_do() -> None:
    (action,) = reconcile.plan([ns("shop")], [cm("shop")], DEFAULT)
    assert isinstance(action, Conflict)
    assert "shop/envoy-config" in action.message
    assert "app.kubernetes.io/managed-by=envoy-injector-controller" in action.message
    event = reconcile.event(action, now="2026-01-01T00:00:00Z", reporter="pod-1")
    assert event["involvedObject"]["uid"] == "uid-shop-envoy-config"
    assert event["metadata"]["namespace"] == "shop"
    assert event["type"] == "Warning"
    again = reconcile.event(action, now="2026-01-02T00:00:00Z", reporter="pod-2")
    assert again["metadata"]["name"] == event["metadata"]["name"]  # one Event per ConfigMap


def test_the_digest_ignores_key_order_and_sees_every_byte() -> None:
    assert bootstrap.digest({"a": "1", "b": "2"}) == bootstrap.digest({"b": "2", "a": "1"})
    assert bootstrap.digest({"a": "1"}) != bootstrap.digest({"a": "1 "})
    assert bootstrap.digest({"ab": ""}) != bootstrap.digest({"a": "b"})
