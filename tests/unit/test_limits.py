"""The sidecar's resources fit the namespace's LimitRanges, its quotas and the Pod's own resources.

Expected values are worked out by hand from the LimitRanger and quota rules (kubernetes
plugin/pkg/admission/limitranger and resourcequota), not taken from the code.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pods import make_pod
from webhook import errors, limits, patch
from webhook.inject import plan
from webhook.spec import Policy, Resources, SidecarSpec


def _range(name: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"limits": list(items)}}


def _quota(name: str, hard: dict[str, str], used: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"hard": hard}, "status": {"used": used or {}}}


def _fit(pod: dict[str, Any], **namespace: Any) -> limits.Fitted:
    return limits.fit(Resources(), pod, limits.Namespace(**namespace))


def test_no_limits_leave_the_defaults_alone() -> None:
    fitted = _fit(make_pod())
    assert fitted.resources == Resources()
    assert fitted.warnings == ()


def test_a_container_max_lowers_the_default_limit_with_a_warning() -> None:
    ranges = [_range("small", {"type": "Container", "max": {"cpu": "200m"}})]
    fitted = _fit(make_pod(), limit_ranges=ranges)
    assert fitted.resources.cpu_limit == "200m"
    assert fitted.resources.cpu_request == "100m"  # still under the new limit
    (warning,) = fitted.warnings
    assert 'LimitRange "small"' in warning
    assert "envoy-inject.io/cpu-limit" in warning


def test_a_memory_max_under_the_request_brings_the_request_down_too() -> None:
    ranges = [_range("tight", {"type": "Container", "max": {"memory": "100Mi"}})]
    fitted = _fit(make_pod(), limit_ranges=ranges)
    assert fitted.resources.memory_limit == "100Mi"
    assert fitted.resources.memory_request == "100Mi"


def test_a_container_min_raises_the_request() -> None:
    ranges = [_range("floor", {"type": "Container", "min": {"cpu": "150m"}})]
    fitted = _fit(make_pod(), limit_ranges=ranges)
    assert fitted.resources.cpu_request == "150m"
    assert fitted.resources.cpu_limit == "500m"


def test_a_limit_to_request_ratio_raises_the_request() -> None:
    # 256Mi limit / ratio 1.5 -> the request must be at least 170.67Mi, rounded up to the byte.
    ranges = [_range("ratio", {"type": "Container", "maxLimitRequestRatio": {"memory": "1.5"}})]
    fitted = _fit(make_pod(), limit_ranges=ranges)
    assert fitted.resources.memory_request == str(-(-256 * 2**20 * 2 // 3))


def test_a_pod_max_leaves_the_sidecar_what_the_app_containers_do_not_use() -> None:
    app = {"name": "app", "image": "a", "resources": {"limits": {"cpu": "700m"}}}
    ranges = [_range("per-pod", {"type": "Pod", "max": {"cpu": "1"}})]
    fitted = _fit(make_pod(containers=[app]), limit_ranges=ranges)
    assert fitted.resources.cpu_limit == "300m"


def test_a_limit_range_on_ephemeral_storage_makes_the_sidecar_state_it() -> None:
    ranges = [_range("disk", {"type": "Container", "max": {"ephemeral-storage": "32Mi"}})]
    fitted = _fit(make_pod(), limit_ranges=ranges)
    assert fitted.resources.ephemeral_storage_limit == "32Mi"
    # Only a limit is required; the API server defaults the request to it.
    assert fitted.resources.ephemeral_storage_request is None
    assert "envoy-inject.io/ephemeral" not in " ".join(fitted.warnings)  # no such annotation


def test_a_quota_on_ephemeral_storage_makes_the_sidecar_state_it() -> None:
    quotas = [
        _quota("q", {"requests.ephemeral-storage": "10Gi", "limits.ephemeral-storage": "10Gi"})
    ]
    fitted = _fit(make_pod(), quotas=quotas)
    assert fitted.resources.ephemeral_storage_request == "16Mi"
    assert fitted.resources.ephemeral_storage_limit == "64Mi"


def test_a_quota_without_room_for_the_sidecar_is_refused_naming_it() -> None:
    app = {"name": "app", "image": "a", "resources": {"requests": {"cpu": "400m"}}}
    quotas = [_quota("team", {"requests.cpu": "1"}, {"requests.cpu": "600m"})]
    with pytest.raises(errors.ResourcesDoNotFit) as caught:
        _fit(make_pod(containers=[app]), quotas=quotas)
    message = str(caught.value)
    assert 'ResourceQuota "team" has 400m of requests.cpu left' in message
    assert "needs 500m with its Envoy sidecar (100m)" in message
    assert "envoy-inject.io/cpu-request" in message
    # Exactly enough room is enough.
    roomy = [_quota("team", {"requests.cpu": "1"}, {"requests.cpu": "500m"})]
    assert _fit(make_pod(containers=[app]), quotas=roomy).warnings == ()


def test_pod_level_resources_bound_the_sidecar() -> None:
    app = {"name": "app", "image": "a", "resources": {"requests": {"memory": "200Mi"}}}
    pod = make_pod(
        containers=[app],
        resources={"requests": {"memory": "256Mi"}, "limits": {"cpu": "300m", "memory": "512Mi"}},
    )
    fitted = _fit(pod)
    assert fitted.resources.cpu_limit == "300m"
    assert fitted.resources.memory_request == "56Mi"  # 256Mi - 200Mi


def test_an_annotated_limit_that_does_not_fit_is_refused_not_moved() -> None:
    ranges = [_range("small", {"type": "Container", "max": {"cpu": "200m"}})]
    pod = make_pod(annotations={"envoy-inject.io/cpu-limit": "400m"})
    with pytest.raises(errors.ResourcesDoNotFit) as caught:
        plan(
            pod,
            SidecarSpec(),
            Policy(),
            namespace="shop",
            namespace_limits=limits.Namespace(ranges),
        )
    message = str(caught.value)
    assert "envoy-inject.io/cpu-limit: '400m' does not fit" in message
    assert 'LimitRange "small"' in message


def test_a_limit_range_too_small_for_envoy_is_refused() -> None:
    ranges = [_range("mini", {"type": "Container", "max": {"memory": "32Mi"}})]
    with pytest.raises(errors.ResourcesDoNotFit) as caught:
        _fit(make_pod(), limit_ranges=ranges)
    assert "below the 64Mi it needs to run" in str(caught.value)


def test_a_limit_range_on_an_extended_resource_is_refused_naming_it() -> None:
    ranges = [_range("gpus", {"type": "Container", "max": {"nvidia.com/gpu": "1"}})]
    with pytest.raises(errors.ResourcesDoNotFit) as caught:
        _fit(make_pod(), limit_ranges=ranges)
    assert 'LimitRange "gpus"' in str(caught.value)
    assert "nvidia.com/gpu" in str(caught.value)


def test_the_fitted_resources_reach_the_container_and_kubectl_sees_the_warning() -> None:
    ranges = [_range("small", {"type": "Container", "max": {"cpu": "200m"}})]
    pod = make_pod()
    result = plan(
        pod, SidecarSpec(), Policy(), namespace="shop", namespace_limits=limits.Namespace(ranges)
    )
    injected = patch.apply(pod, result.ops)
    sidecar = injected["spec"]["containers"][-1]
    assert sidecar["resources"]["limits"]["cpu"] == "200m"
    assert any("LimitRange" in w for w in result.warnings)


def test_pod_level_room_below_a_limit_range_minimum_is_refused_naming_both() -> None:
    # Found on the real API server: the app's defaulted 50m request fills the Pod's 50m, so the
    # sidecar would get 0m, under the LimitRange's 5m minimum and its limit/request ratio.
    app = {"name": "app", "image": "a", "resources": {"requests": {"cpu": "50m"}}}
    pod = make_pod(containers=[app], resources={"requests": {"cpu": "50m"}})
    ranges = [
        _range(
            "team",
            {"type": "Container", "min": {"cpu": "5m"}, "maxLimitRequestRatio": {"cpu": "10"}},
        )
    ]
    with pytest.raises(errors.ResourcesDoNotFit) as caught:
        _fit(pod, limit_ranges=ranges)
    message = str(caught.value)
    assert 'LimitRange "team" needs a cpu request of at least 5m' in message
    assert "spec.resources" in message
