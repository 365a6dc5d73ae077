"""A directory written and updated the way the kubelet's atomic writer projects a ConfigMap or
Secret volume: content in a versioned directory, ``..data`` a symlink to it, each key a symlink
``key -> ..data/key``; an update writes a new directory and renames a fresh ``..data_tmp`` over
``..data`` in one step. Servers that watch such a volume see exactly what they would in a Pod."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

__all__ = ["KubeletVolume"]


class KubeletVolume:
    """A directory written and updated like a kubelet-managed ConfigMap/Secret volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._versions = itertools.count(1)
        root.mkdir(parents=True, exist_ok=True)

    def write(self, files: Mapping[str, bytes]) -> None:
        """Publish ``files`` as the volume's whole new content with one atomic rename."""
        version = self.root / f"..{next(self._versions):04d}_update"
        version.mkdir()
        for name, content in files.items():
            (version / name).write_bytes(content)
        staging = self.root / "..data_tmp"
        staging.symlink_to(version.name)
        staging.replace(self.root / "..data")
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)
