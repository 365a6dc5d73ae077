"""Properties over random Pods, annotation maps and reviews (short profile in CI; run
HYPOTHESIS_PROFILE=long for 100k examples)."""

from __future__ import annotations

import base64
import json
import unittest.mock
from typing import Any

import orjson
from hypothesis import given, strategies as st

from tests.support import admissible, strategies
from tests.support.pods import check_injection_invariants, make_pod, validate
from webhook import errors, limits, mutate, patch, view
from webhook.inject import SkipReason, plan
from webhook.spec import Policy, SidecarSpec

CTX = mutate.Context(excluded_namespaces=frozenset({"envoy-injector"}))


@given(strategies.valid_pods())
def test_valid_pods_are_injected_into_schema_valid_pods_or_refused_cleanly(
    pod: dict[str, Any],
) -> None:
    try:
        result = plan(pod, SidecarSpec(), Policy(), namespace="shop")
    except errors.PodRejected as exc:
        rejection = str(exc)
        result = None
    if result is None:
        assert rejection.startswith(("invalid annotations:", "refused by the injector's policy:"))
        return
    after = check_injection_invariants(pod, result.ops, warned=bool(result.warnings))
    validate(after)
    if result.ops:
        again = plan(after, SidecarSpec(), Policy(), namespace="shop")
        assert again.ops == []
        assert again.decision.reason == SkipReason.ALREADY_INJECTED


@given(strategies.hostile_pods())
def test_hostile_pods_never_crash_the_core_and_every_patch_applies(pod: dict[str, Any]) -> None:
    try:
        result = plan(pod, SidecarSpec(), Policy(), namespace="shop")
    except errors.PodRejected:
        return
    after = patch.apply(pod, result.ops)
    assert all(op["op"] == "add" for op in result.ops)
    if result.ops:
        assert plan(after, SidecarSpec(), Policy(), namespace="shop").ops == []


@given(strategies.hostile_reviews())
def test_a_hostile_review_is_never_answered_with_500(review: Any) -> None:
    reply = mutate.review(json.dumps(review).encode(), CTX)
    assert reply.status in (200, 400), reply.outcome
    answer = json.loads(reply.body)
    if reply.status == 200:
        assert answer["response"]["uid"] == review["request"]["uid"]
        if "patch" in answer["response"]:
            ops = json.loads(base64.b64decode(answer["response"]["patch"]))
            patch.apply(review["request"]["object"], ops)
    else:
        assert answer["kind"] == "Status"
        assert answer["message"]


@given(st.binary(max_size=256))
def test_random_bytes_are_a_400_never_a_500(raw: bytes) -> None:
    assert mutate.review(raw, CTX).status == 400


# A namespace whose LimitRange and quota make the core read containers' resources.
_TIGHT = limits.Namespace(
    limit_ranges=(
        {
            "metadata": {"name": "small"},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": "300m", "memory": "1Gi"}}]},
        },
    ),
    quotas=({"metadata": {"name": "q"}, "spec": {"hard": {"requests.cpu": "2"}}},),
)


def _lookup(namespace: str) -> limits.Namespace:
    return _TIGHT if namespace == "tight" else limits.EMPTY


def _full_decode_review(raw: bytes) -> mutate.Reply:
    """The same review with the fast path switched off: every field decoded by orjson."""
    with unittest.mock.patch.object(view, "parse", return_value=None):
        return mutate.review(raw, CTX, namespace_limits=_lookup)


# Admissible Pods carry every field the core reads (ports, resources, os, grace period...), so
# a field the view forgets to decode shows up here as a different answer.
_ADMISSIBLE_REVIEWS = st.builds(
    strategies.review_for,
    st.one_of(admissible.admissible_pods(), admissible.admissible_pods(restricted=True)),
    namespace=st.sampled_from(["shop", "tight"]),
)


@given(
    st.one_of(
        strategies.hostile_reviews(),
        strategies.valid_pods().map(strategies.review_for),
        _ADMISSIBLE_REVIEWS,
    )
)
def test_the_partial_decode_answers_exactly_as_a_full_decode(review: Any) -> None:
    raw = json.dumps(review).encode()
    fast = mutate.review(raw, CTX, namespace_limits=_lookup)
    full = _full_decode_review(raw)
    assert fast.status == full.status
    if fast.status == 200:
        assert fast.body == full.body
        assert fast.outcome == full.outcome
    else:
        assert json.loads(fast.body)["code"] == json.loads(full.body)["code"]


def test_the_fast_path_is_taken_for_an_ordinary_review() -> None:
    raw = json.dumps(strategies.review_for(make_pod())).encode()
    with unittest.mock.patch.object(orjson, "loads", side_effect=AssertionError("full decode")):
        assert mutate.review(raw, CTX).status == 200


_QUANTITIES = st.sampled_from(["1", "100m", "250m", "2", "64Mi", "1Gi", "5", "junk"])
_RESOURCES = st.fixed_dictionaries(
    {},
    optional={
        "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), _QUANTITIES, max_size=2),
        "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), _QUANTITIES, max_size=2),
    },
)
_PORTS = st.lists(
    st.fixed_dictionaries(
        {"containerPort": st.sampled_from([10000, 9901, 8080, 15001])},
        optional={"protocol": st.sampled_from(["TCP", "UDP", "SCTP"]), "name": st.just("p")},
    ),
    max_size=3,
)
_LIMIT_RANGE = {
    "metadata": {"name": "lr", "namespace": "shop"},
    "spec": {
        "limits": [
            {
                "type": "Container",
                "max": {"cpu": "300m", "memory": "200Mi"},
                "min": {"cpu": "10m"},
                "default": {"cpu": "200m", "memory": "100Mi"},
            },
            {"type": "Pod", "max": {"cpu": "3", "memory": "2Gi"}},
        ]
    },
}


@st.composite
def pods_with_the_fields_the_rules_read(draw: st.DrawFn) -> dict[str, Any]:
    """Valid pods plus what the port, grace period and resource rules read."""
    pod = draw(strategies.valid_pods())
    spec = pod["spec"]
    for container in spec["containers"] + spec.get("initContainers", []):
        if draw(st.booleans()):
            container["ports"] = draw(_PORTS)
        if draw(st.booleans()):
            container["resources"] = draw(_RESOURCES)
    for container in spec.get("initContainers", []):
        if draw(st.booleans()):
            container["restartPolicy"] = draw(st.sampled_from(["Always", "OnFailure"]))
    if draw(st.booleans()):
        spec["terminationGracePeriodSeconds"] = draw(st.sampled_from([0, 3, 30, 120, -1, "9"]))
    if draw(st.booleans()):
        spec["resources"] = draw(_RESOURCES)
    return pod


@given(pods_with_the_fields_the_rules_read(), st.booleans())
def test_the_partial_decode_answers_exactly_as_a_full_decode_for_every_rule_s_fields(
    pod: dict[str, Any], limited: bool
) -> None:
    namespace = limits.Namespace(limit_ranges=[_LIMIT_RANGE]) if limited else limits.EMPTY
    raw = json.dumps(strategies.review_for(pod)).encode()
    fast = mutate.review(raw, CTX, namespace_limits=lambda _: namespace)
    with unittest.mock.patch.object(view, "parse", return_value=None):
        full = mutate.review(raw, CTX, namespace_limits=lambda _: namespace)
    assert (fast.status, fast.body, fast.outcome) == (full.status, full.body, full.outcome)
