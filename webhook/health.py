"""Is the installation healthy? Pure findings from the objects `check` read from the cluster.

Each check looks at one object a working installation needs and says what is wrong in the
operator's terms, with the command or edit that fixes it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from cryptography import x509
from cryptography.x509 import verification

JSONDict = dict[str, Any]

WEBHOOK_CONFIG: Final = "envoy-injector"
SERVICE: Final = "envoy-injector"
DEPLOYMENT: Final = "envoy-injector"
CONTROLLER: Final = "envoy-injector-controller"
TLS_SECRET: Final = "envoy-injector-tls"  # noqa: S105 - a Secret's name
CONFIG_MAP: Final = "envoy-injector-config"
EXPIRY_WARNING: Final = timedelta(days=30)

FAILURE_POLICIES: Final = {
    "Fail": "while the webhook is unreachable, Pods in labelled namespaces are refused "
    "(none runs without its sidecar)",
    "Ignore": "while the webhook is unreachable, Pods are created without the sidecar and "
    "stay so until restarted",
}


def shipped_selectors(namespace: str) -> tuple[JSONDict, JSONDict]:
    """The selectors manifests/injector ships (a test keeps the two equal)."""
    namespace_selector = {
        "matchExpressions": [
            {"key": "envoy-inject", "operator": "In", "values": ["enabled"]},
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "kube-public", "kube-node-lease", namespace],
            },
        ]
    }
    object_selector = {
        "matchExpressions": [{"key": "envoy-inject", "operator": "NotIn", "values": ["disabled"]}]
    }
    return namespace_selector, object_selector


class Severity(StrEnum):
    OK = "ok"
    INFO = "info"
    WARNING = "warning"  # worth acting on; does not fail the check
    PROBLEM = "problem"  # fails the check (exit status 1)


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str  # stable identifier for scripts, e.g. "ca-bundle"
    subject: str  # the object, e.g. "Secret envoy-injector/envoy-injector-tls"
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Installation:
    """The injector's own objects as read (None: absent)."""

    namespace: str
    webhook_config: JSONDict | None = None
    tls_secret: JSONDict | None = None
    service: JSONDict | None = None
    endpoint_slices: Sequence[JSONDict] = field(default=())
    deployment: JSONDict | None = None
    controller: JSONDict | None = None  # None: not installed, which is allowed
    config: str = ""  # where the decisions' config came from, for the reader
    config_found: bool = True  # False: the ConfigMap is missing, built-in defaults were used


def webhooks(config: Mapping[str, Any] | None) -> list[JSONDict]:
    entries = (config or {}).get("webhooks")
    return [w for w in entries if isinstance(w, dict)] if isinstance(entries, list) else []


def _webhook_config(inst: Installation) -> list[Finding]:
    subject = f"MutatingWebhookConfiguration {WEBHOOK_CONFIG}"
    if inst.webhook_config is None:
        return [
            Finding(
                Severity.PROBLEM,
                "webhook-configuration",
                subject,
                "not found: no Pod is sent to the injector",
                "kubectl apply -k manifests/injector",
            )
        ]
    entries = webhooks(inst.webhook_config)
    if not entries:
        return [Finding(Severity.PROBLEM, "webhook-configuration", subject, "has no webhooks")]
    namespace_selector, object_selector = shipped_selectors(inst.namespace)
    found = []
    for entry in entries:
        name = f"{subject} webhook {entry.get('name')}"
        drift = [
            key
            for key, shipped in (
                ("namespaceSelector", namespace_selector),
                ("objectSelector", object_selector),
            )
            if entry.get(key, {}) != shipped
        ]
        if drift:
            found.append(
                Finding(
                    Severity.WARNING,
                    "webhook-selectors",
                    name,
                    f"{' and '.join(drift)} differ from the shipped ones; the verdicts "
                    "below use the live ones",
                    "kubectl apply -k manifests/injector",
                )
            )
        policy = str(entry.get("failurePolicy", "Fail"))
        found.append(
            Finding(
                Severity.INFO,
                "failure-policy",
                name,
                f"failurePolicy {policy}: {FAILURE_POLICIES.get(policy, 'unknown policy')}",
            )
        )
    if not any(f.check == "webhook-selectors" for f in found):
        found.insert(
            0,
            Finding(
                Severity.OK, "webhook-configuration", subject, "present, with the shipped selectors"
            ),
        )
    return found


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def dns_names(namespace: str) -> list[str]:
    """The names the API server checks the webhook's certificate for (a Service reference)."""
    return [f"{SERVICE}.{namespace}.svc"]


