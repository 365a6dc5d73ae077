"""envoy-injector controller: keeps the sidecar's Envoy ConfigMap in every labelled namespace.

Wires the parts together and owns the process: flags, logs, the leader Lease, the watches, the
worker, the probe server, config reloads and SIGTERM. Errors the user can fix (a bad config
file, no credentials) end it with exit code 1 and one line; everything after start-up is
retried in place, never by crashing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller import config, lease, probes
from controller.metrics import create_metrics
from controller.reconciler import Reconciler
from kubeapi import client as kubeapi, credentials, errors as kerrors
from webhook import __version__, errors, logs

log = logging.getLogger("envoy_injector.controller")
LEASE_NAME = "envoy-injector-controller"


@dataclass(frozen=True)
class Options:
    config: Path | None = None
    kubeconfig: str | None = None
    metrics_port: int = 8080
    namespace: str = "envoy-injector"
    identity: str = ""
    resync_seconds: float = 300.0
    reload_seconds: float = 10.0
    log_format: str = "json"
    log_level: str = "info"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="envoy-injector controller",
        description="Keep the sidecar's Envoy ConfigMap in every namespace labelled "
        "envoy-inject=enabled (run in the cluster by the controller Deployment).",
    )
    p.add_argument("--config", type=Path, help="the injector's config file (same as the webhook)")
    p.add_argument("--kubeconfig", help="a kubeconfig file (default: in-cluster, else $KUBECONFIG)")
    p.add_argument("--metrics-port", type=int, default=8080, help="/healthz /readyz /metrics")
    p.add_argument(
        "--namespace",
        default=os.environ.get("ENVOY_INJECTOR_NAMESPACE", "envoy-injector"),
        help="the injector's own namespace: holds the leader Lease, never gets a ConfigMap",
    )
    p.add_argument("--resync-seconds", type=float, default=300.0, help="full resync period")
    p.add_argument("--reload-seconds", type=float, default=10.0, help="config file check period")
    p.add_argument("--log-format", choices=["json", "text"], default="json")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    return p


def _identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def run(options: Options, stop: threading.Event) -> int:
    text, digest = config.read(options.config)
    target = config.target_from_config(text, own_namespace=options.namespace)
    api = kubeapi.Client(credentials.load(options.kubeconfig), timeout=(5.0, 30.0))
    metrics = create_metrics()
    identity = options.identity or _identity()
    worker = Reconciler(
        api,
        target=target,
        metrics=metrics,
        identity=identity,
        resync_seconds=options.resync_seconds,
    )
    elector = lease.Elector(
        api,
        namespace=options.namespace,
        name=LEASE_NAME,
        identity=identity,
        on_change=worker.set_leading,
    )
    state: dict[str, Any] = {"digest": digest, "checked": time.monotonic()}

    def reload() -> None:
        if options.config is None or time.monotonic() - state["checked"] < options.reload_seconds:
            return
        state["checked"] = time.monotonic()
        try:
            new_text, new_digest = config.read(options.config)
            if new_digest == state["digest"]:
                return
            new_target = config.target_from_config(new_text, own_namespace=options.namespace)
        except (errors.InjectorError, OSError) as exc:
            problem = str(exc)
        else:
            problem = ""
        if problem:
            metrics.config_reloads.labels(result="rejected").inc()
            log.error("config not reloaded, keeping the current one: %s", problem)
            return
        state["digest"] = new_digest
        metrics.config_reloads.labels(result="applied").inc()
        log.info(
            "config applied", extra={"configmap": new_target.name, "digest": new_target.digest}
        )
        worker.set_target(new_target)

    threads = [
        threading.Thread(target=worker.namespaces.run, args=(stop,), name="ns-watch", daemon=True),
        threading.Thread(target=worker.configmaps.run, args=(stop,), name="cm-watch", daemon=True),
        threading.Thread(target=elector.run, args=(stop,), name="lease", daemon=True),
    ]
    server = probes.serve(
        options.metrics_port,
        registry=metrics.registry,
        healthy=lambda: time.monotonic() - worker.heartbeat < 30,
        ready=worker.synced,
    )
    log.info(
        "starting",
        extra={
            "version": __version__,
            "identity": identity,
            "server": api.server,
            "configmap": target.name,
            "metrics_port": server.server_address[1],
        },
    )
    for thread in threads:
        thread.start()
    try:
        worker.run(stop, tick=reload)
    finally:
        threads[2].join(timeout=5)  # the elector hands the Lease back on its way out
        server.shutdown()
        log.info("stopped", extra={"identity": identity})
    return 0


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_format, args.log_level)
    options = Options(
        config=args.config,
        kubeconfig=args.kubeconfig,
        metrics_port=args.metrics_port,
        namespace=args.namespace,
        resync_seconds=args.resync_seconds,
        reload_seconds=args.reload_seconds,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        return run(options, stop)
    except (errors.InjectorError, kerrors.ApiError, OSError) as exc:
        print(f"envoy-injector controller: error: {exc}", file=sys.stderr)  # noqa: T201 - once
        return 1
