"""`envoy-injector check`: read the cluster once, let `diagnosis` judge, print, exit 0/1/2.

Only reads (the ClusterRole envoy-injector-viewer grants exactly these):
MutatingWebhookConfiguration envoy-injector; in the injector's namespace its config ConfigMap,
TLS Secret, Service, EndpointSlices and Deployments; namespaces; Pods; the Envoy ConfigMaps
the Pods mount; the LimitRanges and ResourceQuotas of those namespaces (the webhook fits the
sidecar to them); the ReplicaSets and Jobs that own Pods; and the workloads named as targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from kubeapi import client as kubeapi, credentials, errors as api_errors
from webhook import __version__, diagnosis, errors, health, limits, settings, verdicts
from webhook.health import Finding, Severity

JSONDict = dict[str, Any]
KINDS: Final = {  # target prefix -> (group/version, resource, Kind)
    "pod": ("v1", "pods", "Pod"),
    "po": ("v1", "pods", "Pod"),
    "deploy": ("apps/v1", "deployments", "Deployment"),
    "deployment": ("apps/v1", "deployments", "Deployment"),
    "sts": ("apps/v1", "statefulsets", "StatefulSet"),
    "statefulset": ("apps/v1", "statefulsets", "StatefulSet"),
    "ds": ("apps/v1", "daemonsets", "DaemonSet"),
    "daemonset": ("apps/v1", "daemonsets", "DaemonSet"),
    "job": ("batch/v1", "jobs", "Job"),
    "cronjob": ("batch/v1", "cronjobs", "CronJob"),
    "cj": ("batch/v1", "cronjobs", "CronJob"),
}
OWNERS: Final = {"ReplicaSet": ("apps/v1", "replicasets"), "Job": ("batch/v1", "jobs")}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="explain, on a live cluster, why Pods get the sidecar or not, and check the install",
        description="Exit status: 0 all is well, 1 problems were found, 2 could not check.",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="pod/NAME, deploy/NAME, sts/NAME, ds/NAME, job/NAME, cronjob/NAME or a "
        "namespace; none: the installation and every labelled namespace",
    )
    p.add_argument(
        "-n", "--namespace", help="namespace of the kind/NAME targets (default: default)"
    )
    p.add_argument("-l", "--selector", help="only Pods with these labels (kubectl syntax)")
    p.add_argument("--kubeconfig", metavar="FILE", help="default: in-cluster, then ~/.kube/config")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="judge with this injector config instead of the live ConfigMap",
    )
    p.add_argument("--injector-namespace", default="envoy-injector", metavar="NS")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")


class Reader:
    """GETs that turn 404 into None; other API errors propagate (check exits 2 on them)."""

    def __init__(self, api: kubeapi.Client) -> None:
        self.api = api

    def get(self, gv: str, resource: str, namespace: str | None, name: str) -> JSONDict | None:
        try:
            return self.api.get(kubeapi.path(gv, resource, namespace=namespace, name=name))
        except api_errors.NotFound:
            return None

    def items(self, gv: str, resource: str, namespace: str | None, **params: str) -> list[JSONDict]:
        found = self.api.get(kubeapi.path(gv, resource, namespace=namespace), params=params)
        return [i for i in found.get("items") or [] if isinstance(i, dict)]


def _version(deployment: JSONDict | None) -> str:
    containers = ((deployment or {}).get("spec") or {}).get("template", {}).get("spec", {})
    for container in containers.get("containers") or []:
        image = str(container.get("image", ""))
        if container.get("name") == "envoy-injector" and ":" in image.rsplit("/", 1)[-1]:
            return image.rsplit(":", 1)[1]
    return __version__


def read(reader: Reader, args: argparse.Namespace, now: datetime) -> verdicts.Snapshot:
    ns = args.injector_namespace
    config_map = reader.get("v1", "configmaps", ns, health.CONFIG_MAP)
    if args.config is not None:
        text, source = args.config.read_text(encoding="utf-8"), f"--config {args.config}"
    else:
        text = ((config_map or {}).get("data") or {}).get("config.yaml")
        source = f"the live ConfigMap {ns}/{health.CONFIG_MAP}"
    deployment = reader.get("apps/v1", "deployments", ns, health.DEPLOYMENT)
    installation = health.Installation(
        namespace=ns,
        webhook_config=reader.get(
            "admissionregistration.k8s.io/v1",
            "mutatingwebhookconfigurations",
            None,
            health.WEBHOOK_CONFIG,
        ),
        tls_secret=reader.get("v1", "secrets", ns, health.TLS_SECRET),
        service=reader.get("v1", "services", ns, health.SERVICE),
        endpoint_slices=reader.items(
            "discovery.k8s.io/v1",
            "endpointslices",
            ns,
            labelSelector=f"kubernetes.io/service-name={health.SERVICE}",
        ),
        deployment=deployment,
        controller=reader.get("apps/v1", "deployments", ns, health.CONTROLLER),
        config=source,
        config_found=args.config is not None or config_map is not None,
    )
    targets, missing, namespaces = _targets(reader, args)
    snapshot = verdicts.Snapshot(
        installation=installation,
        context=settings.context_from_config(text, own_namespace=ns),
        now=now,
        version=_version(deployment),
        namespaces={n: reader.get("v1", "namespaces", None, n) or {} for n in namespaces},
        targets=targets,
        owners=_owners(reader, targets),
        missing=missing,
    )
    snapshot = dataclasses.replace(snapshot, limits=_limits(reader, snapshot.namespaces))
    present = {
        key: reader.get("v1", "configmaps", *key) is not None
        for key in sorted(verdicts.wanted_config_maps(snapshot))
    }
    return dataclasses.replace(snapshot, config_maps=present)


def _targets(
    reader: Reader, args: argparse.Namespace
) -> tuple[list[JSONDict], list[Finding], set[str]]:
    """The objects to judge, the named ones that do not exist, and the namespaces involved."""
    selector = {"labelSelector": args.selector} if args.selector else {}
    objects: list[JSONDict] = []
    missing: list[Finding] = []
    whole: set[str] = set()
    named = args.targets or ([args.namespace] if args.namespace else [])
    for target in named:
        kind, _, name = target.rpartition("/")
        if kind in ("", "ns", "namespace"):
            whole.add(name)
            continue
        gv, resource, kind_name = KINDS[kind]  # checked by parse_targets before any request
        namespace = args.namespace or "default"
        obj = reader.get(gv, resource, namespace, name)
        if obj is None:
            missing.append(
                Finding(Severity.PROBLEM, "target", f"{kind_name} {namespace}/{name}", "not found")
            )
            continue
        objects.append({"kind": kind_name, **obj})
        if kind_name != "Pod":  # and its Pods, found as kubectl does, by the workload's labels
            labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if kind_name == "CronJob" or not labels:
                continue
            query = ",".join([f"{k}={v}" for k, v in labels.items()] + [args.selector or ""])
            pods = reader.items("v1", "pods", namespace, labelSelector=query.rstrip(","))
            objects += [{"kind": "Pod", **p} for p in pods]
    if not named:
        labelled = reader.items("v1", "namespaces", None, labelSelector="envoy-inject")
        whole = {str(n["metadata"]["name"]) for n in labelled}
    for namespace in sorted(whole):
        objects += [{"kind": "Pod", **p} for p in reader.items("v1", "pods", namespace, **selector)]
    namespaces = whole | {str(o["metadata"].get("namespace")) for o in objects}
    return objects, missing, namespaces


def _limits(reader: Reader, namespaces: Iterable[str]) -> dict[str, limits.Namespace]:
    """Each namespace's LimitRanges and ResourceQuotas: the webhook fits the sidecar to them."""
    return {
        ns: limits.Namespace(
            limit_ranges=reader.items("v1", "limitranges", ns),
            quotas=reader.items("v1", "resourcequotas", ns),
        )
        for ns in namespaces
    }


