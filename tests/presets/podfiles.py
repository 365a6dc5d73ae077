"""Lay out on disk the files an Envoy Pod of a preset sees, so the real binary can run
the shipped config unchanged except for where those files live.

:func:`materialize` reads the Deployment's container, and for every volume mount:

- a ConfigMap volume is written from the ConfigMap object of the same build, every
  absolute path inside its YAML files that points into another mount being rewritten to
  the corresponding test directory (the SDS resource names the Secret's directory);
- a Secret volume becomes an empty :class:`KubeletVolume` the test fills (the Secrets
  are not in the manifests: certificates are the operator's).

:class:`KubeletVolume` lays files out and updates them as the kubelet's atomic writer
does: the content lives in a versioned directory, ``..data`` is a symlink to it, each
key is a symlink ``key -> ..data/key``, and an update writes a new directory and renames
a fresh ``..data_tmp`` symlink over ``..data`` in one step. Envoy's ``watched_directory``
therefore sees exactly the event it would see in a Pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.volumes import KubeletVolume

__all__ = ["KubeletVolume", "PodFiles", "find_object", "materialize", "relocate"]


def relocate(value: Any, mounts: Mapping[str, Path]) -> Any:
    """``value`` with every string under a mount path moved to that mount's directory."""
    if isinstance(value, dict):
        return {key: relocate(item, mounts) for key, item in value.items()}
    if isinstance(value, list):
        return [relocate(item, mounts) for item in value]
    if isinstance(value, str):
        for mount_path, directory in mounts.items():
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                return str(directory) + value[len(mount_path.rstrip("/")) :]
    return value


def find_object(
    objects: list[dict[str, Any]], kind: str, name: str | None = None
) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name`` if given); AssertionError otherwise."""
    found = [
        obj
        for obj in objects
        if obj.get("kind") == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


@dataclass(frozen=True)
class PodFiles:
    """Where the Pod's mounts ended up, and the Envoy container's arguments."""

    mounts: dict[str, Path]
    volumes: dict[str, KubeletVolume]
    secret_volumes: dict[str, KubeletVolume]
    args: list[str]

    def host_path(self, pod_path: str) -> Path:
        """The test-side path of a path as the container sees it."""
        moved = relocate(pod_path, self.mounts)
        if moved == pod_path:
            raise AssertionError(f"{pod_path} is not under any volume mount")
        return Path(moved)

    def replace_file(self, path: Path, content: bytes) -> None:
        """Publish new content for one file of a mounted volume, as the kubelet would.

        ``path`` is the test-side path (the relocated config names files this way).
        """
        for mount_path, directory in self.mounts.items():
            if path.parent == directory:
                current = {
                    entry.name: entry.read_bytes()
                    for entry in directory.iterdir()
                    if not entry.name.startswith("..")
                }
                current[path.name] = content
                self.volumes[mount_path].write(current)
                return
        raise AssertionError(f"{path} is not a file of any volume")

    def config_path(self) -> Path:
        """The file passed to Envoy with --config-path (or -c)."""
        for flag in ("--config-path", "-c"):
            if flag in self.args:
                return self.host_path(self.args[self.args.index(flag) + 1])
        raise AssertionError(f"no --config-path in {self.args}")

    def load_config(self) -> dict[str, Any]:
        config = yaml.safe_load(self.config_path().read_text())
        if not isinstance(config, dict):
            raise TypeError("the Envoy config is not a mapping")
        return config


def _relocated_bytes(content: str, mounts: Mapping[str, Path]) -> bytes:
    try:
        parsed = yaml.safe_load(content)
    except yaml.YAMLError:
        return content.encode()
    moved = relocate(parsed, mounts)
    if moved == parsed:
        return content.encode()
    return yaml.safe_dump(moved, sort_keys=False).encode()


def materialize(objects: list[dict[str, Any]], root: Path, *, container: str = "envoy") -> PodFiles:
    """Write the Deployment's ConfigMap volumes under ``root``; see the module docstring."""
    deployment = find_object(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    matching = [c for c in pod["containers"] if c["name"] == container]
    if len(matching) != 1:
        raise AssertionError(f"no container {container} in the Deployment")
    pod_volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    sources: dict[str, dict[str, Any]] = {}
    for index, mount in enumerate(matching[0].get("volumeMounts", [])):
        mounts[mount["mountPath"]] = root / f"volume-{index}-{mount['name']}"
        sources[mount["mountPath"]] = pod_volumes[mount["name"]]
    volumes: dict[str, KubeletVolume] = {}
    secret_volumes: dict[str, KubeletVolume] = {}
    for mount_path, volume in sources.items():
        target = volumes[mount_path] = KubeletVolume(mounts[mount_path])
        if "configMap" in volume:
            config_map = find_object(objects, "ConfigMap", volume["configMap"]["name"])
            data = config_map.get("data", {})
            target.write({key: _relocated_bytes(text, mounts) for key, text in data.items()})
        elif "secret" in volume:
            secret_volumes[volume["secret"]["secretName"]] = target
        else:
            raise AssertionError(f"unsupported volume {volume['name']}")
    args = [str(arg) for arg in matching[0].get("command", []) + matching[0].get("args", [])]
    return PodFiles(mounts=mounts, volumes=volumes, secret_volumes=secret_volumes, args=args)
