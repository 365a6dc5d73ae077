"""certs.issue: the CA and serving certificate carry what kube-apiserver and RFC 5280 expect."""

import ipaddress
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import issue

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NAMES = issue.service_dns_names("envoy-injector", "envoy-injector")
KEY_TYPES: list[issue.KeyType] = ["ecdsa", "rsa"]
Ext = TypeVar("Ext", bound=x509.ExtensionType)


@pytest.fixture(scope="module", params=KEY_TYPES, ids=KEY_TYPES)
def key_type(request: pytest.FixtureRequest) -> issue.KeyType:
    kt: issue.KeyType = request.param
    return kt


@pytest.fixture(scope="module")
def ca(key_type: issue.KeyType) -> issue.CA:
    return issue.new_ca(now=NOW, key_type=key_type)


@pytest.fixture(scope="module")
def bundle(ca: issue.CA, key_type: issue.KeyType) -> issue.Bundle:
    return issue.new_serving_cert(
        ca, NAMES, now=NOW, ip_addresses=["10.96.0.10", "fd00::1"], key_type=key_type
    )


def cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def ext(c: x509.Certificate, kind: type[Ext]) -> x509.Extension[Ext]:
    return c.extensions.get_extension_for_class(kind)


def test_service_dns_names_cover_every_in_cluster_spelling() -> None:
    assert issue.service_dns_names("web", "shop") == [
        "web",
        "web.shop",
        "web.shop.svc",
        "web.shop.svc.cluster.local",
    ]


