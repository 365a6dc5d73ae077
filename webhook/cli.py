"""envoy-injector: serve | inject | policy | certs | controller. Thin: parse flags, call the
library."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import ssl
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from webhook import (
    __version__,
    check_command,
    errors,
    logs,
    mutate,
    patch,
    settings as settings_mod,
    workloads,
)
from webhook.settings import Settings

if TYPE_CHECKING:
    import uvicorn

    from webhook.namespace_limits import NamespaceLimits

server_log = logging.getLogger("envoy_injector.server")

SAMPLE_REVIEW = Path(__file__).resolve().parent.parent / "examples" / "admission-review.json"


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the webhook over TLS")
    p.add_argument("--host", help="address to bind (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="port to bind (default 8443)")
    p.add_argument("--cert", type=Path, help="serving certificate (PEM); reloaded when it changes")
    p.add_argument("--key", type=Path, help="its private key (PEM)")
    p.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="issue a throwaway CA and certificate for localhost and serve with them",
    )
    p.add_argument("--dev-dir", type=Path, help="where --dev writes them (default .dev-certs)")
    p.add_argument("--config", type=Path, help="the injector's config file (defaults and policy)")
    p.add_argument("--namespace", help="the injector's own namespace, never mutated")
    p.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig to watch LimitRanges and ResourceQuotas with when not in a Pod "
        "(in a Pod its ServiceAccount is used)",
    )
    p.add_argument("--log-format", choices=["json", "text"])
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def _inject_parser(sub: Any) -> None:
    p = sub.add_parser("inject", help="inject offline into Pods and workloads, print YAML")
    p.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    p.add_argument("--config", type=Path, help="the injector's config file (defaults and policy)")


def _uninject_parser(sub: Any) -> None:
    p = sub.add_parser(
        "uninject", help="take the injected sidecar back out of Pods and workloads, print YAML"
    )
    p.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")


def _policy_parser(sub: Any) -> None:
    p = sub.add_parser(
        "policy",
        help="print the admission policies that inject the sidecar without a webhook "
        "(Kubernetes >= 1.36)",
    )
    p.add_argument("--config", type=Path, help="the injector's config file (defaults and policy)")
    p.add_argument("-o", "--output-dir", type=Path, help=f"write {POLICY_FILE} there")


POLICY_FILE = "admission-policies.yaml"


def policy_command(args: argparse.Namespace, out: TextIO) -> int:
    from webhook import policies

    config_text = args.config.read_text(encoding="utf-8") if args.config else None
    context = settings_mod.context_from_config(config_text, own_namespace=Settings().namespace)
    docs = policies.render(context.defaults, context.policy, context.excluded_namespaces)
    text = policies.dump(docs)
    if args.output_dir is None:
        out.write(text)
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / POLICY_FILE).write_text(text, encoding="utf-8")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="envoy-injector", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _inject_parser(sub)
    _uninject_parser(sub)
    check_command.add_parser(sub)
    _policy_parser(sub)
    sub.add_parser(
        "certs", help="issue/rotate the TLS certificate (see: certs --help)", add_help=False
    )
    sub.add_parser(
        "controller",
        help="keep the sidecar's Envoy ConfigMap in labelled namespaces (see: controller --help)",
        add_help=False,
    )
    return parser


def issue_dev_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a cert for localhost and the in-cluster names; returns (ca, cert, key)."""
    from certs import issue

    now = datetime.datetime.now(datetime.UTC)
    ca = issue.new_ca(now=now, ttl=datetime.timedelta(days=30), common_name="envoy-injector-dev-ca")
    names = ["localhost", *issue.service_dns_names("envoy-injector", "envoy-injector")]
    bundle = issue.new_serving_cert(
        ca, names, now=now, ttl=datetime.timedelta(days=30), ip_addresses=["127.0.0.1", "::1"]
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    for path, data in zip(paths, (bundle.ca_pem, bundle.cert_pem, bundle.key_pem), strict=True):
        path.write_bytes(data)
    paths[2].chmod(0o600)
    return paths


def uvicorn_config(
    app: Any, *, host: str, port: int, ssl_context: Callable[[], ssl.SSLContext]
) -> uvicorn.Config:
    """How the webhook is served; the benchmark's baselines are served the same way."""
    import uvicorn

    from webhook.protocol import GatheringHttpToolsProtocol

    # One worker process per Pod, on purpose: a review costs well under a millisecond of CPU, so
    # one event loop serves far more than a cluster's Pod creation rate; more capacity and
    # availability come from replicas (2 by default, spread over nodes), which also keeps the
    # in-flight limit, metrics and config reloads per process simple and the memory small.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=GatheringHttpToolsProtocol,  # httptools, each reply in one TLS record
        ssl_context_factory=lambda _config, _default: ssl_context(),
        # kube-apiserver keeps idle webhook connections for ~90 s; closing them earlier makes it
        # reuse a connection we just closed, which shows up as intermittent EOF errors.
        timeout_keep_alive=120,
        timeout_graceful_shutdown=20,  # within the Pod's terminationGracePeriodSeconds (30)
        # The API server calls the webhook directly and sends no X-Forwarded-* headers; the
        # middleware that reads them would wrap every request for nothing.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
    )


