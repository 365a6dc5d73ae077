"""Changes a node makes to the host outside its own directory, each recorded before it is made so
that teardown (tests/support/cluster/record.py) can undo it from the record alone:

- `sysctl`: a kernel setting the kubelet or the CNI bridge plugin changes (its old value);
- `path`: a host directory a component creates that did not exist before;
- `mounts`: every mount below a directory (containers' root filesystems, Pods' volumes, sandbox
  /dev/shm), unmounted deepest first;
- `cgroup`: the node's cgroup parent in every v1 hierarchy: its processes are killed, its
  directories removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Final

from tests.support.cluster import record

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")


def sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def remember_sysctl(rec: record.Record, key: str) -> None:
    path = sysctl_path(key)
    if path.exists():
        rec.add({"kind": "sysctl", "name": key, "value": path.read_text().strip()})


def restore_sysctl(entry: record.Entry) -> None:
    path = sysctl_path(entry["name"])
    if path.exists() and path.read_text().strip() != entry["value"]:
        path.write_text(entry["value"] + "\n")


def remember_path(rec: record.Record, path: Path) -> None:
    """Record `path` for removal only when it is not there yet (so it is ours)."""
    if not path.exists():
        rec.add({"kind": "path", "name": str(path)})


def remove_path(entry: record.Entry) -> None:
    path = Path(entry["name"])
    unmount_below({"name": str(path)})
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def mounts_below(directory: Path) -> list[Path]:
    """Mount points at or below directory, deepest first (from /proc/self/mountinfo)."""
    prefix = str(directory.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(set(found), key=lambda path: len(path.parts), reverse=True)


def unmount_below(entry: record.Entry) -> None:
    directory = Path(entry["name"])
    if not directory.exists():
        return
    for point in mounts_below(directory):
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def cgroup_dirs(name: str) -> list[Path]:
    """The node's cgroup parent in every mounted v1 hierarchy (and the unified one), if present."""
    if not CGROUP_ROOT.is_dir():
        return []
    return [
        hierarchy / name
        for hierarchy in sorted(CGROUP_ROOT.iterdir())
        if (hierarchy / name).is_dir()
    ]


def make_cgroup(rec: record.Record, name: str) -> None:
    """The kubelet's `cgroupRoot`, in every v1 hierarchy (the kubelet refuses a missing one)."""
    rec.add({"kind": "cgroup", "name": name})
    for hierarchy in sorted(CGROUP_ROOT.iterdir()):
        if hierarchy.name == "unified" or not (hierarchy / "cgroup.procs").exists():
            continue
        directory = hierarchy / name
        directory.mkdir(exist_ok=True)
        # A new cpuset starts with no CPUs and no memory nodes: nothing could join it.
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists():
                (directory / knob).write_text((hierarchy / knob).read_text())


def _tasks(directory: Path) -> set[int]:
    pids: set[int] = set()
    for procs in directory.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(line) for line in procs.read_text().split())
    return pids


def kill_cgroup(entry: record.Entry) -> None:
    """SIGKILL every process in the node's cgroups (the Pods' containers), then remove them."""
    directories = cgroup_dirs(entry["name"])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pids = (
            set().union(*(_tasks(directory) for directory in directories)) if directories else set()
        )
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for directory in directories:
        children = sorted(
            (path for path in directory.rglob("*") if path.is_dir()),
            key=lambda path: len(path.parts),
            reverse=True,
        )
        for path in [*children, directory]:
            with contextlib.suppress(OSError):
                path.rmdir()


record.register("sysctl", restore_sysctl)
record.register("path", remove_path)
record.register("mounts", unmount_below)
record.register("cgroup", kill_cgroup)
