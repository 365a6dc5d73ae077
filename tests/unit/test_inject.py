"""The pure core: decisions, the service cluster, and the ops that add the sidecar."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.pods import check_injection_invariants, make_pod, validate
from webhook import errors, patch
from webhook.inject import SkipReason, decide, inject, plan, service_cluster
from webhook.spec import Policy, SidecarSpec

STATUS = "envoy-inject.io/status"


@pytest.mark.parametrize(
    ("pod", "namespace", "reason"),
    [
        (make_pod(), "kube-system", SkipReason.EXCLUDED_NAMESPACE),
        (make_pod(), "kube-node-lease", SkipReason.EXCLUDED_NAMESPACE),
        (make_pod(), "envoy-injector", SkipReason.EXCLUDED_NAMESPACE),
        (make_pod(labels={"envoy-inject": "disabled"}), "shop", SkipReason.LABEL_DISABLED),
        (
            make_pod(annotations={"envoy-inject.io/inject": "false"}),
            "shop",
            SkipReason.ANNOTATION_DISABLED,
        ),
        (make_pod(annotations={STATUS: "{}"}), "shop", SkipReason.ALREADY_INJECTED),
        (make_pod(hostNetwork=True), "shop", SkipReason.HOST_NETWORK),
    ],
    ids=[
        "kube-system",
        "kube-node-lease",
        "own-namespace",
        "label",
        "annotation",
        "status",
        "host-network",
    ],
)
def test_pods_the_sidecar_must_not_touch_are_skipped_with_a_reason(
    pod: dict[str, Any], namespace: str, reason: SkipReason
) -> None:
    decision = decide(pod, namespace=namespace, excluded={"envoy-injector"})
    assert not decision.inject
    assert decision.reason == reason
    assert decision.explanation


@pytest.mark.parametrize(
    "pod",
    [
        make_pod(),
        make_pod(hostNetwork=False),
        make_pod(labels={"envoy-inject": "enabled"}),
        make_pod(annotations={"envoy-inject.io/inject": "true"}),
        {"spec": {"containers": []}},
    ],
    ids=["plain", "host-network-false", "label-enabled", "annotation-true", "no-metadata"],
)
def test_ordinary_pods_are_injected(pod: dict[str, Any]) -> None:
    assert decide(pod, namespace="shop").inject


@pytest.mark.parametrize(
    ("pod", "fallback", "cluster"),
    [
        (make_pod(labels={"app": "cart"}), "", "cart"),
        (make_pod(labels={"app.kubernetes.io/name": "cart"}), "", "cart"),
        (
            {
                "metadata": {
                    "generateName": "web-5d8c7-",
                    "labels": {"pod-template-hash": "5d8c7"},
                    "ownerReferences": [
                        {"kind": "ReplicaSet", "name": "web-5d8c7", "controller": True}
                    ],
                }
            },
            "",
            "web",
        ),
        (
            {
                "metadata": {
                    "ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": True}]
                }
            },
            "",
            "db",
        ),
        (
            {
                "metadata": {
                    "name": "p",
                    "ownerReferences": [{"kind": "X", "name": "not-controller"}],
                }
            },
            "",
            "p",
        ),
        ({"metadata": {"generateName": "job-abc-"}}, "", "job-abc"),
        ({"metadata": {}}, "my-deployment", "my-deployment"),
        ({}, "", "envoy-sidecar"),
    ],
    ids=[
        "app-label",
        "k8s-name-label",
        "replicaset-owner",
        "statefulset-owner",
        "non-controller-owner",
        "generate-name",
        "workload-fallback",
        "nothing",
    ],
)
def test_the_service_cluster_comes_from_label_owner_or_name(
    pod: dict[str, Any], fallback: str, cluster: str
) -> None:
    assert service_cluster(pod, fallback=fallback) == cluster


def test_the_sidecar_is_appended_after_the_app_with_volume_and_status() -> None:
    pod = make_pod(labels={"app": "web"})
    ops = inject(pod, SidecarSpec())
    assert [op["path"] for op in ops] == [
        "/spec/containers/1",
        "/spec/volumes",
        "/metadata/annotations",
    ]
    after = check_injection_invariants(pod, ops)
    sidecar = after["spec"]["containers"][1]
    assert sidecar["name"] == "envoy-sidecar"
    assert sidecar["image"] == "envoyproxy/envoy:v1.40.0"
    assert sidecar["command"] == ["/usr/local/bin/envoy"]
    assert sidecar["args"][:6] == [
        "--config-path",
        "/etc/envoy/envoy.yaml",
        "--service-cluster",
        "web",
        "--service-node",
        "$(POD_NAME)",
    ]
    assert sidecar["args"][6:] == ["--log-level", "info", "--concurrency", "2"]
    assert sidecar["ports"] == [{"name": "envoy-http", "containerPort": 10000, "protocol": "TCP"}]
    assert {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
    } in sidecar["env"]
    assert sidecar["volumeMounts"] == [
        {"name": "envoy-config-volume", "mountPath": "/etc/envoy", "readOnly": True}
    ]
    security = sidecar["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 101
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert after["spec"]["volumes"] == [
        {
            "name": "envoy-config-volume",
            "configMap": {
                "name": "envoy-config",
                "items": [{"key": "envoy.yaml", "path": "envoy.yaml"}],
            },
        }
    ]
    status = json.loads(after["metadata"]["annotations"][STATUS])
    assert status["containers"] == ["envoy-sidecar"]
    assert status["volumes"] == ["envoy-config-volume"]
    validate(after)


def test_a_second_pass_adds_nothing() -> None:
    pod = make_pod()
    once = patch.apply(pod, inject(pod, SidecarSpec()))
    assert inject(once, SidecarSpec()) == []
    assert not decide(once, namespace="shop").inject


def test_the_native_sidecar_goes_first_among_init_containers_with_restart_always() -> None:
    pod = make_pod(initContainers=[{"name": "migrate", "image": "example/migrate:1"}])
    ops = inject(pod, SidecarSpec(native=True))
    assert ops[0]["path"] == "/spec/initContainers/0"
    after = check_injection_invariants(pod, ops)
    init = after["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["envoy-sidecar", "migrate"]
    assert init[0]["restartPolicy"] == "Always"
    assert init[0]["startupProbe"]["tcpSocket"]["port"] == 10000
    assert [c["name"] for c in after["spec"]["containers"]] == ["app"]
    validate(after)


@pytest.mark.parametrize(
    "pod",
    [
        make_pod(containers=[{"name": "envoy-sidecar", "image": "mine"}]),
        make_pod(initContainers=[{"name": "envoy-sidecar", "image": "mine"}]),
        make_pod(volumes=[{"name": "envoy-config-volume", "emptyDir": {}}]),
    ],
    ids=["container", "init-container", "volume"],
)
def test_a_name_clash_is_a_rejection_not_a_clobber(pod: dict[str, Any]) -> None:
    with pytest.raises(errors.NameClash, match="envoy-"):
        inject(pod, SidecarSpec())


def test_fields_unknown_to_any_typed_model_survive_and_nothing_is_removed_or_replaced() -> None:
    pod = make_pod(
        initContainers=[
            {
                "name": "log-shipper",
                "image": "x",
                "restartPolicy": "Always",
                "futureField": {"a": 1},
            }
        ],
        futurePodField=[1, 2, 3],
    )
    pod["metadata"]["futureMetadata"] = "kept"
    ops = inject(pod, SidecarSpec())
    assert {op["op"] for op in ops} == {"add"}
    after = check_injection_invariants(pod, ops)
    assert after["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    assert after["spec"]["futurePodField"] == [1, 2, 3]
    assert after["metadata"]["futureMetadata"] == "kept"


def test_a_prefix_places_the_ops_inside_a_workload() -> None:
    deployment = {"spec": {"template": make_pod(name=None)}}
    ops = inject(deployment["spec"]["template"], SidecarSpec(), prefix=("spec", "template"))
    assert all(op["path"].startswith("/spec/template/") for op in ops)
    after = patch.apply(deployment, ops)
    assert after["spec"]["template"]["spec"]["containers"][1]["name"] == "envoy-sidecar"


def test_plan_runs_decide_then_resolve_then_inject() -> None:
    skipped = plan(make_pod(hostNetwork=True), SidecarSpec(), Policy(), namespace="shop")
    assert skipped.ops == []
    assert skipped.decision.reason == SkipReason.HOST_NETWORK
    warned = plan(
        make_pod(annotations={"envoy-inject.io/proxy-port": "1"}),
        SidecarSpec(),
        Policy(),
        namespace="shop",
    )
    assert warned.ops
    assert len(warned.warnings) == 1
    with pytest.raises(errors.AnnotationError):
        plan(
            make_pod(annotations={"envoy-inject.io/concurrency": "x"}),
            SidecarSpec(),
            Policy(),
            namespace="shop",
        )


WARNING_ANNOTATION = {"envoy-inject.io/no-such-thing": "x"}  # unknown: ignored with a warning


@pytest.mark.parametrize(
    "labels", [None, {"app": "web"}], ids=["no-labels-yet", "labels-of-its-own"]
)
def test_an_injection_with_warnings_labels_the_pod_so_the_user_can_find_it(
    labels: dict[str, str] | None,
) -> None:
    pod = make_pod(annotations=WARNING_ANNOTATION)
    if labels is None:
        pod["metadata"].pop("labels", None)
    else:
        pod["metadata"]["labels"] = dict(labels)
    result = plan(pod, SidecarSpec(), Policy(), namespace="shop")
    assert result.warnings
    assert "no-such-thing" in result.warnings[0]
    after = check_injection_invariants(pod, result.ops, warned=True)
    assert after["metadata"]["labels"] == {**(labels or {}), "envoy-inject.io/warned": "true"}


def test_no_warning_no_label_and_a_label_already_there_is_left_as_it_is() -> None:
    quiet = make_pod(labels={"app": "web"})
    result = plan(quiet, SidecarSpec(), Policy(), namespace="shop")
    assert not result.warnings
    assert check_injection_invariants(quiet, result.ops)["metadata"]["labels"] == {"app": "web"}
    marked = make_pod(annotations=WARNING_ANNOTATION, labels={"envoy-inject.io/warned": "yes"})
    result = plan(marked, SidecarSpec(), Policy(), namespace="shop")
    assert result.warnings
    assert not any(op["path"].startswith("/metadata/labels") for op in result.ops)


def test_the_label_goes_inside_a_workloads_template_too() -> None:
    pod = make_pod(annotations=WARNING_ANNOTATION, labels={"app": "web"})
    result = plan(pod, SidecarSpec(), Policy(), namespace="shop", prefix=("spec", "template"))
    (label,) = [op for op in result.ops if "labels" in op["path"]]
    assert label == {
        "op": "add",
        "path": "/spec/template/metadata/labels/envoy-inject.io~1warned",
        "value": "true",
    }
