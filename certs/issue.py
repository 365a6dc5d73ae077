"""Issue a CA and the webhook's serving certificate with `cryptography`. Pure: no I/O, no clock.

`now` is always passed in, so expiry and rotation logic can be tested at any instant. Keys are
ECDSA P-256 by default (small, fast handshakes, accepted by every kube-apiserver), RSA 2048 when
asked for. PEM throughout: certificates as `CERTIFICATE`, keys as unencrypted PKCS#8
`PRIVATE KEY`, which is what a `kubernetes.io/tls` Secret and `ssl.load_cert_chain` both take.
"""

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ecdsa", "rsa"]
KEY_TYPES: Final[tuple[KeyType, ...]] = ("ecdsa", "rsa")

RSA_KEY_SIZE: Final = 2048
# notBefore is moved back by this much: a replica or apiserver whose clock runs a little behind
# the Job's must not reject a certificate as "not yet valid" right after it was issued.
CLOCK_SKEW: Final = timedelta(minutes=5)
# X.520 caps commonName at 64 characters; longer service names go only into the SANs.
_MAX_COMMON_NAME: Final = 64
CLUSTER_DOMAIN: Final = "cluster.local"

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CA:
    """A certificate authority: one self-signed certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Bundle:
    """What the webhook serves and the TLS Secret stores."""

    cert_pem: bytes  # the leaf
    key_pem: bytes
    ca_pem: bytes  # every CA clients should trust; holds old and new CA during a rotation


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a client inside the cluster may use for the Service, most specific last."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}",
    ]


def new_ca(
    *,
    now: datetime,
    ttl: timedelta = timedelta(days=3650),
    key_type: KeyType = "ecdsa",
    common_name: str = "envoy-injector-ca",
) -> CA:
    """A fresh self-signed CA that may sign leaf certificates only (pathlen 0)."""
    _require_aware(now)
    key = _new_key(key_type)
    serial = x509.random_serial_number()
    # Old and new CA coexist in the caBundle during a rotation. A distinct subject per CA keeps
    # chain building unambiguous even for verifiers that match issuers by name alone.
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, f"{serial:x}"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return CA(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def new_serving_cert(
    ca: CA,
    dns_names: Sequence[str],
    *,
    now: datetime,
    ttl: timedelta = timedelta(days=365),
    ip_addresses: Sequence[str] = (),
    key_type: KeyType = "ecdsa",
) -> Bundle:
    """A TLS server certificate for `dns_names` and `ip_addresses`, signed by `ca`.

    The leaf never outlives its CA: notAfter is capped at the CA's, because a chain is only as
    valid as its shortest link. `ca_pem` of the result is this CA alone; the job widens it
    while a CA rotation is in progress.
    """
    _require_aware(now)
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"unsupported CA key type {type(ca_key).__name__}")

    key = _new_key(key_type)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    common_name = next((n for n in dns_names if len(n) <= _MAX_COMMON_NAME), None)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    )
    not_after = min(now + ttl, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        # RFC 5280 4.2.1.6: with an empty subject the SAN extension must be critical.
        .add_extension(x509.SubjectAlternativeName(sans), critical=not common_name)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA key exchange (TLS 1.2 without ECDHE) encrypts to the key; ECDSA never does.
                key_encipherment=key_type == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Bundle(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=_key_pem(key),
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
    )


def _new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    raise ValueError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    # Reuse the CA's own SKI so AKI matches it byte for byte, even for a CA we did not make.
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_cert.public_key()  # type: ignore[arg-type]  # CA keys here are EC or RSA
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _require_aware(now: datetime) -> None:
    # A naive datetime would be read as local time by cryptography and silently shift validity.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (use datetime.now(UTC))")
