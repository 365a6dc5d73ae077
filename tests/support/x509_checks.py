"""Certificate checks the way a TLS client makes them, for the certificate job's tests."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.x509 import verification

from certs import store

SERVICE_NAME: Final = "envoy-injector.envoy-injector.svc"


def verifies(leaf_pem: bytes, bundle_pem: bytes, now: datetime, name: str = SERVICE_NAME) -> bool:
    """Would a client trusting exactly ``bundle_pem`` accept ``leaf_pem`` as ``name`` at ``now``?"""
    cas = store.parse_bundle(bundle_pem)
    if not cas:
        return False
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(cas))
        .time(now)
        .build_server_verifier(x509.DNSName(name))
    )
    try:
        verifier.verify(x509.load_pem_x509_certificate(leaf_pem), [])
    except verification.VerificationError:
        return False
    return True
