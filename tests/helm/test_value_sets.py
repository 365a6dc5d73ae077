"""The chart rendered with several value sets: each output validates strictly against the
Kubernetes schema, passes yamllint and the webhook safety checks the kustomize install passes
(tests/manifests/webhook_safety.py), keeps every Pod within the ``restricted`` standard, and
gives the server a config file it accepts; and each value lands where it should.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
import yaml

from certs import job
from tests.helm import chart
from tests.helm.chart import Object
from tests.manifests import documents, webhook_safety
from tests.manifests.test_yamllint import yamllint
from tests.support import k8s
from webhook import settings

DIGEST: Final = "sha256:" + "0123456789abcdef" * 4


def one(objs: list[Object], kind: str, name: str | None = None) -> Object:
    (found,) = [o for o in objs if o["kind"] == kind and name in {None, o["metadata"]["name"]}]
    return found


def webhook(objs: list[Object]) -> Object:
    hook: Object = one(objs, "MutatingWebhookConfiguration")["webhooks"][0]
    return hook


def config(objs: list[Object]) -> str:
    text: str = one(objs, "ConfigMap")["data"]["config.yaml"]
    return text


def images(objs: list[Object]) -> set[str]:
    return {
        c["image"] for obj in objs if (spec := documents.pod_spec(obj)) for c in spec["containers"]
    }


def pod_specs(objs: list[Object]) -> list[Object]:
    return [spec for obj in objs if (spec := documents.pod_spec(obj)) is not None]


def cert_args(objs: list[Object]) -> list[dict[str, str]]:
    return [
        documents.flag_values(documents.container(spec, "certs")["args"])
        for obj in objs
        if obj["kind"] in {"Job", "CronJob"} and (spec := documents.pod_spec(obj))
    ]


def expect_digest(objs: list[Object]) -> None:
    assert images(objs) == {f"registry.example/envoy-injector@{DIGEST}"}
    assert {c["imagePullPolicy"] for s in pod_specs(objs) for c in s["containers"]} == {"Always"}
    for spec in pod_specs(objs):
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]


def expect_three_replicas(objs: list[Object]) -> None:
    assert one(objs, "Deployment", "envoy-injector")["spec"]["replicas"] == 3
    assert one(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def expect_one_replica_and_no_budget(objs: list[Object]) -> None:
    assert one(objs, "Deployment", "envoy-injector")["spec"]["replicas"] == 1
    assert not [o for o in objs if o["kind"] == "PodDisruptionBudget"]


def expect_ignore(objs: list[Object]) -> None:
    assert webhook(objs)["failurePolicy"] == "Ignore"
    assert webhook(objs)["timeoutSeconds"] == 3


def expect_no_controller(objs: list[Object]) -> None:
    components = {o["metadata"]["labels"].get("app.kubernetes.io/component") for o in objs}
    assert "controller" not in components
    assert {o["kind"] for o in objs} >= {"Deployment", "MutatingWebhookConfiguration"}
    assert not [o for o in objs if o["kind"] in chart.POLICY_KINDS]
    # The webhook's own half stays whole.
    assert [o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"] == ["envoy-injector"]
    assert len([o for o in objs if o["kind"] == "NetworkPolicy"]) == 2


def expect_controller_tuned(objs: list[Object]) -> None:
    controller = one(objs, "Deployment", "envoy-injector-controller")
    assert controller["spec"]["replicas"] == 1
    spec = controller["spec"]["template"]["spec"]
    assert spec["tolerations"] == [{"key": "infra", "operator": "Exists"}]
    # The policy's names follow the renamed ConfigMap the sidecar mounts.
    policy = one(objs, "ValidatingAdmissionPolicy")
    assert policy["spec"]["variables"][0]["expression"] == "['mesh-envoy']"


def expect_no_network_policy(objs: list[Object]) -> None:
    assert not [o for o in objs if o["kind"] == "NetworkPolicy"]


def expect_api_server_cidr(objs: list[Object]) -> None:
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    assert len(policies) == 3
    for policy in policies:
        api = policy["spec"]["egress"][0]
        assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
        assert api["ports"] == [{"port": 6443, "protocol": "TCP"}]


def expect_scheduling(objs: list[Object]) -> None:
    deployment = one(objs, "Deployment", "envoy-injector")["spec"]["template"]["spec"]
    assert deployment["nodeSelector"] == {"node-role.example/infra": "true"}
    assert deployment["tolerations"] == [{"key": "infra", "operator": "Exists"}]
    server = documents.container(deployment, "envoy-injector")
    # Helm merges maps: the requests given, the default limits kept.
    assert server["resources"] == {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    }
    for obj in objs:
        if obj["kind"] in {"Job", "CronJob"}:
            spec = documents.pod_spec(obj)
            assert spec is not None
            assert spec["nodeSelector"] == {"node-role.example/infra": "true"}
            assert "affinity" not in spec


def expect_selectors(objs: list[Object]) -> None:
    hook = webhook(objs)
    assert hook["namespaceSelector"]["matchLabels"] == {"team": "payments"}
    assert hook["namespaceSelector"]["matchExpressions"][-1] == {
        "key": "tier",
        "operator": "NotIn",
        "values": ["legacy"],
    }
    assert hook["objectSelector"]["matchExpressions"][-1] == {
        "key": "sidecar.example/skip",
        "operator": "DoesNotExist",
    }
    assert "batch" in hook["namespaceSelector"]["matchExpressions"][1]["values"]
    context = settings.context_from_config(config(objs), own_namespace="envoy-injector")
    assert "batch" in context.excluded_namespaces
    assert not webhook_safety.selects(
        hook["namespaceSelector"],
        webhook_safety.namespace_labels("batch", {**webhook_safety.OPTED_IN, "team": "payments"}),
    )


def expect_sidecar_and_policy(objs: list[Object]) -> None:
    context = settings.context_from_config(config(objs), own_namespace="envoy-injector")
    assert context.defaults.image == "registry.example/envoy:v1.40.0"
    assert context.defaults.proxy_port == 15001
    assert context.defaults.native is True
    assert context.policy.allowed_overrides == frozenset({"inject", "cpu-limit"})
    assert context.policy.max_cpu == "4"


def expect_cert_settings(objs: list[Object]) -> None:
    cronjob = one(objs, "CronJob")
    assert cronjob["spec"]["schedule"] == "5 4 * * 1"
    assert cronjob["spec"]["timeZone"] == "Europe/Berlin"
    assert cronjob["spec"]["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] == 600
    assert one(objs, "Job")["spec"]["ttlSecondsAfterFinished"] == 60
    for flags in cert_args(objs):
        # The job's own duration parser reads what the chart passes.
        assert job.parse_duration(flags["--ca-ttl"]).days == 730
        assert job.parse_duration(flags["--cert-ttl"]).days == 90
        assert job.parse_duration(flags["--renew-before"]).days == 30


def expect_nothing_more(objs: list[Object]) -> None:
    assert objs


@dataclass(frozen=True)
class ValueSet:
    name: str
    values: Object
    expect: Callable[[list[Object]], None]
    namespace: str = chart.NAMESPACE
    opted_in: dict[str, str] | None = None  # labels of a namespace that opted in


VALUE_SETS: Final = [
    ValueSet("defaults", {}, expect_nothing_more),
    ValueSet(
        "digest-private-registry",
        {
            "image": {
                "repository": "registry.example/envoy-injector",
                "tag": "",
                "digest": DIGEST,
                "pullPolicy": "Always",
            },
            "imagePullSecrets": [{"name": "regcred"}],
        },
        expect_digest,
    ),
    ValueSet("replicas-3", {"webhook": {"replicas": 3}}, expect_three_replicas),
    ValueSet("replicas-1", {"webhook": {"replicas": 1}}, expect_one_replica_and_no_budget),
    ValueSet(
        "ignore-policy",
        {"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 3}},
        expect_ignore,
    ),
    ValueSet("controller-off", {"controller": {"enabled": False}}, expect_no_controller),
    ValueSet(
        "controller-tuned-and-configmap-renamed",
        {
            "controller": {
                "replicas": 1,
                "tolerations": [{"key": "infra", "operator": "Exists"}],
            },
            "sidecar": {"configMap": "mesh-envoy"},
        },
        expect_controller_tuned,
    ),
    ValueSet("network-policy-off", {"networkPolicy": {"enabled": False}}, expect_no_network_policy),
    ValueSet(
        "network-policy-api-server-cidr",
        {"networkPolicy": {"apiServer": {"ports": [6443], "cidrs": ["10.0.0.1/32"]}}},
        expect_api_server_cidr,
    ),
    ValueSet(
        "scheduling-and-resources",
        {
            "webhook": {
                "nodeSelector": {"node-role.example/infra": "true"},
                "tolerations": [{"key": "infra", "operator": "Exists"}],
                "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}},
            },
            "certs": {"nodeSelector": {"node-role.example/infra": "true"}},
        },
        expect_scheduling,
    ),
    ValueSet(
        "extra-selectors-and-excluded-namespaces",
        {
            "webhook": {
                "excludedNamespaces": ["batch"],
                "namespaceSelector": {
                    "matchLabels": {"team": "payments"},
                    "matchExpressions": [
                        {"key": "tier", "operator": "NotIn", "values": ["legacy"]}
                    ],
                },
                "objectSelector": {
                    "matchExpressions": [
                        {"key": "sidecar.example/skip", "operator": "DoesNotExist"}
                    ]
                },
            }
        },
        expect_selectors,
        opted_in={**webhook_safety.OPTED_IN, "team": "payments"},
    ),
    ValueSet(
        "sidecar-defaults-and-policy",
        {
            "sidecar": {
                "image": "registry.example/envoy:v1.40.0",
                "proxyPort": 15001,
                "nativeSidecar": True,
            },
            "policy": {"allowedOverrides": ["inject", "cpu-limit"], "maxCpu": "4"},
        },
        expect_sidecar_and_policy,
    ),
    ValueSet(
        "cert-schedule-and-lifetimes",
        {
            "certs": {
                "schedule": "5 4 * * 1",
                "timeZone": "Europe/Berlin",
                "caTTL": "730d",
                "certTTL": "90d",
                "renewBefore": "30d",
                "jobTTLSecondsAfterFinished": 60,
                "cronJobTTLSecondsAfterFinished": 600,
            }
        },
        expect_cert_settings,
    ),
    ValueSet("other-release-namespace", {}, expect_nothing_more, namespace="mesh-system"),
]
IDS: Final = [v.name for v in VALUE_SETS]


def rendered(value_set: ValueSet) -> list[Object]:
    return chart.template(value_set.values, namespace=value_set.namespace)


@pytest.fixture(scope="module")
def certs_usage() -> str:
    """``envoy-injector certs --help``: the flags the image's cert command knows."""
    result = subprocess.run(
        [documents.tool("envoy-injector"), "certs", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_values_land_where_they_should(value_set: ValueSet) -> None:
    value_set.expect(rendered(value_set))


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_every_object_validates_strictly_against_the_kubernetes_schema(
    value_set: ValueSet,
) -> None:
    for obj in rendered(value_set):
        k8s.validate_core(obj)


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_webhook_configuration_passes_the_safety_checks_of_the_kustomize_install(
    value_set: ValueSet,
) -> None:
    configuration = one(rendered(value_set), "MutatingWebhookConfiguration")
    found = webhook_safety.violations(
        configuration, own_namespace=value_set.namespace, opted_in=value_set.opted_in
    )
    assert found == []


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_every_pod_meets_the_restricted_standard(value_set: ValueSet) -> None:
    for spec in pod_specs(rendered(value_set)):
        assert documents.restricted_violations(spec) == []


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_the_server_accepts_the_rendered_config(value_set: ValueSet) -> None:
    objs = rendered(value_set)
    context = settings.context_from_config(config(objs), own_namespace=value_set.namespace)
    assert {"kube-system", "kube-public", "kube-node-lease"} <= context.excluded_namespaces


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_the_cert_command_knows_every_rendered_flag(value_set: ValueSet, certs_usage: str) -> None:
    for flags in cert_args(rendered(value_set)):
        assert flags["--namespace"] == value_set.namespace
        for flag in flags:
            assert f"{flag} " in certs_usage, f"envoy-injector certs does not know {flag}"


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_rendered_output_passes_yamllint(value_set: ValueSet, tmp_path: Path) -> None:
    output = tmp_path / "rendered.yaml"
    output.write_text(chart.rendered_text(value_set.values, namespace=value_set.namespace))
    assert yamllint(output) == []


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=IDS)
def test_helm_lint_strict_passes(value_set: ValueSet, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(value_set.values))
    result = chart.helm(
        "lint", "--strict", str(chart.CHART), "-f", str(values), "--namespace", value_set.namespace
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
