"""Decide what the certificate job must change. Pure: no cluster, no clock, no files.

Renewal of the serving certificate (the leaf) is simple: `needs_renewal` names the first reason
it is unfit (missing, corrupt, key not matching, expiring, wrong names, wrong key type, not
signed by a trusted CA) and the job issues a new one from the active CA.

Rotating the CA is where injectors cause outages: the API server must trust the CA of whatever
leaf any webhook replica serves, and replicas pick up a changed Secret only after the kubelet
syncs it (up to a minute or two, plus the server's reload poll). So a CA change is staged across
runs of the job, never done in one step (the failure of a one-step caBundle swap):

1. **stage** — the active CA has less than a third of its lifetime left (or less than
   `--renew-before`): a new CA is generated and kept in the CA Secret as *next*; the trust
   bundle becomes old + new and is written to every webhook's caBundle and the TLS Secret's
   `ca.crt`. The leaf is still signed by the old CA, which both trust.
2. **observe** — a later run sees the new CA in every webhook's caBundle (as read from the API)
   and records that instant in the CA Secret annotation `envoy-inject.io/next-ca-published-at`.
   Recording what was *seen* rather than what was *sent* keeps a crashed or raced run safe.
3. **switch** — once `grace` has passed since then, the new CA becomes active and signs a new
   leaf; the bundle still holds both CAs, so replicas serving the old or the new leaf both work.
4. **retire** — once the leaf in the Secret has been signed by the active CA for `grace` (its
   notBefore says when), every other CA leaves the bundle. Expired CAs are pruned at any time.

An operator can ask for either on a given run (`cmctl renew` style): `renew_now` replaces a leaf
that is still fit (signed by the active CA, so it is trusted at once) and `rotate_ca` runs
stage 1 now whatever the CA's age; the later stages then follow on the job's usual runs. Neither
forces a one-step CA change: with no CA able to sign yet, a requested renewal waits for one.

If the CA Secret is lost or unusable while the leaf is still good, the same stages run with the
CAs clients trust today taken from the TLS Secret's `ca.crt`, so even that is repaired without
an outage. Only when the leaf must be replaced *and* no usable CA exists is a one-step change
made (the cluster is already broken then). Bundles are parsed per certificate and deduplicated
by SHA-256 fingerprint, so order and repeated PEM blocks never cause a rewrite.
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certs import issue, store

# Long enough for the kubelet to sync a Secret to every replica and the server to poll it, and
# shorter than the daily CronJob interval, so each stage takes one run.
DEFAULT_GRACE: Final = timedelta(hours=1)


class RenewReason(StrEnum):
    MISSING = "missing"
    CORRUPT = "corrupt"
    KEY_MISMATCH = "key_mismatch"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRING = "expiring"
    SAN_MISMATCH = "san_mismatch"
    KEY_TYPE = "key_type"
    CA_MISMATCH = "ca_mismatch"
    CA_ROTATION = "ca_rotation"
    REQUESTED = "requested"


@dataclass(frozen=True)
class Policy:
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    key_type: issue.KeyType = "ecdsa"
    cert_ttl: timedelta = timedelta(days=365)
    ca_ttl: timedelta = timedelta(days=3650)
    renew_before: timedelta | None = None
    grace: timedelta = DEFAULT_GRACE
    renew_now: bool = False  # replace a fit leaf on this run (--renew-now)
    rotate_ca: bool = False  # start a CA rotation on this run (--rotate-ca)


@dataclass(frozen=True)
class Plan:
    authority: store.Authority
    serving: issue.Bundle  # ca_pem is the full trust bundle: what caBundle and ca.crt hold
    renewal: RenewReason | None  # why the leaf was replaced; None when it was kept
    events: tuple[str, ...] = field(default=())  # CA lifecycle steps, one line each


def needs_renewal(
    bundle: issue.Bundle | None,
    *,
    now: datetime,
    dns_names: Sequence[str],
    renew_before: timedelta | None,
    ip_addresses: Sequence[str] = (),
    key_type: issue.KeyType | None = None,
    trusted: Sequence[x509.Certificate] | None = None,
) -> RenewReason | None:
    """Why `bundle`'s leaf must be replaced, or None if it is fit to keep serving.

    Without `renew_before` the leaf is renewed in the last third of its lifetime. `trusted`
    defaults to the bundle's own `ca_pem`.
    """
    if bundle is None:
        return RenewReason.MISSING
    try:
        leaf = x509.load_pem_x509_certificate(bundle.cert_pem)
        key = serialization.load_pem_private_key(bundle.key_pem, password=None)
    except (ValueError, TypeError):
        return RenewReason.CORRUPT
    if key.public_key() != leaf.public_key():
        return RenewReason.KEY_MISMATCH
    if now < leaf.not_valid_before_utc:
        return RenewReason.NOT_YET_VALID
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    threshold = renew_before if renew_before is not None else lifetime / 3
    if leaf.not_valid_after_utc - now <= threshold:
        return RenewReason.EXPIRING
    if _sans(leaf) != _wanted_sans(dns_names, ip_addresses):
        return RenewReason.SAN_MISMATCH
    if key_type is not None and _key_type(leaf) != key_type:
        return RenewReason.KEY_TYPE
    cas = store.parse_bundle(bundle.ca_pem) if trusted is None else trusted
    if not any(_issued_by(leaf, ca) and _valid_at(ca, now) for ca in cas):
        return RenewReason.CA_MISMATCH
    return None


def plan(
    authority: store.Authority | None,
    serving: issue.Bundle | None,
    *,
    published: frozenset[str],
    now: datetime,
    policy: Policy,
) -> Plan:
    """The desired CA Secret and TLS Secret, given what is stored and what caBundle holds.

    `authority` None means the CA Secret is absent; `published` holds the fingerprints of the
    CAs found in every webhook's caBundle when this run read the configuration.
    """
    events: list[str] = []
    stored = authority or store.Authority(active=None)
    trust = store.parse_bundle(stored.trust_pem)
    if serving is not None and _usable(stored.active, now) is None:
        # The CA Secret is gone or broken: keep trusting what clients trust today.
        trust = store.parse_bundle(stored.trust_pem + serving.ca_pem)
    for old in [c for c in trust if c.not_valid_after_utc <= now]:
        trust.remove(old)
        events.append(f"CA pruned from the bundle: {describe(old)} expired")

    reason = needs_renewal(
        serving,
        now=now,
        dns_names=policy.dns_names,
        ip_addresses=policy.ip_addresses,
        renew_before=policy.renew_before,
        key_type=policy.key_type,
        trusted=trust,
    )
    active, staged = _choose_signer(
        stored, now=now, policy=policy, leaf_ok=reason is None, events=events
    )
    signer_before = active
    active, staged, published_at = _advance(
        stored, active, staged, published=published, now=now, grace=policy.grace, events=events
    )
    # Every CA that signs, is staged, or signed until now is trusted; `_retire` trims later.
    known = {store.fingerprint(c) for c in trust}
    for ca in (signer_before, active, staged):
        if ca is not None and store.fingerprint(_cert(ca)) not in known:
            trust.append(_cert(ca))
            known.add(store.fingerprint(_cert(ca)))

    if reason is None and policy.renew_now:
        if active is not None:
            reason = RenewReason.REQUESTED
        else:
            events.append("renewal requested: deferred, no CA can sign until the staged one is")
    leaf = serving
    if (
        reason is None
        and active is not None
        and leaf is not None
        and not _issued_by(x509.load_pem_x509_certificate(leaf.cert_pem), _cert(active))
    ):
        reason = RenewReason.CA_ROTATION if active is not signer_before else RenewReason.CA_MISMATCH
    if reason is not None:
        if active is None:  # unreachable: _choose_signer sets a signer whenever the leaf is unfit
            raise AssertionError("no CA to sign the serving certificate")
        leaf = issue.new_serving_cert(
            active,
            policy.dns_names,
            now=now,
            ttl=policy.cert_ttl,
            ip_addresses=policy.ip_addresses,
            key_type=policy.key_type,
        )
    elif leaf is not None and active is not None:
        trust = _retire(trust, leaf, active, staged, now=now, grace=policy.grace, events=events)
    if leaf is None:  # unreachable: a missing leaf always has a reason
        raise AssertionError("no serving certificate")

    trust_pem = store.bundle_pem(trust)
    return Plan(
        authority=store.Authority(
            active=active, next=staged, trust_pem=trust_pem, next_published_at=published_at
        ),
        serving=replace(leaf, ca_pem=trust_pem),
        renewal=reason,
        events=tuple(events),
    )


def _choose_signer(
    stored: store.Authority, *, now: datetime, policy: Policy, leaf_ok: bool, events: list[str]
) -> tuple[issue.CA | None, issue.CA | None]:
    """The (active, staged) CAs after making sure a signer exists and a rotation starts in time.

    Without a usable signer a good leaf keeps serving while a new CA is staged; only a leaf that
    must be replaced right now forces a one-step change.
    """
    active, staged = _usable(stored.active, now), _usable(stored.next, now)
    if active is not None:
        if staged is None and _ca_expiring(active, now, policy):
            staged = _new_ca(now, policy)
            events.append(f"CA rotation started: {describe(_cert(active))} nears expiry")
        elif staged is None and policy.rotate_ca:
            staged = _new_ca(now, policy)
            events.append(f"CA rotation started: requested, replacing {describe(_cert(active))}")
        elif policy.rotate_ca:
            events.append("CA rotation requested: one is already under way, it continues")
        return active, staged
    if leaf_ok:
        if staged is None:
            staged = _new_ca(now, policy)
            events.append("CA staged: no usable signing CA; the current leaf keeps serving")
        return None, staged
    if staged is not None:
        events.append("CA promoted early: the leaf must be replaced and no other CA can sign")
        return staged, None
    events.append("CA created")
    return _new_ca(now, policy), None


def _advance(
    stored: store.Authority,
    active: issue.CA | None,
    staged: issue.CA | None,
    *,
    published: frozenset[str],
    now: datetime,
    grace: timedelta,
    events: list[str],
) -> tuple[issue.CA | None, issue.CA | None, datetime | None]:
    """Stages 2 and 3: note when the staged CA is seen published, switch to it after `grace`."""
    if staged is None:
        return active, None, None
    if store.fingerprint(_cert(staged)) not in published:
        return active, staged, None
    published_at = stored.next_published_at if _same(staged, stored.next) else None
    if published_at is None:
        published_at = now
        events.append("CA rotation: the new CA is in every webhook's caBundle")
    if now - published_at < grace:
        return active, staged, published_at
    events.append("CA rotation: the new CA signs the serving certificate")
    return staged, None, None


def _retire(
    trust: list[x509.Certificate],
    leaf: issue.Bundle,
    active: issue.CA,
    staged: issue.CA | None,
    *,
    now: datetime,
    grace: timedelta,
    events: list[str],
) -> list[x509.Certificate]:
    """Stage 4: once the active CA's leaf has had `grace` to reach every replica, drop the rest.

    The caller has checked that `leaf` is signed by `active`.
    """
    # issue.py backdates notBefore by CLOCK_SKEW, so adding it back gives the issuing instant.
    issued = x509.load_pem_x509_certificate(leaf.cert_pem).not_valid_before_utc + issue.CLOCK_SKEW
    if now - issued < grace:
        return trust
    keep = {store.fingerprint(_cert(ca)) for ca in (active, staged) if ca is not None}
    for old in [c for c in trust if store.fingerprint(c) not in keep]:
        events.append(f"CA retired from the bundle: {describe(old)}")
    return [c for c in trust if store.fingerprint(c) in keep]


def _usable(ca: issue.CA | None, now: datetime) -> issue.CA | None:
    """`ca` if it can sign today: parses, key matches, is a CA, not expired."""
    if ca is None:
        return None
    try:
        cert = x509.load_pem_x509_certificate(ca.cert_pem)
        key = serialization.load_pem_private_key(ca.key_pem, password=None)
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return None
    if not is_ca or key.public_key() != cert.public_key() or not _valid_at(cert, now):
        return None
    return ca


def _ca_expiring(ca: issue.CA, now: datetime, policy: Policy) -> bool:
    cert = _cert(ca)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    # A CA at least as far ahead as the leaf's own renewal threshold, so the rotation finishes
    # before any leaf it signed would need renewing for lack of CA lifetime.
    threshold = max(lifetime / 3, policy.renew_before or timedelta(0))
    return cert.not_valid_after_utc - now <= threshold


def _new_ca(now: datetime, policy: Policy) -> issue.CA:
    return issue.new_ca(now=now, ttl=policy.ca_ttl, key_type=policy.key_type)


def _cert(ca: issue.CA) -> x509.Certificate:
    return x509.load_pem_x509_certificate(ca.cert_pem)


def _same(a: issue.CA | None, b: issue.CA | None) -> bool:
    return a is not None and b is not None and a.cert_pem == b.cert_pem


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _valid_at(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def _sans(cert: x509.Certificate) -> tuple[frozenset[str], frozenset[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    dns = frozenset(n.lower() for n in san.get_values_for_type(x509.DNSName))
    ips = frozenset(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return dns, ips


def _wanted_sans(
    dns_names: Sequence[str], ip_addresses: Sequence[str]
) -> tuple[frozenset[str], frozenset[str]]:
    return (
        frozenset(n.lower() for n in dns_names),
        frozenset(str(ipaddress.ip_address(ip)) for ip in ip_addresses),
    )


def _key_type(cert: x509.Certificate) -> issue.KeyType | None:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    return None


def describe(cert: x509.Certificate) -> str:
    return f"serial {cert.serial_number:x} (expires {cert.not_valid_after_utc:%Y-%m-%d})"
