"""Injection never turns a valid Pod into an invalid one: grace period, ports, Windows.

The rules these tests pin come from the API server's validation (pkg/apis/core/validation):
a preStop sleep must be shorter than terminationGracePeriodSeconds; containers of one Pod share
its network, so two cannot bind one port. The e2e property test checks the same on a real
kube-apiserver.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pods import make_pod
from webhook import errors, patch
from webhook.inject import SkipReason, decide, plan
from webhook.spec import Policy, SidecarSpec


def _sidecar(pod: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    result = plan(pod, SidecarSpec(**kwargs), Policy(), namespace="shop")
    injected = patch.apply(pod, result.ops)
    everything = injected["spec"].get("initContainers", []) + injected["spec"]["containers"]
    (container,) = [c for c in everything if c["name"] == "envoy-sidecar"]
    found: dict[str, Any] = container
    return found


@pytest.mark.parametrize(
    ("grace", "sleep"),
    [(None, 5), (30, 5), (10, 5), (9, 4), (6, 3), (3, 1), (2, 1), (1, None), (0, None)],
    ids=lambda v: f"{v}",
)
@pytest.mark.parametrize("native", [False, True], ids=["classic", "native"])
def test_the_pre_stop_sleep_is_always_shorter_than_the_grace_period(
    grace: int | None, sleep: int | None, native: bool
) -> None:
    pod = make_pod() if grace is None else make_pod(terminationGracePeriodSeconds=grace)
    container = _sidecar(pod, native=native)
    if sleep is None:
        assert "lifecycle" not in container
    else:
        assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": sleep}}}
        assert sleep < (30 if grace is None else grace)


@pytest.mark.parametrize("grace", range(61))
def test_every_grace_period_from_0_to_60_gets_a_valid_stop(grace: int) -> None:
    container = _sidecar(make_pod(terminationGracePeriodSeconds=grace))
    seconds = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds")
    assert seconds is None or 0 < seconds < grace


def _app(*ports: dict[str, Any], init: bool = False) -> dict[str, Any]:
    containers = [{"name": "app", "image": "app:1", "ports": list(ports)}]
    if init:
        return make_pod(initContainers=containers, containers=[{"name": "main", "image": "app:1"}])
    return make_pod(containers=containers)


@pytest.mark.parametrize(
    ("pod", "port", "annotation"),
    [
        (_app({"containerPort": 10000}), 10000, "proxy-port"),
        (_app({"containerPort": 9901, "protocol": "TCP"}), 9901, "admin-port"),
        (_app({"containerPort": 10000}, init=True), 10000, "proxy-port"),
    ],
    ids=["proxy-port", "admin-port", "init-container"],
)
def test_a_container_on_a_sidecar_port_is_refused_naming_the_port_and_the_annotation(
    pod: dict[str, Any], port: int, annotation: str
) -> None:
    with pytest.raises(errors.PortClash) as caught:
        plan(pod, SidecarSpec(), Policy(), namespace="shop")
    message = str(caught.value)
    assert f"declares port {port}" in message
    assert f"envoy-inject.io/{annotation}" in message
    assert "envoy-inject=disabled" in message
    assert caught.value.code == 400


@pytest.mark.parametrize(
    "pod",
    [
        _app({"containerPort": 8080}),  # the app's own port: what the proxy forwards to
        _app({"containerPort": 10000, "protocol": "UDP"}),  # UDP does not take Envoy's TCP port
        _app({"containerPort": 80, "hostPort": 10000}),  # a host port is the node's, not the Pod's
    ],
    ids=["app-port", "udp", "host-port"],
)
def test_ports_that_do_not_collide_with_envoy_are_accepted(pod: dict[str, Any]) -> None:
    assert plan(pod, SidecarSpec(), Policy(), namespace="shop").ops


def test_a_moved_proxy_port_no_longer_clashes() -> None:
    pod = _app({"containerPort": 10000})
    assert plan(pod, SidecarSpec(proxy_port=15001), Policy(), namespace="shop").ops


def test_a_windows_pod_is_skipped_because_the_image_is_linux_only() -> None:
    decision = decide(make_pod(os={"name": "windows"}), namespace="shop")
    assert decision.reason == SkipReason.WINDOWS
    assert "Linux" in decision.explanation
    assert decide(make_pod(os={"name": "linux"}), namespace="shop").inject
