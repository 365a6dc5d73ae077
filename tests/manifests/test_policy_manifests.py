"""manifests/policy is what `envoy-injector policy` renders from the shipped settings, and it
builds with the real kustomize into exactly those objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, MANIFESTS
from tests.support import kustomization
from webhook import cli

POLICY = MANIFESTS / "policy"


def shipped_config(tmp_path: Path) -> Path:
    """The config.yaml of the shipped ConfigMap, as the webhook reads it."""
    (configmap,) = documents.find(documents.objects(INJECTOR), "ConfigMap", "envoy-injector-config")
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"], encoding="utf-8")
    return path


def test_the_checked_in_policies_are_what_the_cli_renders_from_the_shipped_settings(
    tmp_path: Path,
) -> None:
    assert cli.main(["policy", "--config", str(shipped_config(tmp_path)), "-o", str(tmp_path)]) == 0
    rendered = (tmp_path / cli.POLICY_FILE).read_text(encoding="utf-8")
    checked_in = (POLICY / cli.POLICY_FILE).read_text(encoding="utf-8")
    assert rendered == checked_in, (
        "manifests/policy is out of date; regenerate it with: envoy-injector policy --config "
        "<the config.yaml of manifests/injector/configmap.yaml> -o manifests/policy"
    )


def test_stdout_and_the_output_directory_get_the_same_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = shipped_config(tmp_path)
    assert cli.main(["policy", "--config", str(config)]) == 0
    assert capsys.readouterr().out == (POLICY / cli.POLICY_FILE).read_text(encoding="utf-8")


WEBHOOK_COMPONENTS = {"webhook", "certs"}


def test_the_policy_kustomization_builds_into_the_rendered_policies_and_the_controller() -> None:
    """The rendered policies, plus every object of the injector install but the webhook's and its
    certificate job's: the namespace, the settings, the controller with its RBAC and fence."""
    built = kustomization.build(POLICY)
    rendered = [m.obj for m in documents.objects(POLICY)]
    injector = kustomization.build(INJECTOR)
    kept = [obj for obj in injector if component_of(obj) not in WEBHOOK_COMPONENTS]
    assert sorted(map(yaml.safe_dump, built)) == sorted(map(yaml.safe_dump, rendered + kept))
    assert sorted(obj["kind"] for obj in rendered) == sorted(
        [
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    )
    # Cluster-scoped: kustomize must not have given them a namespace.
    policies = [obj for obj in built if component_of(obj) == "policy"]
    assert len(policies) == len(rendered)
    assert all("namespace" not in obj["metadata"] for obj in policies)
    # What injected Pods still need without the webhook.
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in built}
    assert {
        ("Namespace", "envoy-injector"),
        ("ConfigMap", "envoy-injector-config"),
        ("Deployment", "envoy-injector-controller"),
        ("ClusterRole", "envoy-injector-controller"),
        ("ValidatingAdmissionPolicy", "envoy-injector-controller-configmaps"),
    } <= names


def component_of(obj: documents.Object) -> str | None:
    labels: dict[str, str] = obj["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component")


def test_no_webhook_deployment_service_or_certificate_job_in_the_policy_install() -> None:
    built = kustomization.build(POLICY)
    kinds = {obj["kind"] for obj in built}
    assert not kinds & {"MutatingWebhookConfiguration", "Service", "Job", "CronJob", "Secret"}
    assert not [obj for obj in built if component_of(obj) in WEBHOOK_COMPONENTS]
    deployments = [o for o in built if o["kind"] == "Deployment"]
    assert [d["metadata"]["name"] for d in deployments] == ["envoy-injector-controller"]
    assert all(" serve" not in yaml.safe_dump(d) for d in deployments)


def test_every_injector_object_says_which_part_it_belongs_to() -> None:
    """The policy install drops the webhook by these labels, so none may be missing."""
    for obj in kustomization.build(INJECTOR):
        assert component_of(obj) in {"webhook", "certs", "controller", "config", None}, obj
        if obj["kind"] != "Namespace":
            assert component_of(obj) is not None, f"{obj['kind']}/{obj['metadata']['name']}"
