"""check's pure diagnosis: a snapshot built from the shipped manifests and Pods the webhook's own
path injected -> verdicts and findings."""

from __future__ import annotations

import base64
import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from certs import issue
from tests.manifests import documents
from tests.manifests.documents import INJECTOR
from tests.support.pods import make_pod
from webhook import health, limits, mutate, patch, settings, workloads
from webhook.diagnosis import Report, as_json, diagnose
from webhook.health import Severity
from webhook.mutate import plan_template
from webhook.spec import VERSION
from webhook.verdicts import Snapshot, wanted_config_maps

NOW = datetime(2030, 1, 1, tzinfo=UTC)
NS = "envoy-injector"
OBJECTS = documents.objects(INJECTOR)
CONFIG = documents.one(OBJECTS, "ConfigMap", "envoy-injector-config")["data"]["config.yaml"]
CTX = settings.context_from_config(CONFIG, own_namespace=NS)
NAMES = issue.service_dns_names("envoy-injector", NS)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def installed(
    *, ca_bundle: bytes | None = None, ttl: timedelta = timedelta(days=365)
) -> health.Installation:
    """The shipped objects, a certificate the cert job would issue, and a running Deployment."""
    ca = issue.new_ca(now=NOW - timedelta(days=1))
    leaf = issue.new_serving_cert(ca, NAMES, now=NOW - timedelta(days=1), ttl=ttl)
    config = copy.deepcopy(documents.one(OBJECTS, "MutatingWebhookConfiguration", "envoy-injector"))
    for webhook in config["webhooks"]:
        webhook["clientConfig"]["caBundle"] = _b64(ca_bundle or ca.cert_pem)
    deployment = copy.deepcopy(documents.one(OBJECTS, "Deployment", "envoy-injector"))
    deployment["status"] = {"availableReplicas": 2}
    return health.Installation(
        namespace=NS,
        webhook_config=config,
        tls_secret={"data": {"tls.crt": _b64(leaf.cert_pem), "ca.crt": _b64(ca.cert_pem)}},
        service=documents.one(OBJECTS, "Service", "envoy-injector"),
        endpoint_slices=[{"endpoints": [{"conditions": {"ready": True}}] * 2}],
        deployment=deployment,
        config="the shipped config",
    )


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


NAMESPACES = {
    "shop": namespace("shop", **{"envoy-inject": "enabled"}),
    "plain": namespace("plain"),
}


def live_pod(
    name: str, ns: str, ctx: mutate.Context = CTX, *, called: bool = True, **kwargs: Any
) -> dict[str, Any]:
    """A Pod as the API server stores it after the webhook's path ran on it (when called)."""
    pod = make_pod(name=name, **kwargs)
    pod["metadata"]["namespace"] = ns
    if not called:
        return pod
    (template,) = workloads.templates(pod)
    return dict(patch.apply(pod, plan_template(template, ctx).ops))


def snapshot(*targets: dict[str, Any], **changes: Any) -> Snapshot:
    base = Snapshot(
        installation=installed(),
        context=CTX,
        now=NOW,
        version=VERSION,
        namespaces=NAMESPACES,
        targets=list(targets),
    )
    base = dataclasses.replace(base, **changes)
    present = {key: key[0] == "shop" for key in wanted_config_maps(base)}
    return dataclasses.replace(base, config_maps=changes.get("config_maps", present))


def by_check(report: Report, check: str) -> list[tuple[Severity, str, str]]:
    return [(f.severity, f.subject, f.message) for f in report.findings if f.check == check]


def test_a_healthy_installation_has_no_problems() -> None:
    report = diagnose(snapshot(live_pod("web", "shop")))
    assert report.problems == 0, [f for f in report.findings if f.severity is Severity.PROBLEM]
    (verdict,) = report.verdicts
    assert (verdict.called, verdict.decision, verdict.injected, verdict.outdated) == (
        True, "inject", True, False)  # fmt: skip


def test_namespaces_labelled_and_not_and_a_pod_that_opted_out() -> None:
    opted_out = live_pod("quiet", "shop", labels={"envoy-inject": "disabled"})
    report = diagnose(snapshot(live_pod("bare", "plain", called=False), opted_out))
    bare, quiet = report.verdicts
    assert not bare.called
    assert bare.not_called == ("namespace plain: envoy-inject In (enabled)",)
    assert bare.injected is False
    assert not quiet.called
    assert quiet.not_called == ("Pod labels: envoy-inject NotIn (disabled)",)
    assert (quiet.decision, quiet.reason) == ("skip", "label_disabled")
    assert report.problems == 0
    assert (Severity.OK, "Namespace shop", "its Pods are sent to the injector") in by_check(
        report, "namespace"
    )


def test_a_bad_annotation_shows_the_rejection_message() -> None:
    pod = make_pod(name="odd", annotations={"envoy-inject.io/proxy-port": "nope"})
    pod["metadata"]["namespace"] = "shop"
    report = diagnose(snapshot(pod))
    (verdict,) = report.verdicts
    assert (verdict.decision, verdict.reason) == ("reject", "invalid_annotation")
    assert "envoy-inject.io/proxy-port: 'nope' is invalid" in verdict.message
    assert report.problems == 1
    ((severity, subject, message),) = by_check(report, "decision")
    assert (severity, subject) == (Severity.PROBLEM, "Pod shop/odd")
    assert message.startswith("refused: invalid annotations: ")


def test_a_labelled_namespace_without_the_envoy_configmap_is_flagged() -> None:
    report = diagnose(snapshot(config_maps={("shop", "envoy-config"): False}))
    assert by_check(report, "envoy-config") == [
        (Severity.PROBLEM, "Namespace shop", "the Envoy ConfigMap shop/envoy-config it mounts is "
         "missing: injected Pods cannot start"),
    ]  # fmt: skip
    assert report.problems == 1


