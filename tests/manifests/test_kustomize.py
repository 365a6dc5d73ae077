"""The kustomizations build, and building changes nothing the files do not already say.

With ``kubectl`` on PATH the build is the real one (``kubectl kustomize DIR``). Without it
(CI's fresh machine has no kubectl) the test falls back to a structural build that models what
kustomize does with the only fields these kustomizations use — ``resources`` (local files),
``namespace`` and ``images`` — and refuses any other field, so the fallback can never pass a
kustomization it does not understand. Both paths then face the same assertions; nothing is
skipped.

The fallback does not rewrite the namespaces inside RoleBinding subjects or the webhook's
``clientConfig.service`` as kustomize would: the files already carry the final namespace there,
which test_rbac.py and test_webhook_configuration.py pin.

Because the built objects must equal the objects in the files, every other test in this package
can check the files themselves and still be checking what ``kubectl apply -k`` sends.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, KUSTOMIZATION, MANIFESTS, SIDECAR, Object

DIRECTORIES: Final = [INJECTOR, SIDECAR]
IDS: Final = [str(d.relative_to(MANIFESTS)) for d in DIRECTORIES]
NAMESPACES: Final = {INJECTOR: "envoy-injector", SIDECAR: "demo"}

# What the structural fallback understands; anything else in a kustomization fails it.
MODELLED_FIELDS: Final = {"apiVersion", "kind", "namespace", "resources", "images"}
CLUSTER_SCOPED: Final = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "PriorityClass",
}


def kustomization(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / KUSTOMIZATION).read_text())
    return loaded


def key(obj: Object) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def kubectl_build(kubectl: str, directory: Path) -> list[Object]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def retag(image: str, rules: list[dict[str, str]]) -> str:
    """Apply kustomize ``images:`` rules to one image reference (tags only, no digests)."""
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    for rule in rules:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"
    return image


def structural_build(directory: Path) -> list[Object]:
    """What kustomize would output, for kustomizations made of plain local resources."""
    config = kustomization(directory)
    assert set(config) <= MODELLED_FIELDS, (
        f"{directory / KUSTOMIZATION} uses {sorted(set(config) - MODELLED_FIELDS)}, which the "
        "fallback build does not model: extend tests/manifests/test_kustomize.py"
    )
    namespace = config.get("namespace")
    built: list[Object] = []
    for entry in config["resources"]:
        path = directory / entry
        assert path.is_file(), f"{directory / KUSTOMIZATION} lists {entry}, which is not a file"
        for obj in documents.load_file(path):
            if namespace and obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = namespace
            if namespace and obj["kind"] == "Namespace":
                obj["metadata"]["name"] = namespace  # kustomize renames Namespace objects too
            spec = documents.pod_spec(obj)
            for item in [] if spec is None else spec.get("containers", []):
                item["image"] = retag(item["image"], config.get("images", []))
            built.append(obj)
    return built


def build(directory: Path) -> list[Object]:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        return kubectl_build(kubectl, directory)
    return structural_build(directory)


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_kustomization_lists_every_manifest_of_its_directory_and_nothing_else(
    directory: Path,
) -> None:
    listed = kustomization(directory)["resources"]
    on_disk = [path.name for path in documents.resource_files(directory)]
    assert sorted(listed) == sorted(on_disk)
    assert len(listed) == len(set(listed)), "a resource is listed twice"


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_kustomization_sets_the_namespace_of_its_directory(directory: Path) -> None:
    assert kustomization(directory)["namespace"] == NAMESPACES[directory]


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_kustomization_builds_into_exactly_the_objects_of_its_files(directory: Path) -> None:
    built = build(directory)
    written = [m.obj for m in documents.objects(directory)]
    assert sorted(map(key, built)) == sorted(map(key, written))
    by_key = {key(obj): obj for obj in written}
    for obj in built:
        assert obj == by_key[key(obj)], f"the build changed {key(obj)}"


def test_injector_kustomization_pins_the_image_users_can_override() -> None:
    assert kustomization(INJECTOR)["images"] == [
        {"name": "envoy-injector", "newName": "envoy-injector", "newTag": "0.1.0"}
    ]


def test_an_image_override_reaches_every_injector_container(tmp_path: Path) -> None:
    """An overlay that renames the image changes the webhook and both cert jobs."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = tmp_path / "base"
    shutil.copytree(INJECTOR, base)
    (overlay / KUSTOMIZATION).write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../base"],
                "images": [{"name": "envoy-injector", "newName": "registry.example/ei"}],
            }
        )
    )
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        built = kubectl_build(kubectl, overlay)
    else:  # the fallback models one level: apply the overlay's rule to the base's output
        rules = [{"name": "envoy-injector", "newName": "registry.example/ei"}]
        built = structural_build(base)
        for obj in built:
            spec = documents.pod_spec(obj)
            for item in [] if spec is None else spec["containers"]:
                item["image"] = retag(item["image"], rules)
    images = {
        item["image"]
        for obj in built
        if (spec := documents.pod_spec(obj)) is not None
        for item in spec["containers"]
    }
    assert images == {"registry.example/ei:0.1.0"}
