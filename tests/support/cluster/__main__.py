"""`scripts/cluster up|down|status|prepare [--name NAME] [--control-plane-only]`: a one-node
cluster with the injector installed, for people (and for CI, which runs `prepare` to build or
install the binaries and images before the test run)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from tests.support import tools
from tests.support.cluster import binaries, controlplane, images, packages, record, stack


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster",
        description="A local one-node Kubernetes cluster with envoy-injector installed, with no "
        "Docker: etcd, kube-apiserver, kube-controller-manager, containerd, kubelet, kube-proxy "
        "and kube-scheduler on this machine (root needed for the node).",
    )
    parser.add_argument("command", choices=["up", "down", "status", "prepare"])
    parser.add_argument("--name", default="default", help="run several side by side")
    parser.add_argument(
        "--control-plane-only",
        action="store_true",
        help="no node and no install: etcd, kube-apiserver, kube-controller-manager on 127.0.0.1",
    )
    args = parser.parse_args(argv)
    directory = record.clusters_root() / args.name

    def say(text: str) -> None:
        out.write(text + "\n")

    if args.command == "prepare":
        names = binaries.CONTROL_PLANE if args.control_plane_only else stack.ALL_BINARIES
        if not args.control_plane_only:
            packages.ensure(packages.NODE, get=True)
        found = binaries.locate(get=True, names=names)
        say(f"etcd: {found.etcd}\nkube binaries: {found.kube_bin}")
        if not args.control_plane_only:
            for archive in [images.webhook_image(), *images.node_images()]:
                say(f"image: {archive}")
        return 0
    if args.command == "up" and args.control_plane_only:
        return _up(directory, args.name, say)
    if args.command == "up":
        return _up_with_node(directory, args.name, say)
    if args.command == "down":
        if not (directory / record.RECORD).exists():
            say(f"cluster {args.name!r} is not up")
            return 0
        errors = record.tear_down(directory)
        for error in errors:
            say(f"cluster down: {error}")
        say(f"cluster {args.name!r} stopped" if not errors else "cluster down: incomplete")
        return 1 if errors else 0
    rec = record.Record(directory)
    if not rec.path.exists():
        say(f"cluster {args.name!r} is not up")
        return 3
    for entry in rec.processes():
        state = "running" if record.alive(entry["pid"], entry.get("started")) else "gone"
        say(f"{entry['name']:<24} pid {entry['pid']:<8} {state}")
    say(f"export KUBECONFIG={rec.fact('kubeconfig')}")
    return 0


def _up(directory: Path, name: str, say: Callable[[str], None]) -> int:
    if (directory / record.RECORD).exists():
        say(f"cluster {name!r} is already up (`scripts/cluster status`); `down` it first")
        return 1
    say("# finding (or building, ~7 min once) kube-apiserver, kube-controller-manager, etcd")
    found = binaries.locate(get=True)
    say("# starting etcd, kube-apiserver, kube-controller-manager")
    try:
        plane = controlplane.start(directory, found, owner=None)
    except BaseException:
        record.tear_down(directory)
        raise
    say(f"# API server {plane.server}; logs in {directory / 'logs'}")
    say(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _up_with_node(directory: Path, name: str, say: Callable[[str], None]) -> int:
    if (directory / record.RECORD).exists():
        say(f"cluster {name!r} is already up (`scripts/cluster status`); `down` it first")
        return 1

    def progress(text: str) -> None:
        print(f"cluster: {text}", file=sys.stderr, flush=True)  # noqa: T201 - progress

    try:
        cluster = stack.up(directory, owner=None, say=progress)
    except stack.NeedsRoot as error:
        say(f"cluster up: {error}; run it as root, or use --control-plane-only")
        return 1
    except (RuntimeError, TimeoutError, OSError, subprocess.CalledProcessError) as error:
        say(f"cluster up failed, and everything it started was removed: {error}")
        return 1
    say(f"# logs in {directory / 'logs'}; `scripts/cluster down` removes everything")
    say(f"export KUBECONFIG={cluster.kubeconfig}")
    say(f"export PATH={Path(tools.kubectl()).parent}:$PATH   # kubectl v1.35.2")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