def _serving_certificate(inst: Installation, now: datetime) -> list[Finding]:
    subject = f"Secret {inst.namespace}/{TLS_SECRET}"
    if inst.tls_secret is None:
        return [
            Finding(
                Severity.PROBLEM,
                "serving-certificate",
                subject,
                "not found",
                f"kubectl -n {inst.namespace} create job --from=cronjob/"
                "envoy-injector-certs-rotate envoy-injector-certs-now",
            )
        ]
    try:
        leaf_pem = base64.b64decode((inst.tls_secret.get("data") or {}).get("tls.crt", ""))
    except (binascii.Error, TypeError):
        leaf_pem = b""
    leaves = _certificates(leaf_pem)
    if not leaves:
        return [
            Finding(
                Severity.PROBLEM, "serving-certificate", subject, "tls.crt holds no certificate"
            )
        ]
    leaf = leaves[0]
    found = []
    left = leaf.not_valid_after_utc - now
    expiry = f"expires {leaf.not_valid_after_utc:%Y-%m-%d} ({left.days} days)"
    renew = "envoy-injector certs --renew-now (README: Day two)"
    if left <= timedelta(0):
        found.append(
            Finding(Severity.PROBLEM, "certificate-expiry", subject, f"expired: {expiry}", renew)
        )
    elif left < EXPIRY_WARNING:
        found.append(Finding(Severity.WARNING, "certificate-expiry", subject, expiry, renew))
    else:
        found.append(Finding(Severity.OK, "certificate-expiry", subject, expiry))
    for entry in webhooks(inst.webhook_config):
        found.append(_ca_bundle(entry, leaf, leaves[1:], inst.namespace, now))
    return found


def _ca_bundle(
    entry: Mapping[str, Any],
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    namespace: str,
    now: datetime,
) -> Finding:
    subject = f"MutatingWebhookConfiguration {WEBHOOK_CONFIG} webhook {entry.get('name')}"
    bundle = (entry.get("clientConfig") or {}).get("caBundle") or ""
    try:
        cas = _certificates(base64.b64decode(bundle))
    except (binascii.Error, TypeError):
        cas = []
    if not cas:
        return Finding(
            Severity.PROBLEM,
            "ca-bundle",
            subject,
            "caBundle is empty or not PEM: the API server cannot verify the webhook",
            "run the certificate job",
        )
    for name in dns_names(namespace):
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(cas))
            .time(now)
            .build_server_verifier(x509.DNSName(name))
        )
        try:
            verifier.verify(leaf, intermediates)
        except verification.VerificationError as exc:
            return Finding(
                Severity.PROBLEM,
                "ca-bundle",
                subject,
                f"caBundle does not verify the serving certificate for {name}: {exc}; every "
                "call fails",
                "run the certificate job (it re-publishes the caBundle)",
            )
    return Finding(
        Severity.OK,
        "ca-bundle",
        subject,
        f"caBundle verifies the serving certificate for {', '.join(dns_names(namespace))}",
    )


def _workload(obj: Mapping[str, Any] | None, namespace: str, name: str) -> Finding:
    optional = name == CONTROLLER
    check = "controller" if optional else "deployment"
    subject = f"Deployment {namespace}/{name}"
    if obj is None:
        if optional:
            return Finding(Severity.INFO, check, subject, "not installed")
        return Finding(Severity.PROBLEM, check, subject, "not found")
    wanted = int((obj.get("spec") or {}).get("replicas", 1))
    available = int((obj.get("status") or {}).get("availableReplicas") or 0)
    message = f"{available}/{wanted} replicas available"
    if available == 0:  # scaled to zero counts: nothing answers the API server then
        fix = f"kubectl -n {namespace} describe deployment {name}"
        return Finding(Severity.PROBLEM, check, subject, message, fix)
    if available < wanted:
        return Finding(Severity.WARNING, check, subject, message)
    return Finding(Severity.OK, check, subject, message)


def _endpoints(inst: Installation) -> Finding:
    subject = f"Service {inst.namespace}/{SERVICE}"
    if inst.service is None:
        return Finding(Severity.PROBLEM, "service", subject, "not found")
    ready = sum(
        1
        for piece in inst.endpoint_slices
        for endpoint in piece.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready") is not False
    )
    if not ready:
        return Finding(
            Severity.PROBLEM,
            "service",
            subject,
            "has no ready endpoints: the API server has nothing to call",
        )
    return Finding(Severity.OK, "service", subject, f"{ready} ready endpoints")


def _config(inst: Installation) -> Finding:
    subject = f"ConfigMap {inst.namespace}/{CONFIG_MAP}"
    if not inst.config_found:
        return Finding(
            Severity.PROBLEM,
            "config",
            subject,
            "not found: the injector cannot start; verdicts below use the built-in defaults",
            "kubectl apply -k manifests/injector",
        )
    return Finding(Severity.INFO, "config", subject, f"verdicts use {inst.config}")


def installation(inst: Installation, *, now: datetime) -> list[Finding]:
    """Every installation finding, in the order an operator reads them."""
    ns = inst.namespace
    return [
        _config(inst),
        *_webhook_config(inst),
        *_serving_certificate(inst, now),
        _workload(inst.deployment, ns, DEPLOYMENT),
        _endpoints(inst),
        _workload(inst.controller, ns, CONTROLLER),
    ]
