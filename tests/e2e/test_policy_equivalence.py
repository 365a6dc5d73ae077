"""The admission policy (manifests/policy) and the webhook give the same Pods, on the real
kube-apiserver: every Pod of tests/support/admission_cases.py is created with a server-side dry
run once in a namespace the webhook serves and once in one the policy serves.

Only the selectors are changed for the comparison: the policy's bindings also require the
namespace label e2e-engine=policy (or both), and the webhook configuration skips e2e-engine=policy.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any, Final

import httpx
import pytest
import yaml

from tests.e2e.conftest import SIDECAR, Injector, containers, pod
from tests.support import admission_cases, server
from tests.support.cluster import engine_split, kube
from webhook import policies

ENGINE: Final = "e2e-engine"
# What differs by the engine's nature, not by the Pod: who refused, and how a warning is prefixed.
_DENIED: Final = re.compile(
    r"^.*?(admission webhook \"[^\"]+\" denied the request|ValidatingAdmissionPolicy '[^']+' "
    r"with binding '[^']+' denied request): "
)
_WARNED: Final = re.compile(
    r"^(299 - )?\"?"
    r"(Validation failed for ValidatingAdmissionPolicy '[^']+' with binding '[^']+': )?"
)
# Where the two engines differ (README, "Webhook or policy?"): case id -> why. Kept exact: a
# difference that disappears fails the test too, so this list never outlives its cause.
# Cases where the engines may differ, each with the reason (none today: an entry that stops
# differing fails the test, so this list only ever names real differences).
KNOWN_DIFFERENCES: Final[dict[str, str]] = {}


@pytest.fixture(scope="module")
def engines(installed: Injector, kubectl: kube.Kubectl) -> Iterator[None]:
    """The policies of manifests/policy, bound to e2e-engine=policy|both namespaces; the webhook
    configuration no longer serving e2e-engine=policy ones."""
    with engine_split.split(kubectl, ENGINE, policy=("policy", "both")):
        yield


def dry_run(api: httpx.Client, namespace: str, obj: dict[str, Any]) -> httpx.Response:
    return api.post(f"/api/v1/namespaces/{namespace}/pods", params={"dryRun": "All"}, json=obj)


def wait_injected(api: httpx.Client, namespace: str) -> None:
    """Policies reach the API server's admission asynchronously."""

    def injected() -> bool:
        response = dry_run(api, namespace, pod("probe"))
        return response.status_code == 201 and SIDECAR in containers(response.json())

    kube.eventually(injected, f"injection in {namespace}")