def test_ca_may_sign_leaves_only(ca: issue.CA) -> None:
    c = cert(ca.cert_pem)
    constraints = ext(c, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = ext(c, x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature


def test_ca_is_self_signed_with_matching_key_identifiers(ca: issue.CA) -> None:
    c = cert(ca.cert_pem)
    c.verify_directly_issued_by(c)
    ski = ext(c, x509.SubjectKeyIdentifier).value.digest
    assert ext(c, x509.AuthorityKeyIdentifier).value.key_identifier == ski
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "envoy-injector-ca"


@pytest.mark.parametrize(
    ("key_type_", "key_class"),
    [("ecdsa", ec.EllipticCurvePrivateKey), ("rsa", rsa.RSAPrivateKey)],
    ids=["ecdsa_is_p256", "rsa_is_2048_bits"],
)
def test_key_type_selects_the_algorithm_and_size(
    key_type_: issue.KeyType, key_class: type[object]
) -> None:
    ca = issue.new_ca(now=NOW, key_type=key_type_)
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(key, key_class)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        assert isinstance(key.curve, ec.SECP256R1)
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == 2048


@pytest.mark.parametrize(
    ("ttl", "expected_not_after"),
    [
        (timedelta(days=3650), NOW + timedelta(days=3650)),
        (timedelta(days=30), NOW + timedelta(days=30)),
    ],
    ids=["default_ten_years", "custom_thirty_days"],
)
def test_ca_validity_starts_before_now_for_clock_skew_and_ends_after_ttl(
    ttl: timedelta, expected_not_after: datetime
) -> None:
    c = cert(issue.new_ca(now=NOW, ttl=ttl).cert_pem)
    assert c.not_valid_before_utc == NOW - issue.CLOCK_SKEW
    assert c.not_valid_after_utc == expected_not_after


def test_leaf_has_every_service_name_and_ip_as_san(bundle: issue.Bundle) -> None:
    san = ext(cert(bundle.cert_pem), x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.96.0.10"),
        ipaddress.ip_address("fd00::1"),
    ]


def test_leaf_is_a_server_certificate_and_not_a_ca(
    bundle: issue.Bundle, key_type: issue.KeyType
) -> None:
    c = cert(bundle.cert_pem)
    assert ext(c, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    assert ext(c, x509.BasicConstraints).value.ca is False
    usage = ext(c, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.key_encipherment is (key_type == "rsa")
    assert not usage.value.key_cert_sign


def test_leaf_is_signed_by_the_ca_and_names_its_key(bundle: issue.Bundle, ca: issue.CA) -> None:
    leaf, ca_cert = cert(bundle.cert_pem), cert(ca.cert_pem)
    leaf.verify_directly_issued_by(ca_cert)
    assert leaf.issuer == ca_cert.subject
    assert (
        ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(ca_cert, x509.SubjectKeyIdentifier).value.digest
    )
    assert bundle.ca_pem == ca.cert_pem


def test_leaf_key_matches_leaf_certificate(bundle: issue.Bundle) -> None:
    key = serialization.load_pem_private_key(bundle.key_pem, password=None)
    assert key.public_key() == cert(bundle.cert_pem).public_key()
    assert bundle.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_chain_passes_an_rfc5280_server_verifier_for_the_service_name(
    bundle: issue.Bundle,
) -> None:
    store = verification.Store([cert(bundle.ca_pem)])
    verifier = (
        verification.PolicyBuilder()
        .store(store)
        .time(NOW)
        .build_server_verifier(x509.DNSName("envoy-injector.envoy-injector.svc"))
    )
    chain = verifier.verify(cert(bundle.cert_pem), [])
    assert chain[-1] == cert(bundle.ca_pem)


@pytest.mark.parametrize(
    ("ttl", "expected_not_after"),
    [
        (timedelta(days=365), NOW + timedelta(days=365)),
        (timedelta(days=9000), NOW + timedelta(days=3650)),
    ],
    ids=["default_one_year", "capped_at_ca_expiry"],
)
def test_leaf_validity_never_outlives_its_ca(
    ca: issue.CA, ttl: timedelta, expected_not_after: datetime
) -> None:
    c = cert(issue.new_serving_cert(ca, NAMES, now=NOW, ttl=ttl).cert_pem)
    assert c.not_valid_before_utc == NOW - issue.CLOCK_SKEW
    assert c.not_valid_after_utc == expected_not_after


def test_serials_are_random_and_distinct(ca: issue.CA) -> None:
    serials = {cert(issue.new_serving_cert(ca, NAMES, now=NOW).cert_pem).serial_number}
    serials.add(cert(issue.new_serving_cert(ca, NAMES, now=NOW).cert_pem).serial_number)
    serials.add(cert(ca.cert_pem).serial_number)
    assert len(serials) == 3
    assert all(s.bit_length() > 64 for s in serials)


def test_two_cas_with_the_same_name_have_distinct_subjects() -> None:
    first, second = issue.new_ca(now=NOW), issue.new_ca(now=NOW)
    assert cert(first.cert_pem).subject != cert(second.cert_pem).subject


def test_name_too_long_for_common_name_goes_only_into_a_critical_san(ca: issue.CA) -> None:
    long_name = "a" * 60 + ".example.svc"
    c = cert(issue.new_serving_cert(ca, [long_name], now=NOW).cert_pem)
    assert c.subject == x509.Name([])
    san = ext(c, x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [long_name]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ca: issue.new_serving_cert(ca, [], now=NOW), "at least one DNS name"),
        (
            lambda ca: issue.new_serving_cert(ca, NAMES, now=datetime(2030, 1, 1)),
            "timezone-aware",
        ),
        (lambda ca: issue.new_serving_cert(ca, NAMES, now=NOW, ip_addresses=["x"]), "x"),
    ],
    ids=["no_names", "naive_time", "bad_ip"],
)
def test_bad_arguments_are_refused(
    ca: issue.CA, call: Callable[[issue.CA], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(ca)


def test_python_ssl_client_trusting_only_the_ca_completes_a_handshake(
    key_type: issue.KeyType, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The same checks kube-apiserver makes: chain to the caBundle and a SAN for the service.
    # Real time here because OpenSSL uses the system clock, so issue a fresh pair for today.
    now = datetime.now(UTC)
    fresh_ca = issue.new_ca(now=now, key_type=key_type)
    fresh = issue.new_serving_cert(fresh_ca, NAMES, now=now, key_type=key_type)
    directory = tmp_path_factory.mktemp("tls")
    (directory / "tls.crt").write_bytes(fresh.cert_pem)
    (directory / "tls.key").write_bytes(fresh.key_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    client_ctx = ssl.create_default_context(cadata=fresh.ca_pem.decode())

    _handshake(server_ctx, client_ctx, "envoy-injector.envoy-injector.svc")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(server_ctx, client_ctx, "other.envoy-injector.svc")


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> None:
    """Run a TLS handshake entirely in memory, pumping bytes between the two ends."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")
