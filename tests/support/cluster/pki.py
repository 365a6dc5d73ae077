"""Throwaway PKI for a test control plane: one CA, the API server's serving certificate, client
certificates (admin, controller-manager, later kubelets) and the service-account signing key.

The CA and serving certificate come from `certs.issue` (the product's own issuer); client
certificates need the clientAuth usage and an organisation (Kubernetes reads groups from O), which
the product never issues, so they are built here.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import issue

# The first address of --service-cluster-ip-range: the `kubernetes` Service's ClusterIP, which
# in-cluster clients dial and which the serving certificate must therefore name.
SERVICE_CIDR: Final = "10.96.0.0/16"
KUBERNETES_SERVICE_IP: Final = "10.96.0.1"
SERVING_NAMES: Final = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_TTL: Final = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """The CA on disk, able to issue more client certificates (a node's, for instance)."""

    directory: Path
    ca: issue.CA

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def client(self, name: str, common_name: str, *, groups: tuple[str, ...] = ()) -> KeyPair:
        """Write `<name>.crt`/`<name>.key`: a client certificate for user CN in groups O."""
        now = datetime.datetime.now(datetime.UTC)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem)
        ca_key = serialization.load_pem_private_key(self.ca.key_pem, password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise TypeError(f"unsupported CA key type {type(ca_key).__name__}")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
            + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - issue.CLOCK_SKEW)
            .not_valid_after(min(now + _TTL, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pair = KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(pair.key, _pkcs8(key))
        return pair

    def serving(
        self, name: str, *, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]
    ) -> KeyPair:
        now = datetime.datetime.now(datetime.UTC)
        bundle = issue.new_serving_cert(
            self.ca, dns_names, ip_addresses=ip_addresses, now=now, ttl=_TTL
        )
        pair = KeyPair(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        _write(pair.cert, bundle.cert_pem)
        _write(pair.key, bundle.key_pem)
        return pair


def new_authority(directory: Path) -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = issue.new_ca(now=now, ttl=_TTL, common_name="envoy-injector-test-cluster-ca")
    authority = Authority(directory, ca)
    _write(authority.ca_file, ca.cert_pem)
    _write(directory / "ca.key", ca.key_pem)
    return authority


def service_account_key(directory: Path) -> KeyPair:
    """RSA, the key type every Kubernetes version signs service-account tokens with.

    `cert` holds the public key (what --service-account-key-file reads).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pair = KeyPair(directory / "sa.pub", directory / "sa.key")
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(pair.cert, public)
    _write(pair.key, _pkcs8(key))
    return pair


def _pkcs8(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
