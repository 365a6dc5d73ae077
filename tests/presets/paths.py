"""Where the preset manifests live, which of them run Envoy, and short test ids."""

from __future__ import annotations

from pathlib import Path

from tests.support.k8s import load_yaml_documents
from tests.support.kustomization import KUSTOMIZATION, resource_files

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
INGRESS = MANIFESTS / "ingress"
GATEWAY = MANIFESTS / "gateway"
PRESET_ROOTS = (INGRESS, GATEWAY)


def relative(path: Path) -> str:
    """A path as a short, stable test id."""
    return str(path.relative_to(REPO))


ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"


def runs_envoy(directory: Path) -> bool:
    """Whether the kustomization in ``directory`` includes a Deployment running Envoy."""
    for path in resource_files(directory):
        for obj in load_yaml_documents(path):
            if obj.get("kind") != "Deployment":
                continue
            containers = obj["spec"]["template"]["spec"]["containers"]
            if any(str(c.get("image", "")).startswith("envoyproxy/envoy:") for c in containers):
                return True
    return False


def kustomize_dirs() -> list[Path]:
    """Every directory of the presets that holds a kustomization.yaml, sorted."""
    return sorted(path.parent for root in PRESET_ROOTS for path in root.rglob(KUSTOMIZATION))


def envoy_dirs() -> list[Path]:
    """The kustomizations that run Envoy (the plain presets and their variants)."""
    return [directory for directory in kustomize_dirs() if runs_envoy(directory)]