def test_pods_injected_under_an_older_image_name_their_deployment_and_the_restart_line() -> None:
    old = dataclasses.replace(
        CTX, defaults=dataclasses.replace(CTX.defaults, image="envoyproxy/envoy:v1.39.0")
    )
    pods = []
    for name in ("checkout-5d9c7-a", "checkout-5d9c7-b"):
        pod = live_pod(name, "shop", old)
        pod["metadata"]["ownerReferences"] = [
            {"kind": "ReplicaSet", "name": "checkout-5d9c7", "controller": True}
        ]
        pods.append(pod)
    rs = {"metadata": {"ownerReferences": [
        {"kind": "Deployment", "name": "checkout", "controller": True}]}}  # fmt: skip
    report = diagnose(snapshot(*pods, owners={("ReplicaSet", "shop", "checkout-5d9c7"): rs}))
    (group,) = report.outdated
    assert group.workload == "Deployment/checkout"
    assert group.pods == ("checkout-5d9c7-a", "checkout-5d9c7-b")
    assert group.images == ("envoyproxy/envoy:v1.39.0",)
    assert group.fix == "kubectl -n shop rollout restart deployment/checkout"
    assert report.problems == 0  # a warning: the Pods work, they run an older sidecar


def test_a_ca_bundle_that_does_not_verify_the_serving_certificate_is_a_problem() -> None:
    other = issue.new_ca(now=NOW)
    report = diagnose(snapshot(installation=installed(ca_bundle=other.cert_pem)))
    ((severity, _, message),) = by_check(report, "ca-bundle")
    assert severity is Severity.PROBLEM
    assert message.startswith(
        "caBundle does not verify the serving certificate for envoy-injector.envoy-injector.svc"
    )


@pytest.mark.parametrize(("days", "severity"), [(10, Severity.WARNING), (60, Severity.OK)])
def test_the_certificate_expiry_warns_under_30_days(days: int, severity: Severity) -> None:
    report = diagnose(snapshot(installation=installed(ttl=timedelta(days=days + 1))))
    ((found, _, message),) = by_check(report, "certificate-expiry")
    assert found is severity
    assert f"({days} days)" in message


def test_the_json_shape_is_stable() -> None:
    report = diagnose(snapshot(live_pod("web", "shop")))
    shape = as_json(report)
    assert list(shape) == ["status", "problems", "findings", "targets", "outdated"]
    assert set(shape["findings"][0]) == {"severity", "check", "subject", "message", "fix"}
    assert set(shape["targets"][0]) == {
        "kind", "namespace", "name", "called", "not_called", "decision", "reason", "message",
        "warnings", "config_map", "injected", "image", "outdated", "owner"}  # fmt: skip
    assert yaml.safe_load(yaml.safe_dump(shape)) == shape  # plain JSON types only


def test_the_shipped_selectors_are_the_ones_check_compares_with() -> None:
    (webhook,) = documents.one(OBJECTS, "MutatingWebhookConfiguration", "envoy-injector")[
        "webhooks"
    ]
    assert (webhook["namespaceSelector"], webhook["objectSelector"]) == health.shipped_selectors(NS)


@pytest.mark.parametrize(
    ("wanted", "available", "severity"),
    [
        (2, 2, Severity.OK),
        (2, 1, Severity.WARNING),
        (2, 0, Severity.PROBLEM),
        (0, 0, Severity.PROBLEM),
    ],
)
def test_the_webhook_deployment_needs_an_available_replica(
    wanted: int, available: int, severity: Severity
) -> None:
    deployment = copy.deepcopy(documents.one(OBJECTS, "Deployment", "envoy-injector"))
    deployment["spec"]["replicas"] = wanted
    deployment["status"] = {"availableReplicas": available}
    inst = dataclasses.replace(installed(), deployment=deployment)
    ((found, _, message),) = by_check(diagnose(snapshot(installation=inst)), "deployment")
    assert (found, message) == (severity, f"{available}/{wanted} replicas available")


def test_a_missing_installation_is_reported_object_by_object() -> None:
    report = diagnose(snapshot(installation=health.Installation(namespace=NS, config_found=False)))
    problems = {(f.check, f.subject) for f in report.findings if f.severity is Severity.PROBLEM}
    assert problems == {
        ("config", "ConfigMap envoy-injector/envoy-injector-config"),
        ("webhook-configuration", "MutatingWebhookConfiguration envoy-injector"),
        ("serving-certificate", "Secret envoy-injector/envoy-injector-tls"),
        ("deployment", "Deployment envoy-injector/envoy-injector"),
        ("service", "Service envoy-injector/envoy-injector"),
    }


LIMIT_RANGE = {
    "metadata": {"name": "small", "namespace": "shop"},
    "spec": {"limits": [{"type": "Container", "max": {"cpu": "200m"}}]},
}


def test_the_verdict_fits_the_sidecar_to_the_namespace_limit_range_as_the_webhook_does() -> None:
    pod = make_pod(name="web")
    pod["metadata"]["namespace"] = "shop"
    small = {"shop": limits.Namespace(limit_ranges=[LIMIT_RANGE])}
    (fitted,) = diagnose(snapshot(pod, limits=small)).verdicts
    assert fitted.decision == "inject"
    assert any("small" in w for w in fitted.warnings), fitted.warnings
    pod["metadata"]["annotations"] = {"envoy-inject.io/cpu-limit": "1"}
    (refused,) = diagnose(snapshot(pod, limits=small)).verdicts
    assert (refused.decision, refused.reason) == ("reject", "resources_do_not_fit")
    assert "envoy-inject.io/cpu-limit" in refused.message
