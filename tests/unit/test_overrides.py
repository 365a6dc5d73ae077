"""envoy-inject.io/* annotations: parsing, every error at once, warnings, and policy."""

from __future__ import annotations

from decimal import Decimal

import pytest

from webhook import errors, overrides, quantity
from webhook.spec import Policy, Resources, SidecarSpec

P = "envoy-inject.io/"
DEFAULTS = SidecarSpec()
POLICY = Policy()


def resolve(given: dict[str, str], policy: Policy = POLICY) -> overrides.Resolution:
    return overrides.resolve(DEFAULTS, {P + k: v for k, v in given.items()}, policy)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("250m", Decimal("0.25")),
        ("1.5", Decimal("1.5")),
        (".5", Decimal("0.5")),
        ("128Mi", Decimal(128 * 2**20)),
        ("1Gi", Decimal(2**30)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
    ],
    ids=str,
)
def test_quantities_follow_the_kubernetes_grammar(text: str, value: Decimal) -> None:
    assert quantity.parse(text) == value


@pytest.mark.parametrize("text", ["", "-1", "1 Gi", "1gi", "abc", "1.2.3", "Mi", "1e"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Kubernetes quantity"):
        quantity.parse(text)


def test_no_annotations_gives_the_defaults_without_warnings() -> None:
    assert overrides.resolve(DEFAULTS, {}, POLICY) == overrides.Resolution(DEFAULTS, ())


def test_every_override_reaches_the_spec() -> None:
    resolution = resolve(
        {
            "image": "envoyproxy/envoy:v1.40.1",
            "config-map": "my-envoy",
            "proxy-port": "15001",
            "app-port": "9000",
            "admin-port": "15000",
            "service-cluster": "checkout",
            "cpu-request": "50m",
            "cpu-limit": "1",
            "memory-request": "64Mi",
            "memory-limit": "512Mi",
            "log-level": "debug",
            "concurrency": "4",
            "native-sidecar": "true",
        }
    )
    assert resolution.warnings == ()
    assert resolution.spec == SidecarSpec(
        image="envoyproxy/envoy:v1.40.1",
        proxy_port=15001,
        app_port=9000,
        admin_port=15000,
        config_map="my-envoy",
        cluster="checkout",
        resources=Resources("50m", "1", "64Mi", "512Mi"),
        log_level="debug",
        concurrency=4,
        native=True,
    )


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("proxy-port", "abc", "port number from 1 to 65535"),
        ("proxy-port", "0", "port number from 1 to 65535"),
        ("admin-port", "70000", "port number from 1 to 65535"),
        ("inject", "yes", '"true" or "false"'),
        ("native-sidecar", "True", '"true" or "false"'),
        ("cpu-limit", "lots", "Kubernetes quantity"),
        ("memory-request", "-1Mi", "Kubernetes quantity"),
        ("log-level", "verbose", "trace, debug, info"),
        ("concurrency", "0", "from 1 to 64"),
        ("concurrency", "two", "from 1 to 64"),
        ("config-map", "My_Config", "ConfigMap name"),
        ("service-cluster", "$(SECRET)", "letters, digits"),
        ("image", "envoy proxy", "image reference"),
    ],
    ids=str,
)
def test_a_bad_value_is_refused_naming_annotation_value_and_accepted_form(
    name: str, value: str, accepted: str
) -> None:
    extra = {"config-map": "own-config"} if name.endswith("-port") else {}
    with pytest.raises(errors.AnnotationError) as caught:
        resolve({name: value, **extra})
    message = str(caught.value)
    assert P + name in message
    assert repr(value) in message
    assert accepted in message
    assert caught.value.code == 400


def test_all_bad_annotations_are_reported_in_one_message() -> None:
    with pytest.raises(errors.AnnotationError) as caught:
        resolve({"proxy-port": "x", "log-level": "loud", "cpu-limit": "?", "config-map": "c"})
    assert len(caught.value.problems) == 3
    for key in ("proxy-port", "log-level", "cpu-limit"):
        assert P + key in str(caught.value)


def test_a_port_override_without_its_own_config_is_ignored_with_a_warning() -> None:
    resolution = resolve({"proxy-port": "15001"})
    assert resolution.spec.proxy_port == DEFAULTS.proxy_port
    assert len(resolution.warnings) == 1
    assert P + "proxy-port was ignored" in resolution.warnings[0]
    assert P + "config-map" in resolution.warnings[0]


def test_an_unknown_annotation_in_our_prefix_is_a_warning_listing_the_known_ones() -> None:
    resolution = resolve({"proxyport": "15001"})
    assert resolution.spec == DEFAULTS
    assert P + "proxyport is not a known annotation" in resolution.warnings[0]
    assert "proxy-port" in resolution.warnings[0]


def test_other_prefixes_are_not_ours_to_judge() -> None:
    got = overrides.resolve(DEFAULTS, {"sidecar.istio.io/inject": "maybe", "a": "b"}, POLICY)
    assert got == overrides.Resolution(DEFAULTS, ())


def test_hold_application_makes_the_sidecar_native() -> None:
    spec = resolve({"hold-application": "true"}).spec
    assert spec.native is True
    assert spec.hold_application is True


def test_hold_application_with_native_sidecar_false_is_a_contradiction() -> None:
    with pytest.raises(errors.AnnotationError, match="hold-application"):
        resolve({"hold-application": "true", "native-sidecar": "false"})


def test_a_request_above_its_limit_is_refused() -> None:
    with pytest.raises(errors.AnnotationError, match="cpu-request '1' is above the cpu limit"):
        resolve({"cpu-request": "1"})


def test_ports_that_collide_are_refused() -> None:
    with pytest.raises(errors.AnnotationError, match="ports must differ"):
        resolve({"proxy-port": "9901", "config-map": "c"})


def test_an_image_outside_the_allowed_registries_violates_the_policy() -> None:
    with pytest.raises(errors.PolicyViolation) as caught:
        resolve({"image": "evil.example/envoy:latest"})
    assert caught.value.code == 403
    assert "evil.example/envoy:latest" in str(caught.value)
    assert "envoyproxy/envoy:" in str(caught.value)


def test_resources_above_the_policy_ceiling_violate_the_policy() -> None:
    with pytest.raises(errors.PolicyViolation) as caught:
        resolve({"memory-limit": "4Gi", "cpu-limit": "8", "cpu-request": "3"})
    message = str(caught.value)
    assert "memory-limit: '4Gi' is above the policy's ceiling '1Gi'" in message
    assert "cpu-limit: '8' is above the policy's ceiling '2'" in message
    assert "cpu-request: '3'" in message


def test_an_override_the_policy_does_not_allow_is_refused_naming_the_rule() -> None:
    policy = Policy(allowed_overrides=frozenset({"inject"}))
    with pytest.raises(errors.PolicyViolation, match="overriding log-level is not allowed"):
        resolve({"log-level": "debug"}, policy)


def test_bad_values_are_reported_before_policy_violations() -> None:
    with pytest.raises(errors.AnnotationError):
        resolve({"image": "evil.example/envoy:1", "concurrency": "many"})
