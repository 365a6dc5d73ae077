"""TEMPORARY shim, to be replaced by branch `vendor`'s tests/support/tools.py at merge time.

`kubectl()` returns the pinned kubectl v1.35.2 that `scripts/tools` installs into the cache; it
never falls back to a kubectl on PATH (a fresh machine has none, and its version would vary).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cluster import record

_REPO = Path(__file__).resolve().parents[2]


def kubectl() -> str:
    script = _REPO / "scripts" / "tools"
    if script.is_file():
        out = subprocess.run([str(script), "kubectl"], check=True, capture_output=True, text=True)
        return out.stdout.splitlines()[0]
    cached = record.cache_root() / "tools" / "kubectl-v1.35.2" / "kubectl"
    if cached.is_file():
        return str(cached)
    raise FileNotFoundError(
        f"kubectl v1.35.2 not installed at {cached}: run `scripts/tools kubectl`"
    )
