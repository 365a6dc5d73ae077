"""The serial and expiry read from the DER match what cryptography reads."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs import issue
from webhook.tls import serial_and_expiry

NOW = datetime.datetime(2026, 3, 14, 9, 26, 53, tzinfo=datetime.UTC)


@pytest.mark.parametrize("key_type", issue.KEY_TYPES)
def test_issued_certificates(key_type: issue.KeyType) -> None:
    ca = issue.new_ca(now=NOW, key_type=key_type)
    bundle = issue.new_serving_cert(ca, ["a.b.svc"], now=NOW, key_type=key_type)
    leaf = x509.load_pem_x509_certificate(bundle.cert_pem)
    assert serial_and_expiry(bundle.cert_pem) == (leaf.serial_number, leaf.not_valid_after_utc)
    # A chain (leaf first, then the CA) gives the leaf's fields.
    chained = bundle.cert_pem + bundle.ca_pem
    assert serial_and_expiry(chained) == (leaf.serial_number, leaf.not_valid_after_utc)


@pytest.mark.parametrize(
    "not_after",
    [
        datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=datetime.UTC),  # UTCTime
        datetime.datetime(2050, 1, 1, 0, 0, 1, tzinfo=datetime.UTC),  # GeneralizedTime
        datetime.datetime(1999, 6, 1, 12, 0, 0, tzinfo=datetime.UTC),  # UTCTime, 19YY
    ],
)
@pytest.mark.parametrize("version", [x509.Version.v3, x509.Version.v1])
def test_both_time_encodings_and_v1_certificates(
    not_after: datetime.datetime, version: x509.Version
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "x")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2**150 + 7)
        .not_valid_before(datetime.datetime(1990, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(not_after)
    )
    if version is x509.Version.v1:
        builder._version = x509.Version.v1  # no public way to build a v1 certificate
    cert = builder.sign(key, hashes.SHA256())
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert cert.version is version
    assert serial_and_expiry(pem) == (2**150 + 7, not_after)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_what_is_not_a_certificate_is_a_value_error(pem: bytes) -> None:
    with pytest.raises(ValueError, match=r"certificate|DER"):
        serial_and_expiry(pem)
