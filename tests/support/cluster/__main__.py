"""`scripts/cluster up|down|status|prepare [--name NAME]`: the test control plane for people
(and for CI, which runs `prepare` to build or install the binaries before the test run)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from tests.support import tools
from tests.support.cluster import binaries, controlplane, record


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster",
        description="A local Kubernetes control plane (etcd, kube-apiserver, "
        "kube-controller-manager) on 127.0.0.1, with no Docker and no node.",
    )
    parser.add_argument("command", choices=["up", "down", "status", "prepare"])
    parser.add_argument("--name", default="default", help="run several side by side")
    args = parser.parse_args(argv)
    directory = record.clusters_root() / args.name

    def say(text: str) -> None:
        out.write(text + "\n")

    if args.command == "prepare":
        found = binaries.locate(get=True)
        say(f"etcd: {found.etcd}\nkube binaries: {found.kube_bin}")
        return 0
    if args.command == "up":
        return _up(directory, args.name, say)
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
    try:
        say(f"# kubectl: {tools.kubectl()}")
    except tools.ToolError as error:
        say(f"# kubectl: not installed ({error})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
