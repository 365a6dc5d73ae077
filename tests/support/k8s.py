"""Offline checks for Kubernetes manifests: YAML loading, core schemas, CRD schemas.

- :func:`load_yaml_documents` reads every non-empty document of a (multi-document) file;
- :func:`validate_core` validates a core object (Deployment, Service, ...) with
  ``kubernetes-validate`` in strict mode (unknown fields refused) against the newest
  Kubernetes version the installed package knows (never older than :data:`MIN_K8S`);
- :func:`validate_against_crd` validates a custom resource against the
  ``openAPIV3Schema`` of its CustomResourceDefinition, read from the published CRDs in
  ``tests/data/crds/`` (vendored, see its README.md). Like the API server's pruning, every schema
  node that lists ``properties`` and is not marked ``x-kubernetes-preserve-unknown-fields``
  is closed, so a field the CRD does not know is an error here instead of silently
  dropped in the cluster. CEL rules (``x-kubernetes-validations``) are not evaluated.

Both validators raise :class:`ManifestError` with the object's kind/name, the path
inside it and the reason.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from packaging.version import Version

__all__ = [
    "CRD_DIR",
    "MIN_K8S",
    "ManifestError",
    "crd_files",
    "find_crd_schema",
    "is_custom_resource",
    "is_dns_subdomain",
    "k8s_version",
    "load_yaml_documents",
    "validate_against_crd",
    "validate_core",
]

#: The published CRDs, vendored byte-for-byte with their sources in tests/data/crds/README.md.
CRD_DIR = Path(__file__).resolve().parents[1] / "data" / "crds"
#: The oldest Kubernetes version the manifests are checked against.
MIN_K8S = "1.32"

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ManifestError(Exception):
    """A manifest object does not satisfy its schema."""


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``; each must be a mapping."""
    documents: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as stream:
        for index, document in enumerate(yaml.load_all(stream, Loader=_Loader)):
            if document is None:
                continue
            if not isinstance(document, dict):
                raise ManifestError(f"{path}: document {index} is not a mapping")
            documents.append(document)
    return documents


def _describe(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{obj.get('apiVersion')}/{obj.get('kind')} {metadata.get('name', '<unnamed>')}"


def _error_path(error: jsonschema.ValidationError) -> str:
    return "." + ".".join(str(part) for part in error.absolute_path)


def k8s_version() -> str:
    """The newest Kubernetes version kubernetes-validate ships schemas for (>= MIN_K8S)."""
    newest = str(kubernetes_validate.latest_version())
    if Version(newest) < Version(MIN_K8S):
        raise ManifestError(f"kubernetes-validate knows only up to {newest}; need {MIN_K8S}+")
    return newest


def validate_core(obj: Mapping[str, Any]) -> None:
    """Strict kubernetes-validate check of a core Kubernetes object."""
    version = k8s_version()
    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise ManifestError(
            f"{_describe(obj)}: {_error_path(error)}: {error.message} (Kubernetes {version})"
        ) from error
    except kubernetes_validate.SchemaNotFoundError as error:
        raise ManifestError(f"{_describe(obj)}: no schema in Kubernetes {version}") from error


def crd_files(directory: Path = CRD_DIR) -> list[Path]:
    """The CRD files in ``directory``, sorted."""
    return sorted(directory.glob("*.yaml"))


@functools.cache
def _crd_index(files: tuple[Path, ...]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> openAPIV3Schema, for every served version."""
    index: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in files:
        for document in load_yaml_documents(path):
            if document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                key = (spec["group"], version["name"], spec["names"]["kind"])
                index[key] = version["schema"]["openAPIV3Schema"]
    return index


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def is_custom_resource(obj: Mapping[str, Any], files: Iterable[Path]) -> bool:
    """True when some CRD in ``files`` defines the object's group (whatever the version)."""
    group, _ = _group_version(str(obj.get("apiVersion", "")))
    return any(key[0] == group for key in _crd_index(tuple(files)))


def find_crd_schema(obj: Mapping[str, Any], files: Iterable[Path]) -> dict[str, Any]:
    """The openAPIV3Schema for the object's apiVersion and kind; ManifestError if none."""
    group, version = _group_version(str(obj.get("apiVersion", "")))
    schema = _crd_index(tuple(files)).get((group, version, str(obj.get("kind"))))
    if schema is None:
        raise ManifestError(f"{_describe(obj)}: no served CRD version defines it")
    return schema


_STRUCTURAL_CHILDREN = ("properties", "additionalProperties", "items")


def _closed(schema: Any) -> Any:
    """A copy of a structural schema where objects refuse fields they do not list.

    Only the structural skeleton (properties, items, additionalProperties) is closed;
    allOf/anyOf/oneOf/not branches only add constraints, as the API server reads them.
    OpenAPI's ``nullable`` becomes a JSON-schema null type.
    """
    if not isinstance(schema, dict):
        return schema
    node = {key: value for key, value in schema.items() if key != "description"}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    for key in _STRUCTURAL_CHILDREN:
        child = node.get(key)
        if key == "properties" and isinstance(child, dict):
            node[key] = {name: _closed(sub) for name, sub in child.items()}
        elif isinstance(child, dict):
            node[key] = _closed(child)
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    return node


@functools.cache
def _validator(files: tuple[Path, ...], key: tuple[str, str, str]) -> jsonschema.Draft4Validator:
    schema = _closed(copy.deepcopy(_crd_index(files)[key]))
    # Every object may carry these; metadata is checked by the API server, not the CRD.
    root = schema.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    root["metadata"] = {"type": "object"}
    return jsonschema.Draft4Validator(schema)


def validate_against_crd(obj: Mapping[str, Any], files: Iterable[Path] | None = None) -> None:
    """Validate a custom resource against its CRD (unknown fields refused)."""
    chosen = tuple(crd_files() if files is None else files)
    find_crd_schema(obj, chosen)  # clear error when the kind or version is unknown
    group, version = _group_version(str(obj["apiVersion"]))
    validator = _validator(chosen, (group, version, str(obj["kind"])))
    errors = sorted(validator.iter_errors(obj), key=lambda error: list(error.absolute_path))
    if errors:
        details = "; ".join(f"{_error_path(error)}: {error.message}" for error in errors[:5])
        raise ManifestError(f"{_describe(obj)}: {details}")


_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_dns_subdomain(name: str) -> bool:
    """Kubernetes object-name rule (RFC 1123 subdomain, at most 253 characters)."""
    return len(name) <= 253 and _NAME.match(name) is not None
