"""Why did this Pod get, or not get, the sidecar? Pure: a snapshot of cluster state -> verdicts.

The verdicts come from the code the webhook runs, never a copy of it: the live webhook
configuration's rules and selectors (`selectors`), `mutate.plan_template` (decide -> resolve ->
inject) and `overrides.resolve` for the image a Pod would get today. An existing Pod is judged as
it was created: `uninject` takes out what its status annotation records first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webhook import errors, health, limits, mutate, overrides, selectors, uninject, workloads
from webhook.health import Finding

JSONDict = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Snapshot:
    """What the shell read. ``targets`` are live Pods and workloads; ``owners`` the ReplicaSets
    and Jobs read to follow a Pod to its workload, by (kind, namespace, name)."""

    installation: health.Installation
    context: mutate.Context
    now: datetime
    version: str  # the installed injector's version, compared with the status annotation's
    namespaces: Mapping[str, JSONDict] = field(default_factory=dict)
    targets: Sequence[JSONDict] = ()
    owners: Mapping[tuple[str, str, str], JSONDict] = field(default_factory=dict)
    config_maps: Mapping[Key, bool] = field(default_factory=dict)  # (ns, name) -> exists
    limits: Mapping[str, limits.Namespace] = field(default_factory=dict)  # LimitRanges, quotas
    missing: Sequence[Finding] = ()  # targets named on the command line that do not exist


@dataclass(frozen=True)
class Verdict:
    """One Pod or pod template: would the webhook be called, and what would it decide."""

    kind: str
    namespace: str
    name: str
    called: bool
    not_called: tuple[str, ...] = ()  # the unmet requirements, as written in the configuration
    decision: str = ""  # inject | skip | reject | "" when not called
    reason: str = ""
    message: str = ""
    warnings: tuple[str, ...] = ()
    config_map: str = ""  # the Envoy ConfigMap it mounts (or would)
    injected: bool | None = None  # Pods only
    image: str = ""  # the sidecar image it runs (Pods) or would get
    outdated: bool = False
    owner: str = ""  # kind/name of the workload that restarts it


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return dict(labels) if isinstance(labels, dict) else {}


def _rule_matches(rule: Mapping[str, Any]) -> bool:
    """A webhook rule covers Pod CREATE in a namespace (admissionregistration/v1)."""

    def has(key: str, *accepted: str) -> bool:
        values = rule.get(key) or []
        return any(v in accepted for v in values)

    return (
        has("operations", "CREATE", "*")
        and has("apiGroups", "", "*")
        and has("apiVersions", "v1", "*")
        and has("resources", "pods", "*", "*/*")
        and rule.get("scope", "*") in ("*", "Namespaced")
    )


def would_call(snapshot: Snapshot, namespace: str, pod: Mapping[str, Any]) -> tuple[str, ...]:
    """Why no webhook of the live configuration would be called for this Pod; () if one is."""
    entries = health.webhooks(snapshot.installation.webhook_config)
    if not entries:
        return ("no MutatingWebhookConfiguration envoy-injector",)
    ns_labels = {
        "kubernetes.io/metadata.name": namespace,
        **_labels(snapshot.namespaces.get(namespace, {})),
    }
    unmet: list[str] = []
    for entry in entries:
        rules = [r for r in entry.get("rules") or [] if isinstance(r, dict)]
        if not any(_rule_matches(r) for r in rules):
            unmet.append(f"webhook {entry.get('name')}: no rule covers Pod CREATE")
            continue
        missing = [
            f"namespace {namespace}: {r}"
            for r in selectors.failing(entry.get("namespaceSelector"), ns_labels)
        ]
        missing += [
            f"Pod labels: {r}" for r in selectors.failing(entry.get("objectSelector"), _labels(pod))
        ]
        if not missing:
            return ()
        unmet.extend(missing)
    return tuple(unmet)


def _owner(snapshot: Snapshot, namespace: str, pod: Mapping[str, Any]) -> str:
    """kind/name of what recreates the Pod: ReplicaSet -> Deployment, Job -> CronJob."""
    obj: Mapping[str, Any] = pod
    found = ""
    for _ in range(3):
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        ref = next((r for r in refs if isinstance(r, dict) and r.get("controller")), None)
        if ref is None:
            break
        found = f"{ref.get('kind')}/{ref.get('name')}"
        obj = snapshot.owners.get((str(ref.get("kind")), namespace, str(ref.get("name"))), {})
    return found


def _mounted_config_map(pod: Mapping[str, Any], status: uninject.Status) -> str:
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if isinstance(volume, dict) and volume.get("name") in status.volumes:
            return str((volume.get("configMap") or {}).get("name", ""))
    return ""


def _judge(snapshot: Snapshot, template: workloads.Template) -> Verdict:
    ns = template.namespace
    pod = template.pod
    base = Verdict(template.kind, ns, template.name, called=False)
    status: uninject.Status | None = None
    if template.kind == "Pod":
        base = dataclasses.replace(base, owner=_owner(snapshot, ns, pod), injected=False)
        try:
            status = uninject.status_of(pod)
            pod = uninject.uninject(pod)
        except errors.StatusMismatch as exc:
            return dataclasses.replace(
                base, injected=True, decision="reject", reason="status_mismatch", message=str(exc)
            )
        if status is not None:
            base = dataclasses.replace(
                base,
                injected=True,
                image=status.image,
                config_map=_mounted_config_map(template.pod, status),
            )
    unmet = would_call(snapshot, ns, pod)
    verdict = dataclasses.replace(base, called=not unmet, not_called=unmet)
    ctx = snapshot.context
    try:
        plan = mutate.plan_template(
            dataclasses.replace(template, pod=pod, path=()),
            ctx,
            namespace_limits=snapshot.limits.get(ns, limits.EMPTY),
        )
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        spec = overrides.resolve(ctx.defaults, annotations, ctx.policy).spec
    except errors.PodRejected as exc:
        return dataclasses.replace(verdict, decision="reject", reason=exc.reason, message=str(exc))
    decision = plan.decision
    verdict = dataclasses.replace(
        verdict,
        decision="inject" if decision.inject else "skip",
        reason=str(decision.reason or ""),
        message=decision.explanation,
        warnings=plan.warnings,
        config_map=verdict.config_map
        or (spec.config_map if decision.inject and verdict.called else ""),
    )
    if status is not None:
        outdated = status.image != spec.image or status.version != snapshot.version
        return dataclasses.replace(verdict, outdated=outdated)
    return dataclasses.replace(verdict, image=spec.image if decision.inject else "")


def verdicts(snapshot: Snapshot) -> list[Verdict]:
    """One verdict per Pod and per workload template among the snapshot's targets."""
    out = []
    for obj in snapshot.targets:
        try:
            found = list(workloads.templates(obj))
        except errors.MalformedObject:
            continue
        for template in found:
            out.append(_judge(snapshot, template))
    return out


def wanted_config_maps(snapshot: Snapshot) -> set[Key]:
    """The Envoy ConfigMaps the targets and labelled namespaces mount: what the shell reads next."""
    wanted = {(v.namespace, v.config_map) for v in verdicts(snapshot) if v.config_map}
    for name in snapshot.namespaces:
        if not would_call(snapshot, name, {}):
            wanted.add((name, snapshot.context.defaults.config_map))
    return wanted