def outcome(response: httpx.Response, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The response without what differs by nature: namespace, generated names, uid, times."""
    warnings = sorted(_WARNED.sub("", w).rstrip('"') for w in response.headers.get_list("warning"))
    body = response.json()
    if response.status_code != 201:
        message = _DENIED.sub("", body.get("message", "")).replace(namespace, "<namespace>")
        generate = obj["metadata"].get("generateName")
        if generate:
            message = re.sub(re.escape(generate) + "[a-z0-9]{5}", generate + "<random>", message)
        return {"refused": message, "warnings": warnings}
    meta = body["metadata"]
    for key in ("namespace", "uid", "creationTimestamp", "resourceVersion", "managedFields"):
        meta.pop(key, None)
    if "generateName" in meta:
        meta.pop("name", None)
    text = re.sub(r"kube-api-access-[a-z0-9]{5}", "kube-api-access", json.dumps(body))
    return {"pod": json.loads(text), "warnings": warnings}


def compare(
    api: httpx.Client, webhook_ns: str, policy_ns: str, case: admission_cases.Case
) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        outcome(dry_run(api, webhook_ns, copy.deepcopy(case.pod)), webhook_ns, case.pod),
        outcome(dry_run(api, policy_ns, copy.deepcopy(case.pod)), policy_ns, case.pod),
    )


@pytest.fixture
def two_namespaces(
    engines: None, webhook: server.Server, namespace: Callable[..., str], api: httpx.Client
) -> tuple[str, str]:
    by_webhook = namespace("eq-webhook", **{"envoy-inject": "enabled"})
    by_policy = namespace("eq-policy", **{"envoy-inject": "enabled", ENGINE: "policy"})
    wait_injected(api, by_webhook)
    wait_injected(api, by_policy)
    return by_webhook, by_policy


@pytest.mark.timeout(900)
def test_every_corpus_pod_and_override_case_comes_out_the_same_from_both_engines(
    two_namespaces: tuple[str, str], api: httpx.Client, figures: list[str]
) -> None:
    cases = admission_cases.cases()
    identical, differing = 0, []
    for case in cases:
        by_webhook, by_policy = compare(api, *two_namespaces, case)
        if by_webhook == by_policy:
            identical += 1
        else:
            differing.append((case.id, by_webhook, by_policy))
    figures.append(f"webhook vs policy: {identical}/{len(cases)} identical")
    for case_id, _, _ in differing:
        figures.append(f"  differs: {case_id}: {KNOWN_DIFFERENCES.get(case_id, 'UNNAMED')}")
    unnamed = [d for d in differing if d[0] not in KNOWN_DIFFERENCES]
    assert not unnamed, json.dumps(unnamed[:3], indent=1)[:6000]
    gone = set(KNOWN_DIFFERENCES) - {case_id for case_id, _, _ in differing}
    assert not gone, f"no longer differ, remove from KNOWN_DIFFERENCES: {sorted(gone)}"


def test_a_bad_annotation_is_refused_by_both_with_the_same_message_kubectl_prints(
    two_namespaces: tuple[str, str], kubectl: kube.Kubectl
) -> None:
    bad = pod("web", annotations={"envoy-inject.io/cpu-limit": "lots"})
    messages = []
    for ns in two_namespaces:
        result = kubectl("-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
        assert result.returncode != 0
        messages.append(_DENIED.sub("", result.stderr.strip()))
    assert messages[0] == messages[1]
    assert (
        "envoy-inject.io/cpu-limit: 'lots' is invalid; expected a Kubernetes quantity"
        in (messages[0])
    )


def test_the_refusal_mark_only_selects_a_pod_for_the_check_and_never_refuses_it_alone(
    two_namespaces: tuple[str, str], api: httpx.Client
) -> None:
    """The mutating policy labels a Pod it would refuse; a valid Pod that carries the label
    (a user's, or copied from a refused manifest) is injected as by the webhook."""
    marked = pod("marked", labels={policies.REFUSAL_LABEL: "true"})
    by_webhook, by_policy = compare(api, *two_namespaces, admission_cases.Case("marked", marked))
    assert "pod" in by_webhook, by_webhook
    assert by_policy == by_webhook
    assert SIDECAR in containers(by_policy["pod"])
    # A Pod with a problem and no label of its own is refused by the policy (the mark is added
    # by the mutating policy, not by the user).
    bad = pod("unmarked", annotations={"envoy-inject.io/admin-port": "0"})
    by_webhook, by_policy = compare(api, *two_namespaces, admission_cases.Case("bad", bad))
    assert "refused" in by_policy, by_policy
    assert by_policy == by_webhook


def test_both_engines_bound_at_once_never_give_two_sidecars(
    engines: None, webhook: server.Server, namespace: Callable[..., str], api: httpx.Client
) -> None:
    both = namespace("eq-both", **{"envoy-inject": "enabled", ENGINE: "both"})
    wait_injected(api, both)
    for case in admission_cases.cases():
        response = dry_run(api, both, copy.deepcopy(case.pod))
        if response.status_code == 201:
            names = containers(response.json())
            assert names.count(SIDECAR) <= 1, case.id


def test_the_largest_corpus_pod_and_a_100_container_pod_are_within_the_cel_cost_limits(
    two_namespaces: tuple[str, str], api: httpx.Client
) -> None:
    _, by_policy = two_namespaces
    largest = max(admission_cases.corpus(), key=lambda c: len(json.dumps(c.pod))).pod
    largest["spec"].pop("serviceAccountName", None)  # not in this namespace; not what is tested
    largest["spec"].pop("serviceAccount", None)
    many = pod("many")
    many["spec"]["containers"] = [
        {"name": f"c{i}", "image": "example/app:1.0", "ports": [{"containerPort": 20000 + i}]}
        for i in range(100)
    ]
    for obj in (largest, many):
        response = dry_run(api, by_policy, copy.deepcopy(obj))
        assert response.status_code == 201, response.text
        assert SIDECAR in containers(response.json())


def test_the_policy_cannot_fit_the_sidecar_to_a_limit_range_and_the_api_server_refuses_it(
    engines: None, installed: Injector, namespace: Callable[..., str], api: httpx.Client,
    kubectl: kube.Kubectl,
) -> None:  # fmt: skip
    """Named difference: the policy sees only the Pod, not the namespace's LimitRanges, which
    the webhook watches (started here with a kubeconfig, as in a cluster)."""
    env = {"ENVOY_INJECTOR_KUBECONFIG": str(kubectl.kubeconfig)}
    with installed.webhook(env=env):
        _limit_range_outcomes(namespace, api, kubectl)


def _limit_range_outcomes(
    namespace: Callable[..., str], api: httpx.Client, kubectl: kube.Kubectl
) -> None:
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "small"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "200m"}}]},
    }
    app = pod("web")
    app["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "100m"}}
    results = []
    for labels in ({}, {ENGINE: "policy"}):
        ns = namespace("eq-limits", **{"envoy-inject": "enabled", **labels})
        kubectl("-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(limit_range))
        wait_injected_or_refused(api, ns)
        results.append(dry_run(api, ns, copy.deepcopy(app)))
    by_webhook, by_policy = results
    assert by_webhook.status_code == 201
    sidecar = next(c for c in by_webhook.json()["spec"]["containers"] if c["name"] == SIDECAR)
    assert sidecar["resources"]["limits"]["cpu"] == "200m"
    assert by_policy.status_code == 403
    assert "maximum cpu usage per Container is 200m, but limit is 500m" in by_policy.text


def wait_injected_or_refused(api: httpx.Client, namespace: str) -> None:
    def engaged() -> bool:
        response = dry_run(api, namespace, pod("probe"))
        return response.status_code != 201 or SIDECAR in containers(response.json())

    kube.eventually(engaged, f"an engine in {namespace}")


def test_the_policy_cannot_fit_the_sidecar_to_pod_level_resources_and_the_api_server_refuses_it(
    two_namespaces: tuple[str, str], api: httpx.Client
) -> None:
    """Named difference: the webhook lowers the sidecar's limit to the Pod's `spec.resources`
    (webhook/limits.py); the policy's CEL keeps the configured one, and the API server refuses a
    container limit above the Pod's."""
    app = pod("web")
    app["spec"]["resources"] = {"limits": {"cpu": "300m", "memory": "512Mi"}}
    by_webhook, by_policy = (dry_run(api, ns, copy.deepcopy(app)) for ns in two_namespaces)
    assert by_webhook.status_code == 201, by_webhook.text
    sidecar = next(c for c in by_webhook.json()["spec"]["containers"] if c["name"] == SIDECAR)
    assert sidecar["resources"]["limits"]["cpu"] == "300m"
    assert by_policy.status_code == 422, by_policy.text
    assert "must be less than or equal to pod limits of 300m" in by_policy.text


def test_check_names_the_engine_of_each_namespace_and_warns_where_both_serve(
    engines: None, webhook: server.Server, namespace: Callable[..., str], api: httpx.Client,
    kubectl: kube.Kubectl,
) -> None:  # fmt: skip
    both = namespace("eq-both", **{"envoy-inject": "enabled", ENGINE: "both"})
    by_policy = namespace("eq-policy", **{"envoy-inject": "enabled", ENGINE: "policy"})
    by_webhook = namespace("eq-webhook", **{"envoy-inject": "enabled"})
    wait_injected(api, both)
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "check", "-o", "json",
         "--kubeconfig", str(kubectl.kubeconfig), both, by_policy, by_webhook],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    engine = {
        f["subject"]: (f["severity"], f["message"])
        for f in json.loads(result.stdout)["findings"]
        if f["check"] == "engine"
    }
    assert engine[f"Namespace {both}"][0] == "warning"
    assert "served by both the webhook and the admission policy" in engine[f"Namespace {both}"][1]
    assert engine[f"Namespace {by_policy}"][0] == "ok"
    assert "from the admission policy" in engine[f"Namespace {by_policy}"][1]
    assert f"Namespace {by_webhook}" not in engine  # the webhook's own finding says it
