"""The project's kustomizations: read what they list, and build them with the real kustomize.

:func:`build` runs ``kubectl kustomize DIR`` with the pinned kubectl of
:mod:`tests.support.tools` (kustomize v5.7.1 built in), never a re-implementation, so the tests
see exactly what ``kubectl apply -k`` sends. :func:`read_kustomization`, :func:`resource_files`
and :func:`patch_files` only read the file lists a kustomization names (to find files that no
kustomization includes, or the Envoy configs a preset ships); they build nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Final

import yaml

from tests.support import tools
from tests.support.k8s import load_yaml_documents

__all__ = [
    "KUSTOMIZATION",
    "KustomizeError",
    "build",
    "patch_files",
    "read_kustomization",
    "resource_files",
]

KUSTOMIZATION: Final = "kustomization.yaml"


class KustomizeError(Exception):
    """A kustomization refers to something missing, or kustomize refused it."""


def read_kustomization(directory: Path) -> dict[str, Any]:
    """The parsed kustomization.yaml of ``directory``."""
    path = directory / KUSTOMIZATION
    if not path.is_file():
        raise KustomizeError(f"{directory} has no {KUSTOMIZATION}")
    documents = load_yaml_documents(path)
    if len(documents) != 1:
        raise KustomizeError(f"{path} must hold exactly one document")
    return documents[0]


def _entries(directory: Path, key: str) -> list[Any]:
    value = read_kustomization(directory).get(key, [])
    if not isinstance(value, list):
        raise KustomizeError(f"{directory / KUSTOMIZATION}: {key} must be a list")
    return value


def patch_files(directory: Path) -> list[Path]:
    """The files named by ``patches: [{path: ...}]`` (partial objects, not resources)."""
    paths: list[Path] = []
    for entry in _entries(directory, "patches"):
        if isinstance(entry, dict) and "path" in entry:
            path = (directory / str(entry["path"])).resolve()
            if not path.is_file():
                raise KustomizeError(f"{directory}: patch {entry['path']} does not exist")
            paths.append(path)
    return paths


def resource_files(directory: Path) -> list[Path]:
    """Every YAML file a kustomization lists as a resource, following directory resources."""
    files: list[Path] = []
    for entry in _entries(directory, "resources"):
        target = (directory / str(entry)).resolve()
        if target.is_dir():
            files += resource_files(target)
        elif target.is_file():
            files.append(target)
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
    return files


def build(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize directory`` with the pinned kubectl, parsed."""
    result = subprocess.run(
        [str(tools.kubectl()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if isinstance(doc, dict)]