def namespace_watch(settings: Settings) -> NamespaceLimits | None:
    """The LimitRange/ResourceQuota watch, from the Pod's ServiceAccount or --kubeconfig."""
    from kubeapi import client as kubeapi, credentials
    from kubeapi.errors import ApiError
    from webhook.namespace_limits import NamespaceLimits

    found: credentials.Credentials | None = credentials.in_cluster()
    if settings.kubeconfig is not None:
        try:
            found = credentials.from_kubeconfig(str(settings.kubeconfig))
        except ApiError as exc:
            raise errors.ConfigError(exc.message) from None
    if found is None:
        server_log.warning(
            "not running in a cluster and no --kubeconfig given: sidecars are not fitted to "
            "the namespaces' LimitRanges and ResourceQuotas"
        )
        return None
    return NamespaceLimits(kubeapi.Client(found))


def serve(settings: Settings, out: TextIO) -> int:

    from webhook.app import create_app, on_cert_change
    from webhook.metrics import create_metrics
    from webhook.shutdown import DrainingServer
    from webhook.tls import CertReloader

    logs.configure(settings.log_format, settings.log_level)
    if settings.dev:
        ca, cert, key = issue_dev_certs(settings.dev_dir)
        settings = dataclasses.replace(settings, cert=cert, key=key)
        host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
        url = f"https://{host}:{settings.port}"
        print(
            f"envoy-injector {__version__} (development certificate)\n"
            f"  URL:     {url}/mutate\n"
            f"  CA:      {ca.resolve()}\n"
            f"  try:     curl -sS --cacert {ca} -H 'Content-Type: application/json' "
            f"--data @{SAMPLE_REVIEW} {url}/mutate\n",
            file=out,
            flush=True,
        )
    if settings.cert is None or settings.key is None:
        raise errors.ConfigError("serve needs --cert and --key (or --dev for a throwaway pair)")
    metrics = create_metrics()
    reloader = CertReloader(settings.cert, settings.key, on_change=on_cert_change(metrics))
    app = create_app(
        settings, reloader=reloader, metrics=metrics, namespaces=namespace_watch(settings)
    )
    server_log.info(
        "starting",
        extra={"version": __version__, "port": settings.port, "config": str(settings.config)},
    )
    config = uvicorn_config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=reloader.listening_context,
    )

    def drain() -> None:
        app.state.draining = True

    DrainingServer(config, drain_seconds=settings.drain_seconds, on_drain=drain).run()
    return 0


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    return Path(source).read_text(encoding="utf-8")


def inject_documents(text: str, context: mutate.Context, err: TextIO) -> tuple[list[Any], int]:
    """Inject into every pod template of every YAML document; returns (documents, failures)."""
    out: list[Any] = []
    failures = 0
    docs = workloads.load_documents(text, err)
    if docs is None:
        return [], 1
    for index, original in enumerate(docs, start=1):
        if original is None:
            continue
        doc = original
        try:
            for template in workloads.templates(doc):
                result = mutate.plan_template(template, context)
                pointer = patch.pointer(*template.path) or "/"
                where = f"{workloads.describe(index, doc)} {pointer}"
                for warning in result.warnings:
                    print(f"warning: {where}: {warning}", file=err)
                if result.ops:
                    doc = patch.apply(doc, result.ops)
                    print(f"{where}: injected", file=err)
                else:
                    print(f"{where}: skipped ({result.decision.reason})", file=err)
        except errors.PodRejected as exc:
            print(f"error: {workloads.describe(index, doc)}: {exc}", file=err)
            failures += 1
        out.append(doc)
    return out, failures


def inject_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config_text = args.config.read_text(encoding="utf-8") if args.config else None
    context = settings_mod.context_from_config(config_text, own_namespace="")
    docs, failures = inject_documents(_read(args.filename), context, err)
    if failures:
        return 1
    yaml.safe_dump_all(docs, out, sort_keys=False, default_flow_style=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["certs"]:
        from certs import job

        return job.main(argv[1:])
    if argv[:1] == ["controller"]:
        from controller import main as controller_main

        return controller_main.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            overrides = {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__}
            return serve(Settings.from_env(os.environ, **overrides), sys.stdout)
        if args.command == "check":
            return check_command.check_command(args, sys.stdout, sys.stderr)
        if args.command == "uninject":
            from webhook.uninject_command import uninject_command

            return uninject_command(_read(args.filename), sys.stdout, sys.stderr)
        if args.command == "policy":
            return policy_command(args, sys.stdout)
        return inject_command(args, sys.stdout, sys.stderr)
    except (errors.InjectorError, OSError) as exc:
        print(f"envoy-injector: error: {exc}", file=sys.stderr)  # noqa: T201 - caught once here
        return 1
