"""Every manifest parses, and every object validates against the official Kubernetes schema.

Validation is strict (unknown fields refused, as ``kubectl apply --validate=strict`` does) and
uses the newest Kubernetes version the installed ``kubernetes-validate`` knows, which must be at
least 1.32 (the release the manifests target: the preStop ``sleep`` action, CronJob
``timeZone``, native sidecars).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Final

import pytest
from packaging.version import Version

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, MANIFESTS, SIDECAR, Manifest
from tests.support import k8s

FILES: Final = [*documents.yaml_files(INJECTOR), *documents.yaml_files(SIDECAR)]
OBJECTS: Final = [*documents.objects(INJECTOR), *documents.objects(SIDECAR)]


def test_schemas_are_for_a_current_kubernetes_release() -> None:
    assert Version(k8s.k8s_version()) >= Version("1.32")


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(MANIFESTS)) for p in FILES])
def test_every_yaml_file_parses_into_mappings(path: Path) -> None:
    assert documents.load_file(path), f"{path} holds no YAML document"


@pytest.mark.parametrize("manifest", OBJECTS, ids=[m.label for m in OBJECTS])
def test_every_object_validates_strictly_against_the_kubernetes_schema(manifest: Manifest) -> None:
    k8s.validate_core(manifest.obj)


@pytest.mark.parametrize("manifest", OBJECTS, ids=[m.label for m in OBJECTS])
def test_every_object_has_a_name_and_the_namespace_of_its_kustomization(
    manifest: Manifest,
) -> None:
    expected = {INJECTOR: "envoy-injector", SIDECAR: "demo"}[manifest.path.parent]
    metadata = manifest.obj["metadata"]
    assert metadata["name"]
    cluster_scoped = {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
    }
    if manifest.kind in cluster_scoped:
        assert "namespace" not in metadata
    else:
        assert metadata.get("namespace") == expected


def test_strict_validation_refuses_an_unknown_field() -> None:
    """The validator really is strict: a misspelt field in a shipped Deployment is refused."""
    deployment = copy.deepcopy(documents.one(OBJECTS, "Deployment", "envoy-injector"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(k8s.ManifestError, match="readinesProbe"):
        k8s.validate_core(deployment)


def test_strict_validation_refuses_a_wrong_type() -> None:
    service = copy.deepcopy(documents.one(OBJECTS, "Service", "envoy-injector"))
    service["spec"]["ports"][0]["port"] = "four-four-three"
    with pytest.raises(k8s.ManifestError, match="four-four-three"):
        k8s.validate_core(service)
