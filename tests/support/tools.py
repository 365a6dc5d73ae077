"""The pinned ``kubectl`` and ``helm`` the tests run, from the cache ``scripts/tools`` fills.

Never the ones on PATH: a developer's machine may have any version or none, and a fresh CI
machine has none. :func:`kubectl` and :func:`helm` return the cached binary, running
``scripts/tools`` once per session when the cache is cold (it downloads and checks them).
The versions here must match the ones pinned in ``scripts/tools``; tests/test_tools.py checks it.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Final

__all__ = ["HELM_VERSION", "KUBECTL_VERSION", "ToolError", "cache_dir", "helm", "kubectl"]

KUBECTL_VERSION: Final = "v1.35.2"
HELM_VERSION: Final = "v4.1.4"
SCRIPT: Final = Path(__file__).resolve().parents[2] / "scripts" / "tools"


class ToolError(Exception):
    """``scripts/tools`` could not install a tool."""


def cache_dir() -> Path:
    """The project's cache of downloaded and built tools (outside the repository)."""
    explicit = os.environ.get("ENVOY_INJECTOR_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "envoy-injector"


def _cached(name: str, version: str) -> Path:
    return cache_dir() / "tools" / f"{name}-{version}" / name


@functools.cache
def _installed(name: str, version: str) -> Path:
    path = _cached(name, version)
    if os.access(path, os.X_OK):
        return path
    result = subprocess.run(
        [str(SCRIPT), name], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0 or result.stdout.strip() != str(path):
        raise ToolError(f"scripts/tools {name} did not install {path}:\n{result.stderr}")
    return path


def kubectl() -> Path:
    """kubectl (with kustomize built in), installed on first use."""
    return _installed("kubectl", KUBECTL_VERSION)


def helm() -> Path:
    """helm, installed on first use."""
    return _installed("helm", HELM_VERSION)
