"""How the job stores certificates: the two Secrets' keys and annotation, and PEM bundles. Pure.

TLS Secret (`kubernetes.io/tls`, mounted by the webhook):
    tls.crt      the serving certificate (leaf only)
    tls.key      its private key, PKCS#8
    ca.crt       the trust bundle, identical to every webhook's caBundle

CA Secret (`Opaque`, mounted by nothing; only the job reads it):
    ca.crt, ca.key             the CA that signs the leaf
    next-ca.crt, next-ca.key   the CA staged to replace it (only during a rotation)
    trust.crt                  every CA clients should trust now (source of the bundle above)
    annotation envoy-inject.io/next-ca-published-at   when the staged CA was first seen in
                               every webhook's caBundle (RFC 3339, UTC)

Reading never raises: a missing or garbled part comes back empty, and `rotation` decides what
that means (usually "issue a new one").
"""

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import issue

TLS_CERT: Final = "tls.crt"
TLS_KEY: Final = "tls.key"
TLS_CA: Final = "ca.crt"
CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
NEXT_CERT: Final = "next-ca.crt"
NEXT_KEY: Final = "next-ca.key"
TRUST: Final = "trust.crt"
PUBLISHED_AT: Final = "envoy-inject.io/next-ca-published-at"
_PEM_CERT: Final = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


@dataclass(frozen=True)
class Authority:
    """The CA Secret: the CA that signs, the one staged to replace it, and what clients trust."""

    active: issue.CA | None
    next: issue.CA | None = None
    trust_pem: bytes = b""
    next_published_at: datetime | None = None


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def parse_bundle(pem: bytes) -> list[x509.Certificate]:
    """Every parseable certificate in `pem`, first occurrence kept; garbage between is skipped."""
    seen: dict[str, x509.Certificate] = {}
    for block in _PEM_CERT.findall(pem):
        try:
            cert = x509.load_pem_x509_certificate(block)
        except ValueError:
            continue
        seen.setdefault(fingerprint(cert), cert)
    return list(seen.values())


def bundle_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def common_fingerprints(bundles: Sequence[bytes]) -> frozenset[str]:
    """The CAs present in every one of `bundles`: what the API server trusts for all webhooks."""
    sets = [frozenset(fingerprint(c) for c in parse_bundle(b)) for b in bundles]
    return frozenset.intersection(*sets) if sets else frozenset()


def read_authority(data: Mapping[str, bytes], annotations: Mapping[str, str]) -> Authority:
    """The CA Secret's contents; missing or broken parts come back empty, never raise."""
    return Authority(
        active=_read_ca(data, CA_CERT, CA_KEY),
        next=_read_ca(data, NEXT_CERT, NEXT_KEY),
        trust_pem=data.get(TRUST, b""),
        next_published_at=_parse_time(annotations.get(PUBLISHED_AT)),
    )


def authority_data(authority: Authority) -> dict[str, bytes]:
    data = {TRUST: authority.trust_pem}
    if authority.active is not None:
        data |= {CA_CERT: authority.active.cert_pem, CA_KEY: authority.active.key_pem}
    if authority.next is not None:
        data |= {NEXT_CERT: authority.next.cert_pem, NEXT_KEY: authority.next.key_pem}
    return data


def authority_annotations(authority: Authority) -> dict[str, str]:
    when = authority.next_published_at
    return {} if when is None else {PUBLISHED_AT: when.isoformat().replace("+00:00", "Z")}


def read_serving(data: Mapping[str, bytes]) -> issue.Bundle | None:
    """The TLS Secret's pair and trust bundle; None when the leaf or key is absent."""
    if not data.get(TLS_CERT) or not data.get(TLS_KEY):
        return None
    return issue.Bundle(
        cert_pem=data[TLS_CERT], key_pem=data[TLS_KEY], ca_pem=data.get(TLS_CA, b"")
    )


def serving_data(bundle: issue.Bundle) -> dict[str, bytes]:
    return {TLS_CERT: bundle.cert_pem, TLS_KEY: bundle.key_pem, TLS_CA: bundle.ca_pem}


def _read_ca(data: Mapping[str, bytes], cert_key: str, key_key: str) -> issue.CA | None:
    if not data.get(cert_key) or not data.get(key_key):
        return None
    return issue.CA(cert_pem=data[cert_key], key_pem=data[key_key])


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A hand-edited value without an offset is read as UTC rather than rejected.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
