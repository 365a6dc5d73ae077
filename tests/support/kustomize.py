"""Build the project's kustomizations: with ``kubectl kustomize`` when it is installed,
otherwise with a small structural builder that covers what the manifests use (CI's fresh
machine has no kubectl).

The structural builder (:func:`structural_build`) understands ``resources`` (files and
directories holding a kustomization), ``namespace``, ``labels`` (metadata labels only),
``images`` (name/tag rules on the containers of pod templates) and ``patches`` given by
``path`` (strategic merge: maps merged key by key, lists of named maps merged by ``name``).
Any other key is refused, so a kustomization that grows past it fails loudly instead of being
built wrongly. When kubectl is present the tests compare both builders, which keeps the
fallback honest.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.k8s import load_yaml_documents

__all__ = [
    "KUSTOMIZATION",
    "KustomizeError",
    "build",
    "kubectl_build",
    "patch_files",
    "read_kustomization",
    "resource_files",
    "retag",
    "structural_build",
]

KUSTOMIZATION = "kustomization.yaml"
_KNOWN_KEYS = {"apiVersion", "kind", "namespace", "labels", "resources", "patches", "images"}
# Kinds the namespace transformer leaves alone (the cluster-scoped ones the manifests use).
_CLUSTER_SCOPED = {
    "Namespace",
    "GatewayClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "PriorityClass",
}


class KustomizeError(Exception):
    """A kustomization refers to something missing or uses an unsupported feature."""


def read_kustomization(directory: Path) -> dict[str, Any]:
    """The parsed kustomization.yaml of ``directory``, checked for supported keys."""
    path = directory / KUSTOMIZATION
    if not path.is_file():
        raise KustomizeError(f"{directory} has no {KUSTOMIZATION}")
    documents = load_yaml_documents(path)
    if len(documents) != 1:
        raise KustomizeError(f"{path} must hold exactly one document")
    kustomization = documents[0]
    unknown = set(kustomization) - _KNOWN_KEYS
    if unknown:
        raise KustomizeError(f"{path}: unsupported keys {sorted(unknown)}")
    return kustomization


def _entries(kustomization: dict[str, Any], key: str, directory: Path) -> list[Any]:
    value = kustomization.get(key, [])
    if not isinstance(value, list):
        raise KustomizeError(f"{directory / KUSTOMIZATION}: {key} must be a list")
    return value


def patch_files(directory: Path) -> list[Path]:
    """The patch files a kustomization names (they are partial objects, not resources)."""
    kustomization = read_kustomization(directory)
    paths: list[Path] = []
    for entry in _entries(kustomization, "patches", directory):
        if not isinstance(entry, dict) or set(entry) != {"path"}:
            raise KustomizeError(f"{directory}: only `patches: [{{path: ...}}]` is supported")
        path = (directory / str(entry["path"])).resolve()
        if not path.is_file():
            raise KustomizeError(f"{directory}: patch {entry['path']} does not exist")
        paths.append(path)
    return paths


def resource_files(directory: Path) -> list[Path]:
    """Every YAML file a kustomization pulls in, following directory resources."""
    kustomization = read_kustomization(directory)
    files: list[Path] = []
    for entry in _entries(kustomization, "resources", directory):
        target = (directory / str(entry)).resolve()
        if target.is_dir():
            files += resource_files(target)
        elif target.is_file():
            files.append(target)
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
    return files


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        named = all(isinstance(item, dict) and "name" in item for item in base + patch)
        if not named:
            return copy.deepcopy(patch)
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(base) if old["name"] == item["name"]), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = _merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def retag(image: str, rules: list[dict[str, str]]) -> str:
    """Apply kustomize ``images:`` rules to one image reference (tags only, no digests)."""
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    for rule in rules:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"
    return image


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    return (template.get("spec") or {}) if isinstance(template, dict) else None


def _identity(obj: dict[str, Any]) -> tuple[str, str]:
    return str(obj.get("kind")), str((obj.get("metadata") or {}).get("name"))


def structural_build(directory: Path) -> list[dict[str, Any]]:
    """Build ``directory`` without kubectl (see the module docstring for the subset)."""
    kustomization = read_kustomization(directory)
    objects: list[dict[str, Any]] = []
    for entry in _entries(kustomization, "resources", directory):
        target = (directory / str(entry)).resolve()
        if target.is_dir():
            objects += structural_build(target)
        elif target.is_file():
            objects += load_yaml_documents(target)
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
    for path in patch_files(directory):
        for patch in load_yaml_documents(path):
            matches = [i for i, obj in enumerate(objects) if _identity(obj) == _identity(patch)]
            if len(matches) != 1:
                raise KustomizeError(f"{path}: patch target {_identity(patch)} not found once")
            objects[matches[0]] = _merge(objects[matches[0]], patch)
    namespace = kustomization.get("namespace")
    for label_set in _entries(kustomization, "labels", directory):
        if not isinstance(label_set, dict) or set(label_set) != {"pairs"}:
            raise KustomizeError(f"{directory}: only `labels: [{{pairs: ...}}]` is supported")
        pairs = label_set["pairs"]
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if namespace is not None:
        for obj in objects:
            if obj.get("kind") not in _CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace
    rules = _entries(kustomization, "images", directory)
    for obj in objects if rules else []:
        spec = _pod_spec(obj)
        for key in ("containers", "initContainers"):
            for container in (spec or {}).get(key) or []:
                container["image"] = retag(container["image"], rules)
    return objects


def kubectl_build(directory: Path, kubectl: str) -> list[dict[str, Any]]:
    """``kubectl kustomize directory``, parsed."""
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if isinstance(doc, dict)]


def build(directory: Path) -> list[dict[str, Any]]:
    """The built objects: kubectl kustomize if installed, else :func:`structural_build`."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return structural_build(directory)
    return kubectl_build(directory, kubectl)
