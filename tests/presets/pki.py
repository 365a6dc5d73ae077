"""A throwaway certificate authority for the preset TLS tests, on top of certs.issue."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509

from certs import issue

__all__ = ["CertificateAuthority", "ServingCert"]


@dataclass(frozen=True)
class ServingCert:
    """A leaf certificate and its key, PEM-encoded, plus its serial number."""

    cert_pem: bytes
    key_pem: bytes
    serial: int

    def secret_files(self) -> dict[str, bytes]:
        """The two keys of a ``kubernetes.io/tls`` Secret."""
        return {"tls.crt": self.cert_pem, "tls.key": self.key_pem}


class CertificateAuthority:
    """A self-signed CA that issues serving certificates for DNS names."""

    def __init__(self, common_name: str = "preset test CA") -> None:
        now = datetime.datetime.now(datetime.UTC)
        self._ca = issue.new_ca(now=now, ttl=datetime.timedelta(days=1), common_name=common_name)

    @property
    def cert_pem(self) -> bytes:
        return self._ca.cert_pem

    def issue(self, *dns_names: str) -> ServingCert:
        """A serving certificate for ``dns_names``."""
        now = datetime.datetime.now(datetime.UTC)
        leaf = issue.new_serving_cert(self._ca, dns_names, now=now, ttl=datetime.timedelta(hours=2))
        serial = x509.load_pem_x509_certificate(leaf.cert_pem).serial_number
        return ServingCert(cert_pem=leaf.cert_pem, key_pem=leaf.key_pem, serial=serial)
