"""With the default values the chart renders the objects ``kubectl kustomize manifests/injector``
builds, apart from the named differences in tests/helm/chart.py (DIFFERENCES), and nothing else.

This is the guard that keeps the two installs from drifting: a new object or field in
manifests/injector fails here until the chart has it too.
"""

from __future__ import annotations

from typing import Final

import pytest

from tests.helm import chart
from tests.manifests import documents
from tests.manifests.documents import INJECTOR
from tests.support import kustomization

KUSTOMIZE: Final = kustomization.build(INJECTOR)
DEFAULTS: Final = chart.template()
CLUSTER_SCOPED: Final = {
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    *chart.POLICY_KINDS,
}


def test_default_rendering_equals_the_kustomize_build_once_the_named_differences_are_undone() -> (
    None
):
    ours, theirs = chart.normalise(DEFAULTS, KUSTOMIZE)
    assert [chart.key(o) for o in ours] == [chart.key(o) for o in theirs]
    for mine, kustomized in zip(ours, theirs, strict=True):
        assert mine == kustomized, f"{chart.key(mine)} differs from the kustomize install"


def test_no_rendered_object_is_missing_from_either_side() -> None:
    """Said separately so that a new kustomize object reads as such in the failure."""
    ours, theirs = chart.normalise(DEFAULTS, KUSTOMIZE)
    assert {chart.key(o) for o in theirs} - {chart.key(o) for o in ours} == set()
    assert {chart.key(o) for o in ours} - {chart.key(o) for o in theirs} == set()


@pytest.mark.parametrize("difference", chart.DIFFERENCES, ids=[d.name for d in chart.DIFFERENCES])
def test_every_allowed_difference_is_real(difference: chart.Difference) -> None:
    """Undoing all the other differences is not enough: an allowance that changes nothing would
    only hide a future drift, so it must go."""
    ours, _ = chart.normalise(DEFAULTS, KUSTOMIZE)
    others = [d for d in chart.DIFFERENCES if d is not difference]
    partly, _ = chart.normalise(DEFAULTS, KUSTOMIZE, differences=others)
    assert partly != ours, f"{difference.name} changes nothing"


def test_the_chart_readme_documents_every_allowed_difference() -> None:
    readme = (chart.CHART / "README.md").read_text()
    for difference in chart.DIFFERENCES:
        assert f"(`{difference.name}`)" in readme, f"README.md does not explain {difference.name}"


def test_every_object_carries_helms_standard_labels() -> None:
    for obj in DEFAULTS:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "envoy-injector-0.1.0"


def test_pod_templates_and_selectors_carry_no_helm_label() -> None:
    """Selectors are immutable: they must not change with the chart version."""
    deployments = [o for o in DEFAULTS if o["kind"] == "Deployment"]
    assert len(deployments) == 2
    for deployment in deployments:
        for labels in (
            deployment["spec"]["selector"]["matchLabels"],
            deployment["spec"]["template"]["metadata"]["labels"],
        ):
            assert not set(labels) & set(chart.HELM_LABELS)


def test_the_release_namespace_reaches_every_namespaced_object_and_reference() -> None:
    objs = chart.template(namespace="mesh-system")
    text = chart.rendered_text(namespace="mesh-system")
    assert "namespace: envoy-injector" not in text
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"] == "mesh-system", chart.key(obj)
        for subject in obj.get("subjects", []):
            assert subject["namespace"] == "mesh-system"
    (config,) = [o for o in objs if o["kind"] == "MutatingWebhookConfiguration"]
    hook = config["webhooks"][0]
    assert hook["clientConfig"]["service"]["namespace"] == "mesh-system"
    not_in = hook["namespaceSelector"]["matchExpressions"][1]["values"]
    assert "mesh-system" in not_in
    assert "envoy-injector" not in not_in
    (policy,) = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"]
    username = policy["spec"]["matchConditions"][0]["expression"]
    assert "'system:serviceaccount:mesh-system:envoy-injector-controller'" in username
    assert "'mesh-system'" in policy["spec"]["validations"][-1]["expression"]
    assert "'envoy-injector'" not in policy["spec"]["validations"][-1]["expression"]
    for obj in objs:
        spec = documents.pod_spec(obj)
        if spec is not None and obj["kind"] != "Deployment":
            args = documents.container(spec, "certs")["args"]
            assert documents.flag_values(args)["--namespace"] == "mesh-system"
