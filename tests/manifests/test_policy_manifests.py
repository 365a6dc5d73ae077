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


def test_the_policy_kustomization_builds_into_exactly_the_rendered_objects() -> None:
    built = kustomization.build(POLICY)
    written = [m.obj for m in documents.objects(POLICY)]
    assert sorted(map(yaml.safe_dump, built)) == sorted(map(yaml.safe_dump, written))
    kinds = sorted(obj["kind"] for obj in built)
    assert kinds == sorted(
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
    assert all("namespace" not in obj["metadata"] for obj in built)


def test_no_webhook_deployment_service_or_certificate_job_in_the_policy_install() -> None:
    kinds = {obj["kind"] for obj in kustomization.build(POLICY)}
    assert not kinds & {"MutatingWebhookConfiguration", "Service", "Job", "CronJob", "Secret"}
    deployments = [o for o in kustomization.build(POLICY) if o["kind"] == "Deployment"]
    assert all("webhook" not in yaml.safe_dump(d) for d in deployments)
