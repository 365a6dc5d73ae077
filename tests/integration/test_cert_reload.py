"""Certificates rotating under a running server: mounted-Secret style symlink swaps, picked up
for new handshakes without a restart, without failing a request, and never from a bad pair."""

from __future__ import annotations

import datetime
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from certs import issue
from tests.support.pods import body, make_pod, make_review
from tests.support.server import SERVICE_NAME, Server, TLSFiles, client_context, running_server
from tests.support.volumes import KubeletVolume

pytestmark = pytest.mark.integration
NAMES = issue.service_dns_names("envoy-injector", "envoy-injector")


def _tls_files(volume: KubeletVolume) -> TLSFiles:
    return TLSFiles(volume.root / "ca.crt", volume.root / "tls.crt", volume.root / "tls.key")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _bundle(ca: issue.CA) -> dict[str, bytes]:
    leaf = issue.new_serving_cert(ca, NAMES, now=_now())
    return {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem, "ca.crt": ca.cert_pem}


def _serial_seen_by_new_connection(server: Server, ca_file: Path) -> int:
    context = client_context(ca_file)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_NAME) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def _serial(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def _wait_for_serial(server: Server, ca_file: Path, serial: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _serial_seen_by_new_connection(server, ca_file) == serial:
                return
        except OSError:  # no valid certificate yet: the handshake fails
            pass
        assert time.monotonic() < deadline, "the new certificate never reached new handshakes"
        time.sleep(0.1)


@pytest.fixture
def volume(tmp_path: Path) -> KubeletVolume:
    return KubeletVolume(tmp_path / "secret")


@pytest.fixture
def ca() -> issue.CA:
    return issue.new_ca(now=_now())


@pytest.fixture
def server(tmp_path: Path, volume: KubeletVolume, ca: issue.CA) -> Iterator[Server]:
    volume.write(_bundle(ca))
    with running_server(tmp_path, files=_tls_files(volume)) as running:
        yield running


class Hammer:
    """Sends reviews in a loop, each on a new connection, and counts every failure."""

    def __init__(self, server: Server, ca_bundle: Path) -> None:
        self.server, self.ca_bundle = server, ca_bundle
        self.sent = self.failed = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        payload = body(make_review(make_pod()))
        while not self._stop.is_set():
            try:
                with self.server.client(ca=self.ca_bundle) as client:
                    client.headers["Connection"] = "close"
                    response = self.server.post(
                        client,
                        "/mutate",
                        content=payload,
                        headers={"Content-Type": "application/json"},
                    )
                ok = response.status_code == 200
            except httpx.HTTPError as exc:
                ok = False
                self.errors.append(repr(exc))
            self.sent += 1
            self.failed += 0 if ok else 1

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=20)


def test_a_renewed_leaf_reaches_new_handshakes_with_zero_failed_requests(
    server: Server, volume: KubeletVolume, ca: issue.CA
) -> None:
    with Hammer(server, _tls_files(volume).ca) as hammer:
        time.sleep(0.5)
        renewed = _bundle(ca)
        volume.write(renewed)
        _wait_for_serial(server, _tls_files(volume).ca, _serial(renewed["tls.crt"]))
        time.sleep(0.5)
    assert hammer.sent > 10
    assert hammer.failed == 0, hammer.errors[:3]
    assert "serving certificate loaded" in server.log_text()


def test_a_ca_rotation_with_both_cas_in_the_bundle_drops_nothing(
    server: Server, volume: KubeletVolume, ca: issue.CA, tmp_path: Path
) -> None:
    new_ca = issue.new_ca(now=_now())
    trusted = tmp_path / "bundle.crt"  # the caBundle during the rotation: old and new CA
    trusted.write_bytes(ca.cert_pem + new_ca.cert_pem)
    with Hammer(server, trusted) as hammer:
        rotated = _bundle(new_ca)
        volume.write(rotated)
        _wait_for_serial(server, trusted, _serial(rotated["tls.crt"]))
    assert hammer.failed == 0, hammer.errors[:3]


def test_a_broken_pair_on_disk_is_never_served(
    server: Server, volume: KubeletVolume, ca: issue.CA
) -> None:
    before = _serial_seen_by_new_connection(server, _tls_files(volume).ca)
    other = issue.new_serving_cert(ca, NAMES, now=_now())
    mismatched = {**_bundle(ca), "tls.key": other.key_pem}  # key of another cert
    volume.write(mismatched)
    time.sleep(1.0)  # several reload intervals
    assert _serial_seen_by_new_connection(server, _tls_files(volume).ca) == before
    volume.write({**_bundle(ca), "tls.crt": b"not a pem"})
    time.sleep(1.0)
    assert _serial_seen_by_new_connection(server, _tls_files(volume).ca) == before
    assert "certificate not (re)loaded, keeping the current one" in server.log_text()
    with server.client() as client:
        assert server.get(client, "/readyz").status_code == 200


def _handshake_fails(server: Server, ca_file: Path) -> bool:
    try:
        _serial_seen_by_new_connection(server, ca_file)
    except OSError:  # ssl.SSLError is an OSError
        return True
    return False


def test_without_a_valid_certificate_the_server_waits_and_serves_once_one_appears(
    tmp_path: Path, ca: issue.CA
) -> None:
    volume = KubeletVolume(tmp_path / "late")
    volume.write({"tls.crt": b"garbage", "tls.key": b"garbage", "ca.crt": ca.cert_pem})
    files = _tls_files(volume)
    with running_server(tmp_path, files=files, wait_for_tls=False) as server:
        assert _handshake_fails(server, files.ca)
        assert "certificate not (re)loaded" in server.log_text()
        good = _bundle(ca)
        volume.write(good)
        _wait_for_serial(server, files.ca, _serial(good["tls.crt"]))
        with server.client() as client:
            assert server.get(client, "/readyz").json() == {"status": "ready"}
