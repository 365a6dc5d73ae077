"""The Debian packages a node needs, installed with apt-get when missing (as root).

Installing must not start the packages' own services (containerd.service on its default socket):
the install runs under a policy-rc.d that forbids service starts, unless the machine has one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

# What must be there -> the package that brings it.
NODE: Final = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "iptables": "iptables",
    "ip": "iproute2",
    "mmdebstrap": "mmdebstrap",
    "gcc": "gcc",
    "ldd": "libc-bin",
}
_POLICY_RC: Final = Path("/usr/sbin/policy-rc.d")


class Missing(Exception):
    """A package is not installed and we may not install it; the message says which."""


def missing(wanted: dict[str, str]) -> list[str]:
    def present(thing: str) -> bool:
        return Path(thing).exists() if thing.startswith("/") else shutil.which(thing) is not None

    return sorted({package for thing, package in wanted.items() if not present(thing)})


def ensure(wanted: dict[str, str], *, get: bool) -> None:
    """Install what is missing (with `get`, as root), else raise Missing naming the command."""
    packages = missing(wanted)
    if not packages:
        return
    command = f"apt-get install {' '.join(packages)}"
    if not get:
        raise Missing(f"missing Debian packages: {command}")
    if os.geteuid() != 0:
        raise Missing(f"installing Debian packages needs root: {command}")
    install(packages)


def install(packages: list[str]) -> None:
    # Exit 101 is policy-rc.d's "action forbidden": no package service starts beside ours.
    guard = not _POLICY_RC.exists()
    if guard:
        _POLICY_RC.write_text("#!/bin/sh\n# envoy-injector tests: no service starts\nexit 101\n")
        _POLICY_RC.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        wait = ["-o", "DPkg::Lock::Timeout=600"]  # another apt-get may be running
        subprocess.run(["apt-get", *wait, "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", *wait, "install", "-y", "-qq", *packages], check=True, env=env)
    finally:
        if guard:
            _POLICY_RC.unlink()
