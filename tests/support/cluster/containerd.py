"""containerd for the node (Debian's package, 1.6), with every path in the node's directory.

Two settings make it run here: `restrict_oom_score_adj = true` (root lacks CAP_SYS_RESOURCE, so
without it every sandbox fails with "can't get final child's PID from pipe: EOF"), and the pause
image built here as `sandbox_image` (there is no registry to pull one from). Its shims outlive it
on purpose (Pods survive a containerd restart), so teardown kills them by the socket they name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

from tests.support.cluster import host, images, oci, record

CNI_BIN_DIRS: Final = ("/usr/lib/cni", "/opt/cni/bin")
NAMESPACE: Final = "k8s.io"


def cni_bin_dir() -> str:
    for candidate in CNI_BIN_DIRS:
        if (Path(candidate) / "bridge").exists():
            return candidate
    raise FileNotFoundError(
        "the CNI plugins are missing: apt-get install containernetworking-plugins"
    )


def config(directory: Path, cni_conf_dir: Path) -> str:
    sandbox = oci.full_name(images.PAUSE.name)
    return f"""\
version = 2
root = "{directory}/root"
state = "{directory}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket_path(directory)}"

[ttrpc]
  address = "{directory}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{directory}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{directory}/runc"
        SystemdCgroup = false
"""


def socket_path(directory: Path) -> Path:
    return directory / "containerd.sock"


def start(rec: record.Record, directory: Path, cni_conf_dir: Path) -> Path:
    """Start containerd; return its socket once it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(config(directory, cni_conf_dir))
    rec.add({"kind": "shims", "name": str(socket_path(directory))})
    rec.add({"kind": "mounts", "name": str(directory)})
    rec.spawn("containerd", ["containerd", "--config", str(path)], stop_timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _answers(socket_path(directory)):
            return socket_path(directory)
        time.sleep(0.1)
    raise TimeoutError(f"containerd did not answer within 30 s; see {rec.directory / 'logs'}")


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
        return True


def import_images(sock: Path, archives: list[Path]) -> None:
    """Load image archives into the CRI namespace (what the kubelet sees)."""
    for archive in archives:
        subprocess.run(
            ["ctr", "--address", str(sock), "-n", NAMESPACE, "images", "import", str(archive)],
            check=True,
            capture_output=True,
            timeout=600,
        )


def kill_shims(entry: record.Entry) -> None:
    """Kill the shims started by this containerd (their argv names its socket)."""
    address = entry["name"]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" in argv[0] and address.encode() in argv:
                os.kill(int(proc.name), signal.SIGKILL)


_ = host  # host's undo kinds (mounts) are registered on import
record.register("shims", kill_shims)
