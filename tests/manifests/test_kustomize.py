"""The kustomizations build, and building changes nothing the files do not already say.

The build is the real one: ``kubectl kustomize DIR`` with the pinned kubectl of
tests/support/tools.py (kustomize v5.7.1 built in), never the kubectl on PATH.

Because the built objects must equal the objects in the files, every other test in this package
can check the files themselves and still be checking what ``kubectl apply -k`` sends.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, KUSTOMIZATION, MANIFESTS, SIDECAR, Object
from tests.support import kustomization

DIRECTORIES: Final = [INJECTOR, SIDECAR]
IDS: Final = [str(d.relative_to(MANIFESTS)) for d in DIRECTORIES]
NAMESPACES: Final = {INJECTOR: "envoy-injector", SIDECAR: "demo"}


def key(obj: Object) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_kustomization_lists_every_manifest_of_its_directory_and_nothing_else(
    directory: Path,
) -> None:
    listed = kustomization.read_kustomization(directory)["resources"]
    on_disk = [path.name for path in documents.resource_files(directory)]
    assert sorted(listed) == sorted(on_disk)
    assert len(listed) == len(set(listed)), "a resource is listed twice"


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_kustomization_sets_the_namespace_of_its_directory(directory: Path) -> None:
    assert kustomization.read_kustomization(directory)["namespace"] == NAMESPACES[directory]


@pytest.mark.parametrize("directory", DIRECTORIES, ids=IDS)
def test_kustomization_builds_into_exactly_the_objects_of_its_files(directory: Path) -> None:
    built = kustomization.build(directory)
    written = [m.obj for m in documents.objects(directory)]
    assert sorted(map(key, built)) == sorted(map(key, written))
    by_key = {key(obj): obj for obj in written}
    for obj in built:
        assert obj == by_key[key(obj)], f"the build changed {key(obj)}"


def test_injector_kustomization_pins_the_image_users_can_override() -> None:
    assert kustomization.read_kustomization(INJECTOR)["images"] == [
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
    built = kustomization.build(overlay)
    images = {
        item["image"]
        for obj in built
        if (spec := documents.pod_spec(obj)) is not None
        for item in spec["containers"]
    }
    assert images == {"registry.example/ei:0.1.0"}