def parse_targets(targets: list[str]) -> None:
    """Refuse an unknown TARGET kind before reading anything from the cluster."""
    for target in targets:
        kind, _, name = target.rpartition("/")
        if kind not in ("", "ns", "namespace", *KINDS) or not name:
            raise errors.ConfigError(
                f"target {target!r}: kind {kind!r} is not one of {', '.join(sorted(KINDS))} "
                "(or a namespace name)"
            )


def _owners(reader: Reader, targets: list[JSONDict]) -> dict[tuple[str, str, str], JSONDict]:
    found: dict[tuple[str, str, str], JSONDict] = {}
    for obj in targets:
        namespace = str(obj["metadata"].get("namespace"))
        for ref in obj["metadata"].get("ownerReferences") or []:
            kind, name = str(ref.get("kind")), str(ref.get("name"))
            if ref.get("controller") and kind in OWNERS and (kind, namespace, name) not in found:
                owner = reader.get(*OWNERS[kind], namespace, name)
                if owner is not None:
                    found[(kind, namespace, name)] = owner
    return found


MARKS: Final = {
    Severity.OK: "ok",
    Severity.INFO: "--",
    Severity.WARNING: "!!",
    Severity.PROBLEM: "XX",
}


def table(report: diagnosis.Report) -> Iterator[str]:
    for f in report.findings:
        yield f"{MARKS[f.severity]} {f.subject}: {f.message}"
        if f.fix and f.severity in (Severity.WARNING, Severity.PROBLEM):
            yield f"   fix: {f.fix}"
    if report.verdicts:
        yield ""
        rows = [("NAMESPACE", "KIND", "NAME", "CALLED", "DECISION", "INJECTED", "OUTDATED")]
        rows += [
            (
                v.namespace,
                v.kind,
                v.name,
                "yes" if v.called else "no",
                (v.decision + (f" ({v.reason})" if v.reason else "")) if v.called else "not called",
                {True: "yes", False: "no", None: "-"}[v.injected],
                "yes" if v.outdated else "-",
            )
            for v in report.verdicts
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            yield "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
    warnings = sum(f.severity is Severity.WARNING for f in report.findings)
    yield ""
    plural = {True: "s", False: ""}
    yield (
        f"{report.problems} problem{plural[report.problems != 1]}, "
        f"{warnings} warning{plural[warnings != 1]}"
    )


def check_command(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    *,
    connect: Callable[[str | None], kubeapi.Client] | None = None,
) -> int:
    """0 all is well, 1 problems were found, 2 could not check (the reason on stderr)."""
    try:
        parse_targets(args.targets)
        api = (connect or _connect)(args.kubeconfig)
        report = diagnosis.diagnose(read(Reader(api), args, datetime.now(UTC)))
    except (api_errors.ApiError, errors.ConfigError, OSError) as exc:
        reason = _why(exc) if isinstance(exc, api_errors.ApiError) else str(exc)
        if args.output == "json":
            json.dump({"status": "error", "error": reason}, out, indent=2)
            out.write("\n")
        print(f"envoy-injector check: could not check: {reason}", file=err)
        return 2
    if args.output == "json":
        json.dump(diagnosis.as_json(report), out, indent=2)
        out.write("\n")
    else:
        out.writelines(line + "\n" for line in table(report))
    return 1 if report.problems else 0


def _connect(kubeconfig: str | None) -> kubeapi.Client:
    return kubeapi.Client(credentials.load(kubeconfig), timeout=(5.0, 30.0))


def _why(exc: api_errors.ApiError) -> str:
    if isinstance(exc, api_errors.Forbidden):
        return (
            f"no access: {exc.message} (bind the ClusterRole envoy-injector-viewer to "
            "yourself; README, Day two)"
        )
    if isinstance(exc, api_errors.Unreachable):
        return f"no cluster: {exc.message}"
    return str(exc)
