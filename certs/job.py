"""The certificate job: read → decide → issue → store → patch, safe to run any number of times.

Run at install as a Job and daily as a CronJob, in the injector's namespace::

    envoy-injector certs --namespace envoy-injector --service envoy-injector \\
        --secret envoy-injector-tls --ca-secret envoy-injector-ca --webhook-config envoy-injector

(`python -m certs` takes the same flags.) `--renew-now` replaces the serving certificate on this
run whatever its age; `--rotate-ca` starts a staged CA rotation on this run (rotation.py).
Each run reads both Secrets and the webhook configuration, lets `rotation.plan` decide, and
writes only what differs, in the order that keeps the webhook reachable: the CA Secret (a CA's
key is stored before anything trusts it), then every webhook's caBundle (the API server trusts
a CA before any replica serves a leaf it signed), then the TLS Secret. It prints one line per
action and exits 0; on failure it prints one line to stderr and exits 1. Every write is
conditional on what was read; a lost race starts the whole
run over, at most `MAX_ATTEMPTS` times.

RBAC it needs, and nothing more (ServiceAccount `envoy-injector-certs`)::

    apiVersion: rbac.authorization.k8s.io/v1
    kind: Role
    metadata: {name: envoy-injector-certs, namespace: envoy-injector}
    rules:
      - apiGroups: [""]
        resources: [secrets]
        resourceNames: [envoy-injector-tls, envoy-injector-ca]
        verbs: [get, update]
      - apiGroups: [""]
        resources: [secrets]
        verbs: [create]        # RBAC cannot limit create by name; see below
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: ClusterRole
    metadata: {name: envoy-injector-certs}
    rules:
      - apiGroups: [admissionregistration.k8s.io]
        resources: [mutatingwebhookconfigurations]
        resourceNames: [envoy-injector]
        verbs: [get, patch]

bound by a RoleBinding in `envoy-injector` and a ClusterRoleBinding. No `patch` on Secrets
(replace is a PUT, verb `update`), no `list`/`watch`, no `delete`. RBAC cannot limit `create`
by name (the name is in the body, not the URL), so it is contained by scope: the Role is
namespaced to `envoy-injector`, which holds only the injector; the job can read back or change
only the two names above, so any other Secret it created would be invisible to it. The one
such trick — creating a `service-account-token` Secret under one of the two names while it is
absent — yields only a token of a ServiceAccount in that namespace, and those (webhook and job)
hold no more than this. A ValidatingAdmissionPolicy can pin creates to the two names if wanted.
"""

import argparse
import ipaddress
import re
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, TextIO

from certs import issue, kube, rotation, store
from certs.errors import CertError, ConflictError

MAX_ATTEMPTS: Final = 5
_DURATION: Final = re.compile(r"(\d+)([wdhms])")
_UNITS: Final = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DNS_NAME: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
)


@dataclass(frozen=True)
class Settings:
    namespace: str = "envoy-injector"
    service: str = "envoy-injector"
    secret: str = "envoy-injector-tls"  # noqa: S105  # a Secret object's name, not a password
    ca_secret: str = "envoy-injector-ca"  # noqa: S105  # likewise a name
    webhook_config: str = "envoy-injector"
    kubeconfig: str | None = None
    renew_before: timedelta | None = None
    extra_sans: tuple[str, ...] = field(default=())
    key_type: issue.KeyType = "ecdsa"
    ca_ttl: timedelta = timedelta(days=3650)
    cert_ttl: timedelta = timedelta(days=365)
    grace: timedelta = rotation.DEFAULT_GRACE
    renew_now: bool = False
    rotate_ca: bool = False

    def __post_init__(self) -> None:
        if self.renew_before is not None and self.renew_before >= self.cert_ttl:
            raise CertError("--renew-before must be shorter than --cert-ttl, or every run renews")
        if self.cert_ttl > self.ca_ttl:
            raise CertError("--cert-ttl must not exceed --ca-ttl: a leaf cannot outlive its CA")
        if self.secret == self.ca_secret:
            raise CertError("--secret and --ca-secret must name different Secrets")

    def policy(self) -> rotation.Policy:
        ips = tuple(name for name in self.extra_sans if _is_ip(name))
        dns = tuple(name for name in self.extra_sans if not _is_ip(name))
        return rotation.Policy(
            dns_names=(*issue.service_dns_names(self.service, self.namespace), *dns),
            ip_addresses=ips,
            key_type=self.key_type,
            cert_ttl=self.cert_ttl,
            ca_ttl=self.ca_ttl,
            renew_before=self.renew_before,
            grace=self.grace,
            renew_now=self.renew_now,
            rotate_ca=self.rotate_ca,
        )


def run(settings: Settings, api: kube.Cluster, *, now: datetime, out: TextIO) -> int:
    """Bring the Secrets and caBundle to the desired state; retry the whole run on a lost race."""
    policy = settings.policy()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            _reconcile(settings, api, policy, now=now, out=out)
        except ConflictError as error:
            if attempt == MAX_ATTEMPTS:
                raise CertError(
                    f"gave up after {MAX_ATTEMPTS} attempts, another writer keeps changing the "
                    f"same objects (last: {error})"
                ) from None
            _say(out, f"conflict, retrying ({attempt}/{MAX_ATTEMPTS - 1}): {error}")
            # Jitter so two racing jobs do not collide again in lockstep.
            time.sleep(0.05 * attempt + secrets.randbelow(50) / 1000)
        else:
            return 0
    raise AssertionError("unreachable")


