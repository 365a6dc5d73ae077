"""`check`'s findings: the installation's health, then one verdict per Pod or template, then the
outdated sidecars grouped by the workload that restarts them. Pure, like `verdicts`.

Severity: ok and info are informative, a warning is worth acting on, and a problem fails the
check (exit status 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

from webhook import health
from webhook.health import Finding, Severity
from webhook.verdicts import Snapshot, Verdict, verdicts, would_call

JSONDict = dict[str, Any]
RESTARTABLE: Final = {"Deployment", "StatefulSet", "DaemonSet"}


@dataclass(frozen=True)
class Outdated:
    """Pods of one workload running a sidecar the current config would not inject."""

    namespace: str
    workload: str  # kind/name, or pod/name for a Pod nothing recreates
    pods: tuple[str, ...]
    images: tuple[str, ...]
    fix: str


@dataclass(frozen=True)
class Report:
    findings: list[Finding]
    verdicts: list[Verdict]
    outdated: list[Outdated]

    @property
    def problems(self) -> int:
        return sum(f.severity is Severity.PROBLEM for f in self.findings)


def _restart(namespace: str, workload: str) -> str:
    kind, _, name = workload.partition("/")
    if kind in RESTARTABLE:
        return f"kubectl -n {namespace} rollout restart {kind.lower()}/{name}"
    if kind == "CronJob":
        return f"nothing to restart: the next Job of cronjob/{name} gets the current sidecar"
    return f"kubectl -n {namespace} delete pod {name}  # then recreate it as you created it"


def _subject(v: Verdict) -> str:
    return f"{v.kind} {v.namespace}/{v.name}"


def _verdict_findings(snapshot: Snapshot, v: Verdict) -> list[Finding]:
    subject = _subject(v)
    found = []
    if not v.called:
        found.append(
            Finding(
                Severity.INFO,
                "webhook-called",
                subject,
                "the webhook is not called: " + "; ".join(v.not_called),
            )
        )
    elif v.decision == "reject":
        found.append(Finding(Severity.PROBLEM, "decision", subject, f"refused: {v.message}"))
    else:
        found.append(
            Finding(
                Severity.OK if v.decision == "inject" else Severity.INFO,
                "decision",
                subject,
                f"{v.decision}: {v.message}",
            )
        )
    found += [Finding(Severity.WARNING, "decision", subject, w) for w in v.warnings]
    expected = v.called and v.decision == "inject"
    if v.injected is False and expected:
        found.append(
            Finding(
                Severity.PROBLEM,
                "pod-injection",
                subject,
                "runs without the "
                "sidecar although it would get one now (created before the "
                "namespace was labelled, or while the webhook was down?)",
                _restart(v.namespace, v.owner or f"Pod/{v.name}"),
            )
        )
    if v.injected and v.decision == "reject" and v.reason == "status_mismatch":
        found.append(Finding(Severity.PROBLEM, "pod-injection", subject, v.message))
    elif v.injected and not expected:
        found.append(
            Finding(
                Severity.WARNING,
                "pod-injection",
                subject,
                "has the sidecar but "
                "would not get it now (its labels or annotations changed since)",
            )
        )
    if v.config_map and snapshot.config_maps.get((v.namespace, v.config_map)) is False:
        found.append(_missing_config_map(v.namespace, v.config_map, subject))
    return found


def _missing_config_map(namespace: str, name: str, subject: str) -> Finding:
    return Finding(
        Severity.PROBLEM,
        "envoy-config",
        subject,
        f"the Envoy ConfigMap {namespace}/{name} it mounts is missing: injected Pods cannot start",
        f"kubectl -n {namespace} create configmap {name} --from-file=envoy.yaml",
    )


def _outdated(verdicts: list[Verdict]) -> list[Outdated]:
    groups: dict[tuple[str, str], list[Verdict]] = {}
    for v in verdicts:
        if v.outdated:
            groups.setdefault((v.namespace, v.owner or f"Pod/{v.name}"), []).append(v)
    return [
        Outdated(
            ns,
            workload,
            tuple(v.name for v in group),
            tuple(sorted({v.image for v in group})),
            _restart(ns, workload),
        )
        for (ns, workload), group in sorted(groups.items())
    ]


def diagnose(snapshot: Snapshot) -> Report:
    """Every finding: the installation first, then namespaces, targets and outdated sidecars."""
    found = health.installation(snapshot.installation, now=snapshot.now)
    found += snapshot.missing
    for name in sorted(snapshot.namespaces):
        unmet = would_call(snapshot, name, {})
        subject = f"Namespace {name}"
        if unmet:
            found.append(
                Finding(
                    Severity.INFO,
                    "namespace",
                    subject,
                    "its Pods are not sent to the injector: " + "; ".join(unmet),
                )
            )
            continue
        found.append(
            Finding(Severity.OK, "namespace", subject, "its Pods are sent to the injector")
        )
        cm = snapshot.context.defaults.config_map
        if snapshot.config_maps.get((name, cm)) is False:
            found.append(_missing_config_map(name, cm, subject))
    results = verdicts(snapshot)
    for v in results:
        found += _verdict_findings(snapshot, v)
    outdated = _outdated(results)
    for group in outdated:
        found.append(
            Finding(
                Severity.WARNING,
                "outdated",
                f"{group.workload} in {group.namespace}",
                f"{len(group.pods)} Pods run an outdated sidecar ({', '.join(group.images)})",
                group.fix,
            )
        )
    return Report(found, results, outdated)


def as_json(report: Report) -> JSONDict:
    """The documented, stable shape of `check -o json` (README, Day two)."""
    return {
        "status": "problems" if report.problems else "ok",
        "problems": report.problems,
        "findings": [
            dataclasses.asdict(f) | {"severity": f.severity.value} for f in report.findings
        ],
        "targets": [
            dataclasses.asdict(v) | {"not_called": list(v.not_called), "warnings": list(v.warnings)}
            for v in report.verdicts
        ],
        "outdated": [
            dataclasses.asdict(o) | {"pods": list(o.pods), "images": list(o.images)}
            for o in report.outdated
        ],
    }
