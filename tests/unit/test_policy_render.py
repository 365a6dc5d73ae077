"""The CEL renderer (webhook/cel.py, webhook/policies.py), checked without an API server: it
covers every override and skip of the webhook, leaves no placeholder behind, and selects what the
webhook configuration selects. What the policies *do* is checked on a real kube-apiserver
(tests/e2e/test_policy_equivalence.py)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR
from webhook import cel, inject, overrides, policies, render
from webhook.spec import WARNED_LABEL, Policy, Resources, SidecarSpec


def rendered(defaults: SidecarSpec | None = None, policy: Policy | None = None) -> list[dict]:  # type: ignore[type-arg]
    return policies.render(defaults or SidecarSpec(), policy or Policy(), excluded=())


def test_every_override_annotation_of_the_webhook_has_a_cel_check() -> None:
    assert sorted(cel.OVERRIDES) == sorted(overrides.TABLE)


@pytest.mark.parametrize("name", sorted(overrides.TABLE))
def test_the_accepted_form_is_the_webhook_parsers_own_words(name: str) -> None:
    with pytest.raises(ValueError, match=r"^expected ") as caught:
        overrides.TABLE[name].parse("not valid \0")
    assert cel.accepted_form(name) == str(caught.value)


@pytest.mark.parametrize("native", [False, True], ids=["container", "init-container"])
def test_every_field_of_the_rendered_sidecar_is_in_the_cel_container(native: bool) -> None:
    text = cel.container(native=native)
    container = render.sidecar_container(SidecarSpec(native=native), "web")
    for key in container:
        assert re.search(rf'[{{,] ?\??"{key}": ', text), key
    assert "__cel_" not in text
    assert not re.search(r"99000\d", text), "a placeholder was left as a number"


def test_the_status_annotation_is_rendered_by_the_webhooks_own_record() -> None:
    text = cel.status()
    for native in (False, True):
        record = render.status(SidecarSpec(image="IMAGE", native=native))
        assert cel.quote(record.split("IMAGE")[0]) in text


def test_the_stop_sleep_constants_come_from_render() -> None:
    (expression,) = [v for n, v in cel.values(SidecarSpec()) if n == "stopSleep"]
    assert str(render.STOP_SLEEP_SECONDS) in expression
    assert str(render.stop_sleep(render.DEFAULT_GRACE_SECONDS)) in expression


def test_the_six_objects_and_their_bindings_name_their_policies() -> None:
    objects = rendered()
    kinds = [o["kind"] for o in objects]
    assert kinds == [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    for policy, binding in zip(objects[::2], objects[1::2], strict=True):
        assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert objects[3]["spec"]["validationActions"] == ["Deny"]
    assert objects[5]["spec"]["validationActions"] == ["Warn"]


def test_the_bindings_select_what_the_shipped_webhook_configuration_selects() -> None:
    (configuration,) = documents.find(
        documents.objects(INJECTOR), "MutatingWebhookConfiguration", "envoy-injector"
    )
    (hook,) = configuration["webhooks"]
    match = policies.match_resources({"envoy-injector"})
    assert match["objectSelector"] == hook["objectSelector"]
    expected = {e["key"]: e for e in hook["namespaceSelector"]["matchExpressions"]}
    got = {e["key"]: e for e in match["namespaceSelector"]["matchExpressions"]}
    assert got.keys() == expected.keys()
    for key, expression in expected.items():
        assert got[key]["operator"] == expression["operator"]
        assert sorted(got[key]["values"]) == sorted(expression["values"])


def test_excluded_namespaces_are_never_selected() -> None:
    match = policies.match_resources({"legacy", "envoy-injector"})
    (names,) = [
        e for e in match["namespaceSelector"]["matchExpressions"]
        if e["key"] == "kubernetes.io/metadata.name"
    ]  # fmt: skip
    assert set(names["values"]) == set(inject.SYSTEM_NAMESPACES) | {"legacy", "envoy-injector"}


def test_every_skip_reason_is_a_selector_or_guards_every_policy_step() -> None:
    by_selector = {
        inject.SkipReason.NOT_POD_CREATE,  # matchConstraints: CREATE of pods
        inject.SkipReason.EXCLUDED_NAMESPACE,  # namespaceSelector
        inject.SkipReason.LABEL_DISABLED,  # objectSelector
    }
    assert set(cel.SKIPS) == {str(r) for r in inject.SkipReason} - {str(r) for r in by_selector}
    mutating, _, validating, *_ = rendered()
    for policy in (mutating, validating):
        (served,) = [v for v in policy["spec"]["variables"] if v["name"] == "served"]
        for expression in cel.SKIPS.values():
            assert f"({expression})" in served["expression"]
        assert "matchConditions" not in policy["spec"]  # one conversion of the Pod fewer
    (mutation,) = mutating["spec"]["mutations"]
    assert mutation["jsonPatch"]["expression"].startswith("!variables.served ? [] :")
    for validation in validating["spec"]["validations"]:
        assert validation["expression"].startswith("!variables.served || ")


def test_only_pods_the_mutating_policy_marks_are_selected_for_refusal() -> None:
    objects = rendered()
    (mutation,) = objects[0]["spec"]["mutations"]
    patch = mutation["jsonPatch"]["expression"]
    # The mark is added exactly when the Pod is served but has a problem (not ok).
    assert "!variables.served ? [] :\n!variables.ok ? (" in patch
    assert cel.quote(policies.REFUSAL_LABEL) in patch.split(") :\n")[0]
    # The warned label, as the webhook adds it, only to an injected Pod it warns about.
    assert patch.split(") :\n", 1)[1].endswith(
        f"(!variables.warned ? [] : (\n  {policies._label(WARNED_LABEL, unless_present=True)}\n))"
    )
    mutating = objects[1]["spec"]["matchResources"]
    deny, warn = objects[3]["spec"]["matchResources"], objects[5]["spec"]["matchResources"]
    for match, label in ((deny, policies.REFUSAL_LABEL), (warn, WARNED_LABEL)):
        expressions = match["objectSelector"]["matchExpressions"]
        assert expressions[-1] == {"key": label, "operator": "Exists"}
        assert expressions[:-1] == mutating["objectSelector"]["matchExpressions"]
        assert match["namespaceSelector"] == mutating["namespaceSelector"]


def test_an_override_the_operator_forbids_is_refused_with_the_webhooks_words() -> None:
    policy = Policy(allowed_overrides=frozenset({"inject"}))
    (forbidden,) = [v for n, v in cel.problems(policy) if n == "forbidden"]
    assert "overriding cpu-limit is not allowed by the injector's policy (allowed: inject)" in (
        forbidden
    )
    assert "overriding inject" not in forbidden


def test_no_ceiling_means_no_ceiling_check() -> None:
    policy = Policy(max_cpu=None, max_memory=None)
    (forbidden,) = [v for n, v in cel.problems(policy) if n == "forbidden"]
    assert "ceiling" not in forbidden


def test_the_operators_defaults_reach_the_cel() -> None:
    defaults = dataclasses.replace(SidecarSpec(), image="envoyproxy/envoy:v1.40.1", concurrency=4)
    text = yaml.safe_dump(rendered(defaults))
    assert "envoyproxy/envoy:v1.40.1" in text
    (concurrency,) = [v for n, v in cel.values(defaults) if n == "concurrency"]
    assert concurrency.endswith(": 4")


def test_a_native_default_makes_every_pod_native() -> None:
    (native,) = [v for n, v in cel.values(SidecarSpec(native=True)) if n == "native"]
    assert native.endswith("variables.job || true)")


def test_a_pod_without_overrides_skips_the_annotation_checks_unless_the_defaults_conflict() -> None:
    found = dict(cel.problems(Policy(), SidecarSpec()))
    for name in ("invalid", "conflicts", "forbidden"):
        assert found[name].startswith("!variables.overridden ? [] : "), name
    clashing = SidecarSpec(resources=Resources(cpu_request="2", cpu_limit="1"))
    assert overrides.check_combinations({}, clashing)  # the webhook refuses every Pod
    conflicts = dict(cel.problems(Policy(), clashing))["conflicts"]
    assert not conflicts.startswith("!variables.overridden")
