"""scripts/image builds the webhook's image without an engine; the Dockerfile stays the recipe for
users with Docker. These tests check that both describe the same process (entrypoint, command,
user, working directory, ports, environment, labels), and that the packer writes an archive that
image tools read: a consistent OCI layout with Docker's manifest.json, reproducible byte for byte,
with numeric owners and without device nodes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.manifests.documents import ROOT
from tests.manifests.test_image import stages
from tests.support.cluster import images, oci

SCRIPT = ROOT / "scripts" / "image"


def final_stage() -> dict[str, str]:
    return {word: args for word, args in stages()[-1] if word != "ENV"}


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stages()[-1]:
        if word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_both_recipes_run_the_same_entrypoint_command_user_workdir_and_ports() -> None:
    final = final_stage()
    spec = images.WEBHOOK
    assert json.loads(final["ENTRYPOINT"]) == list(spec.entrypoint)
    assert json.loads(final["CMD"]) == list(spec.cmd)
    assert final["USER"] == spec.user
    assert final.get("WORKDIR", "/") == spec.workdir
    assert [int(port) for port in final["EXPOSE"].split()] == list(spec.ports)


def test_both_recipes_set_the_same_environment_and_labels() -> None:
    declared = dict(item.split("=", 1) for item in images.WEBHOOK.env)
    for key, value in dockerfile_env().items():
        if key == "PATH":
            assert value.split(":")[0] == declared["PATH"].split(":")[0] == "/opt/venv/bin"
        else:
            assert declared[key] == value
    label_args = " ".join(args for word, args in stages()[-1] if word == "LABEL")
    labels = dict(pair.split("=", 1) for pair in shlex.split(label_args))
    assert labels == dict(images.WEBHOOK.labels)


def test_the_script_creates_the_user_the_image_runs_as_and_the_dockerfile_creates() -> None:
    uid, gid = images.WEBHOOK.user.split(":")
    script = SCRIPT.read_text()
    assert re.search(rf"envoy-injector:x:{uid}:{gid}:", script)
    assert re.search(rf"envoy-injector:x:{gid}:", script)
    runs = " ".join(args for word, args in stages()[-1] if word == "RUN")
    assert f"--uid {uid}" in runs
    assert f"--gid {gid}" in runs


def test_the_script_builds_with_python_3_11_like_the_dockerfile_base() -> None:
    script = SCRIPT.read_text()
    assert "--python-version 3.11" in script
    assert "bookworm" in script
    bases = [stage[0][1] for stage in stages()]
    assert all("3.11" in base and "bookworm" in base for base in bases)


def tree(root: Path) -> Path:
    (root / "dev").mkdir(parents=True)
    os.mkfifo(root / "dev" / "fifo")
    (root / "etc").mkdir()
    (root / "etc" / "shadow").write_text("root:*:1:0:99999:7:::\n")
    os.chown(root / "etc" / "shadow", 0, 42)
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF")
    (root / "bin" / "tool").chmod(0o755)
    os.link(root / "bin" / "tool", root / "bin" / "tool-again")
    (root / "lib").symlink_to("usr/lib")
    return root


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to group 42 needs root")
def test_the_archive_is_a_consistent_oci_layout_with_a_docker_manifest(tmp_path: Path) -> None:
    root = tree(tmp_path / "tree")
    archive = tmp_path / "image.tar"
    digest = oci.write_archive(root, images.WEBHOOK, archive, epoch=1_700_000_000)
    files = members(archive)
    for name, data in files.items():
        if name.startswith("blobs/sha256/") and data:
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["digest"] == digest
    assert (
        entry["annotations"]["io.containerd.image.name"] == "docker.io/library/envoy-injector:0.1.0"
    )
    manifest = json.loads(files[oci.blob(digest)])
    (docker,) = json.loads(files["manifest.json"])
    assert docker["RepoTags"] == ["envoy-injector:0.1.0"]
    assert docker["Config"] == oci.blob(manifest["config"]["digest"])
    assert docker["Layers"] == [oci.blob(layer["digest"]) for layer in manifest["layers"]]
    config: dict[str, Any] = json.loads(files[docker["Config"]])
    assert config["config"]["Entrypoint"] == ["envoy-injector"]
    assert config["config"]["User"] == "10001:10001"
    assert config["config"]["ExposedPorts"] == {"8443/tcp": {}}
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to group 42 needs root")
def test_the_layer_keeps_numeric_owners_links_and_no_device_nodes(tmp_path: Path) -> None:
    root = tree(tmp_path / "tree")
    archive = tmp_path / "image.tar"
    oci.write_archive(root, images.WEBHOOK, archive, epoch=1_700_000_000)
    (docker,) = json.loads(members(archive)["manifest.json"])
    layer_path = tmp_path / "layer.tar"
    layer_path.write_bytes(members(archive)[docker["Layers"][0]])
    with tarfile.open(layer_path) as layer:
        entries = {m.name: m for m in layer.getmembers()}
    assert "dev" in entries
    assert "dev/fifo" not in entries
    shadow = entries["etc/shadow"]
    assert (shadow.uid, shadow.gid, shadow.uname, shadow.gname) == (0, 42, "", "")
    assert entries["bin/tool-again"].islnk()
    assert entries["lib"].issym()
    assert entries["lib"].linkname == "usr/lib"
    assert max(m.mtime for m in entries.values()) <= 1_700_000_000


def test_two_packs_of_the_same_tree_are_identical(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print('hi')\n")
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    oci.write_archive(root, images.HTTP_ECHO, first, epoch=0)
    (root / "app" / "main.py").touch()  # a newer mtime is clamped to the epoch
    oci.write_archive(root, images.HTTP_ECHO, second, epoch=0)
    assert first.read_bytes() == second.read_bytes()