def _reconcile(
    settings: Settings, api: kube.Cluster, policy: rotation.Policy, *, now: datetime, out: TextIO
) -> None:
    ns = settings.namespace
    ca_secret = api.get_secret(ns, settings.ca_secret, expected_type=kube.OPAQUE_TYPE)
    tls_secret = api.get_secret(ns, settings.secret, expected_type=kube.TLS_TYPE)
    webhook_config = api.get_webhook_config(settings.webhook_config)
    if not webhook_config.webhooks:
        raise CertError(
            f"MutatingWebhookConfiguration {settings.webhook_config!r} has no webhooks to "
            "give a caBundle"
        )

    authority = store.read_authority(ca_secret.data, ca_secret.annotations) if ca_secret else None
    serving = store.read_serving(tls_secret.data) if tls_secret else None
    published = store.common_fingerprints([w.ca_bundle for w in webhook_config.webhooks])
    plan = rotation.plan(authority, serving, published=published, now=now, policy=policy)

    if _store(
        api,
        ns,
        settings.ca_secret,
        ca_secret,
        type_=kube.OPAQUE_TYPE,
        data=store.authority_data(plan.authority),
        annotations=store.authority_annotations(plan.authority),
        owned=frozenset({store.PUBLISHED_AT}),
    ):
        # Events are told once they are stored, so a failed write never claims a CA change.
        for event in plan.events:
            _say(out, event)
        _say(out, "CA secret created" if ca_secret is None else "CA secret updated")

    patched = api.patch_ca_bundle(webhook_config, plan.serving.ca_pem)
    _say(out, f"caBundle patched in {patched} webhooks" if patched else "caBundle unchanged")

    written = _store(
        api,
        ns,
        settings.secret,
        tls_secret,
        type_=kube.TLS_TYPE,
        data=store.serving_data(plan.serving),
        annotations={},
        owned=frozenset(),
    )
    if tls_secret is None:
        _say(out, "created")
    elif plan.renewal is not None:
        _say(out, f"renewed: {plan.renewal}")
    else:
        _say(out, "updated: ca.crt" if written else "unchanged")


def _store(
    api: kube.Cluster,
    namespace: str,
    name: str,
    current: kube.Secret | None,
    *,
    type_: str,
    data: dict[str, bytes],
    annotations: dict[str, str],
    owned: frozenset[str],
) -> bool:
    """Create or replace the Secret when it differs from `data`; True if something was written."""
    if current is None:
        api.create_secret(namespace, name, type_=type_, data=data, annotations=annotations)
        return True
    ours = {k: v for k, v in current.annotations.items() if k in owned}
    if dict(current.data) == data and ours == annotations:
        return False
    api.replace_secret(current, data=data, annotations=annotations, owned_annotations=owned)
    return True


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()  # a Job's log should show progress even if the Pod is killed mid-run


def main(argv: list[str] | None = None) -> int:
    """`envoy-injector certs …` and `python -m certs …`; argv excludes the program name."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings(
            namespace=args.namespace,
            service=args.service,
            secret=args.secret,
            ca_secret=args.ca_secret,
            webhook_config=args.webhook_config,
            kubeconfig=args.kubeconfig,
            renew_before=args.renew_before,
            extra_sans=tuple(args.extra_san),
            key_type="rsa" if args.key_type == "rsa" else "ecdsa",
            ca_ttl=args.ca_ttl,
            cert_ttl=args.cert_ttl,
            grace=args.rotation_grace,
            renew_now=args.renew_now,
            rotate_ca=args.rotate_ca,
        )
        api = kube.Cluster.connect(settings.kubeconfig)
        return run(settings, api, now=datetime.now(UTC), out=sys.stdout)
    except CertError as error:
        sys.stderr.write(f"envoy-injector certs: error: {error}\n")
        return 1


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `1d12h`, `90m`, `2w`, `45s` → timedelta; anything else is refused."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; expected e.g. 30d, 12h")
    value = sum((timedelta(**{_UNITS[unit]: int(n)}) for n, unit in parts), timedelta())
    if value <= timedelta(0):
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return value


def _san(text: str) -> str:
    if _is_ip(text):
        return str(ipaddress.ip_address(text))
    name = text.lower().rstrip(".")
    if len(name) > 253 or not _DNS_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"{text!r} is neither a DNS name nor an IP address")
    return name


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="envoy-injector certs",
        description="Issue, store and rotate the webhook's TLS certificate and caBundle.",
    )
    add = parser.add_argument
    add("--namespace", default="envoy-injector", help="namespace of the Service and Secrets")
    add("--service", default="envoy-injector", help="Service the API server calls")
    add("--secret", default="envoy-injector-tls", help="kubernetes.io/tls Secret to write")
    add("--ca-secret", default="envoy-injector-ca", help="Secret holding the CA key")
    add("--webhook-config", default="envoy-injector", help="MutatingWebhookConfiguration")
    add("--kubeconfig", metavar="FILE", help="default: in-cluster, then ~/.kube/config")
    add("--renew-before", type=parse_duration, metavar="DURATION", help="default: 1/3 of life")
    add("--extra-san", type=_san, action="append", default=[], metavar="NAME", help="repeatable")
    add("--key-type", choices=issue.KEY_TYPES, default="ecdsa")
    add("--ca-ttl", type=parse_duration, default=timedelta(days=3650), metavar="DURATION")
    add("--cert-ttl", type=parse_duration, default=timedelta(days=365), metavar="DURATION")
    add(
        "--rotation-grace",
        type=parse_duration,
        default=rotation.DEFAULT_GRACE,
        metavar="DURATION",
        help="wait between CA rotation stages (Secret sync to every replica)",
    )
    add(
        "--renew-now",
        action="store_true",
        help="replace the serving certificate on this run, whatever its age",
    )
    add(
        "--rotate-ca",
        action="store_true",
        help="start a CA rotation on this run; the job's next runs finish it without an outage",
    )
    return parser
