"""Every file of the ingress and gateway presets parses and matches its schema.

- Core objects (Deployment, Service, ...) pass ``kubernetes-validate`` in strict mode.
- Custom resources (Contour, Istio, Gateway API, Envoy Gateway) pass the published CRD
  schemas vendored in ``tests/data/crds`` with unknown fields refused, as the API server
  prunes them.
- Kustomizations build with the real ``kubectl kustomize`` (the pinned kubectl of
  tests/support/tools.py), every file they name exists, and the built objects validate
  after the namespace and label transformers ran.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.presets.paths import GATEWAY, INGRESS, PRESET_ROOTS, relative
from tests.support.k8s import (
    CRD_DIR,
    ManifestError,
    crd_files,
    is_custom_resource,
    is_dns_subdomain,
    load_yaml_documents,
    validate_against_crd,
    validate_core,
)
from tests.support.kustomization import KUSTOMIZATION, build, patch_files, resource_files

YAML_FILES = sorted(path for root in PRESET_ROOTS for path in root.rglob("*.yaml"))
KUSTOMIZE_DIRS = sorted(path.parent for path in YAML_FILES if path.name == KUSTOMIZATION)
PATCH_FILES = sorted({path for d in KUSTOMIZE_DIRS for path in patch_files(d)})
OBJECT_FILES = [
    path for path in YAML_FILES if path.name != KUSTOMIZATION and path not in PATCH_FILES
]
# Alternatives a README tells the reader to apply by hand instead of a kustomization.
STANDALONE = {INGRESS / "contour" / "ingress.yaml"}


def _validate(obj: dict[str, Any], crds: list[Path]) -> str:
    """Validate one object with the right validator; return which one was used."""
    if is_custom_resource(obj, crds):
        validate_against_crd(obj, crds)
        return "crd"
    validate_core(obj)
    return "core"


def _identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    metadata = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion")),
        str(obj.get("kind")),
        str(metadata.get("namespace", "")),
        str(metadata.get("name")),
    )


def test_the_vendored_crds_are_all_present(crds: list[Path]) -> None:
    assert CRD_DIR.is_dir()
    assert {path.name for path in crds} == {
        "contour.yaml",
        "envoy-gateway.yaml",
        "gateway-api-standard.yaml",
        "istio.yaml",
    }


@pytest.mark.parametrize("path", YAML_FILES, ids=relative)
def test_yaml_file_parses_into_kubernetes_style_objects(path: Path) -> None:
    documents = load_yaml_documents(path)
    assert documents, "empty file"
    for document in documents:
        assert {"apiVersion", "kind"} <= set(document), document
        if document["kind"] != "Kustomization":
            assert is_dns_subdomain(document["metadata"]["name"])


@pytest.mark.parametrize("path", OBJECT_FILES, ids=relative)
def test_objects_validate_against_kubernetes_or_their_crd(path: Path, crds: list[Path]) -> None:
    for obj in load_yaml_documents(path):
        _validate(obj, crds)


@pytest.mark.parametrize("directory", KUSTOMIZE_DIRS, ids=relative)
def test_kustomization_builds_and_its_output_validates(directory: Path, crds: list[Path]) -> None:
    built = build(directory)
    assert built, "the kustomization builds nothing"
    identities = [_identity(obj) for obj in built]
    assert len(identities) == len(set(identities)), "an object is defined twice"
    for obj in built:
        _validate(obj, crds)


def test_every_manifest_is_in_a_kustomization_or_a_documented_alternative() -> None:
    included = {path for d in KUSTOMIZE_DIRS for path in resource_files(d) + patch_files(d)}
    orphans = [relative(path) for path in OBJECT_FILES if path not in included | STANDALONE]
    assert orphans == []
    for path in STANDALONE:
        readme = (path.parents[1] / "README.md").read_text()
        assert str(path.relative_to(path.parents[1])) in readme


def _custom_resources() -> list[tuple[Path, int]]:
    files = crd_files()
    return [
        (path, index)
        for path in OBJECT_FILES
        for index, obj in enumerate(load_yaml_documents(path))
        if is_custom_resource(obj, files)
    ]


CUSTOM_RESOURCES = _custom_resources()


def test_presets_include_each_kind_of_custom_resource() -> None:
    kinds = {load_yaml_documents(path)[index]["kind"] for path, index in CUSTOM_RESOURCES}
    assert kinds >= {
        "HTTPProxy",
        "Gateway",
        "VirtualService",
        "EnvoyFilter",
        "HTTPRoute",
        "SecurityPolicy",
        "BackendTrafficPolicy",
    }


@pytest.mark.parametrize(
    ("path", "index"),
    CUSTOM_RESOURCES,
    ids=[f"{relative(path)}#{index}" for path, index in CUSTOM_RESOURCES],
)
def test_unknown_field_in_a_custom_resource_is_refused(
    path: Path, index: int, crds: list[Path]
) -> None:
    obj = copy.deepcopy(load_yaml_documents(path)[index])
    validate_against_crd(obj, crds)
    obj["spec"]["notAFieldOfThisKind"] = True
    with pytest.raises(ManifestError, match="notAFieldOfThisKind"):
        validate_against_crd(obj, crds)


def test_virtualservice_cannot_carry_a_rate_limit(crds: list[Path]) -> None:
    (service,) = load_yaml_documents(GATEWAY / "istio" / "virtualservice.yaml")
    for route in service["spec"]["http"]:
        assert "rateLimit" not in route
    limited = copy.deepcopy(service)
    limited["spec"]["http"][0]["rateLimit"] = {"requests": 100, "unit": "MINUTE"}
    with pytest.raises(ManifestError, match="rateLimit"):
        validate_against_crd(limited, crds)


def test_kubernetes_validate_is_strict_about_unknown_core_fields() -> None:
    (deployment,) = load_yaml_documents(INGRESS / "envoy" / "deployment.yaml")
    validate_core(deployment)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(ManifestError, match="securityContex"):
        validate_core(broken)
