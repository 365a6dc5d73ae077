"""Find, and when asked build or install, the programs a test control plane runs.

- kube-apiserver and kube-controller-manager: built by `scripts/kube-binaries` into
  `<cache>/kube/<version>/bin` (the version is read from that script, its one source of truth).
- etcd: Debian's `etcd-server` package. Installing it must not leave the distribution's own etcd
  service running on the default ports, so the install runs under a policy-rc.d that forbids
  starting services (unless the machine already has one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.support import tools
from tests.support.cluster import packages

REPO: Final = Path(__file__).resolve().parents[3]
KUBE_BINARIES_SCRIPT: Final = REPO / "scripts" / "kube-binaries"
CONTROL_PLANE: Final = ("kube-apiserver", "kube-controller-manager")


class Missing(Exception):
    """A program is not there and we were not allowed to get it; the message says how."""


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_bin: Path

    def kube(self, name: str) -> Path:
        return self.kube_bin / name


def kube_version() -> str:
    text = KUBE_BINARIES_SCRIPT.read_text()
    match = re.search(r"KUBE_VERSION:-(v[0-9.]+)", text)
    if match is None:
        raise RuntimeError(f"no default KUBE_VERSION in {KUBE_BINARIES_SCRIPT}")
    return os.environ.get("KUBE_VERSION", match.group(1))


def kube_bin() -> Path:
    return tools.cache_dir() / "kube" / kube_version() / "bin"


def find_etcd() -> Path | None:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    return Path(found) if found else None


def locate(*, get: bool, names: tuple[str, ...] = CONTROL_PLANE) -> Binaries:
    """The binaries; with `get`, build what is missing and install etcd, else raise `Missing`."""
    missing = [name for name in names if not (kube_bin() / name).is_file()]
    if missing:
        if not get:
            raise Missing(
                f"{', '.join(missing)} {kube_version()} not built: run "
                f"`scripts/kube-binaries {' '.join(names)}` (about 7 minutes on 2 cores, "
                "once) or `scripts/cluster up`"
            )
        build(names)
    etcd = find_etcd()
    if etcd is None:
        if not get:
            raise Missing("etcd not installed: `apt-get install etcd-server` (Debian's package)")
        install_etcd()
        etcd = find_etcd()
        if etcd is None:
            raise RuntimeError("etcd-server was installed but no etcd binary was found")
    return Binaries(etcd=etcd, kube_bin=kube_bin())


def build(names: tuple[str, ...]) -> None:
    subprocess.run([str(KUBE_BINARIES_SCRIPT), *names], check=True, stdout=subprocess.DEVNULL)


def install_etcd() -> None:
    if os.geteuid() != 0:
        raise Missing("etcd is missing and installing it needs root: apt-get install etcd-server")
    # packages.install forbids service starts, so the package's etcd.service never runs on
    # 2379/2380 beside ours.
    packages.install(["etcd-server"])
