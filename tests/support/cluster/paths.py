"""Where the cluster's cached tools and images live: outside the repository, shared by clones."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """${ENVOY_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/envoy-injector}"""
    if explicit := os.environ.get("ENVOY_INJECTOR_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "envoy-injector"
