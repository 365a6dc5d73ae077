"""An image archive from a root filesystem tree, written without a container engine.

One uncompressed layer, packed with `tarfile`, in the layout `docker save` writes since Docker 25:
an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`) that also carries Docker's
`manifest.json`. So `ctr images import`, `docker load`, `podman load` and `skopeo` all read it.

The archive is reproducible: entries are sorted, owners are numeric (no names looked up on the
host), and every time is clamped to SOURCE_DATE_EPOCH. `/dev` nodes, `/proc` and `/sys` contents
are left out, because a runtime provides them and a device node in a layer is refused by rootless
tools.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
SKIPPED_CONTENTS: Final = ("dev", "proc", "sys")


@dataclass(frozen=True)
class ImageConfig:
    """What a runtime reads from an image: the process to start and how."""

    name: str  # as users write it, e.g. "envoy-injector:0.1.0"
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    user: str = ""
    workdir: str = "/"
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    ports: tuple[int, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def full_name(name: str) -> str:
    """The name containerd stores: Docker Hub's host and `library/` made explicit."""
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def config_document(image: ImageConfig, diff_id: str, epoch: int) -> dict[str, object]:
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    config: dict[str, object] = {
        "Entrypoint": list(image.entrypoint),
        "Cmd": list(image.cmd) or None,
        "User": image.user,
        "WorkingDir": image.workdir,
        "Env": list(image.env),
        "Labels": dict(image.labels) or None,
    }
    if image.ports:
        config["ExposedPorts"] = {f"{port}/tcp": {} for port in image.ports}
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {key: value for key, value in config.items() if value is not None},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "envoy-injector scripts/image"}],
    }


def tree_entries(root: Path) -> Iterator[Path]:
    """Every path under root, sorted, depth first; contents of /dev, /proc and /sys left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        relative = here.relative_to(root)
        if relative.parts and relative.parts[0] in SKIPPED_CONTENTS:
            dirnames[:] = []
            continue
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = here / name
            yield path  # os.walk does not follow symlinked directories: they stay links


def write_layer(root: Path, out: io.RawIOBase, epoch: int) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as layer:
        for path in tree_entries(root):
            arcname = str(path.relative_to(root))
            info = layer.gettarinfo(str(path), arcname)
            if info.ischr() or info.isblk() or info.isfifo():
                continue
            if path.is_socket():
                continue
            info.mtime = min(int(info.mtime), epoch)
            info.uname = info.gname = ""
            info.pax_headers = {}
            if info.isreg():
                with path.open("rb") as data:
                    layer.addfile(info, data)
            else:
                layer.addfile(info)


class _Digesting(io.RawIOBase):
    """A writable file that hashes and counts what passes through it."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        self.sha.update(chunk)
        self.size += len(chunk)
        self.target.write(chunk)
        return len(chunk)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = epoch
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _canonical(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def write_archive(root: Path, image: ImageConfig, out: Path, epoch: int) -> str:
    """Packs root as a one-layer image named image.name into out; returns the manifest digest."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        layer_path = Path(scratch) / "layer.tar"
        with layer_path.open("wb") as raw:
            digesting = _Digesting(raw)
            write_layer(root, digesting, epoch)
        layer_digest = "sha256:" + digesting.sha.hexdigest()
        config = _canonical(config_document(image, layer_digest, epoch))
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = _canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": layer_digest, "size": digesting.size}
                ],
            }
        )
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        tag = image.name.rpartition(":")[2]
        index = _canonical(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "annotations": {
                            "io.containerd.image.name": full_name(image.name),
                            "org.opencontainers.image.ref.name": tag,
                        },
                    }
                ],
            }
        )
        docker_manifest = _canonical(
            [
                {
                    "Config": blob(config_digest),
                    "RepoTags": [image.name],
                    "Layers": [blob(layer_digest)],
                }
            ]
        )
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
            for directory in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(directory)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = epoch
                archive.addfile(info)
            info = archive.gettarinfo(str(layer_path), blob(layer_digest))
            info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
            info.mode = 0o644
            with layer_path.open("rb") as data:
                archive.addfile(info, data)
            _add_bytes(archive, blob(config_digest), config, epoch)
            _add_bytes(archive, blob(manifest_digest), manifest, epoch)
            _add_bytes(archive, "index.json", index, epoch)
            _add_bytes(archive, "manifest.json", docker_manifest, epoch)
            _add_bytes(archive, "oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}), epoch)
        partial.replace(out)
    return manifest_digest


def blob(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def read_config(archive: Path) -> dict[str, object]:
    """The image configuration stored in an archive written by write_archive (or docker save)."""
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        entries: Sequence[dict[str, object]] = json.load(manifest_file)
        config_file = tar.extractfile(str(entries[0]["Config"]))
        assert config_file is not None
        document: dict[str, object] = json.load(config_file)
        return document
